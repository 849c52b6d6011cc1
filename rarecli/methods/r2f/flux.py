"""Rare-to-Frequent on FLUX, as the authors' merged FLUX support does it: blended embeddings, not
alternation (FLUX.1-schnell samples 4 steps without CFG, too few to alternate prompts).

On a blended step both text inputs of the transformer, the T5 sequence embeddings and the pooled CLIP
embedding, are `a * frequent + (1 - a) * rare`, with the authors' per-step weights a = 0.3, 0.15,
0.15, 0.15. Which steps blend, and with which stand-in prompt:
- one stand-in of level 1..3: step 0; of level 4..5: steps 0 and 1; of level 0 (or none): no step;
- two stand-ins: the lower-level one at step 0 (the first on a tie), the other at step 1; every later
  step is the rare prompt alone. (The authors' code runs no transformer on steps 2-3 here and reuses
  step 1's prediction; rare-only was evidently intended and is what we do.)
- more than two (the authors refuse): stand-in j in level order at step j. Level-0 stand-ins never
  blend, as in the one-stand-in rule.
The rule is in step indices, as theirs; steps past the weight table use its last weight.

The embeddings go in through a forward pre-hook on the transformer (FLUX's step callback cannot swap
the pooled embedding); the pipeline is called as is, with the rare prompt's embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import family_of
from rarecli.llm.schema import Plan
from rarecli.methods.latents import pipeline_latents
from rarecli.methods.r2f.schedule import ordered_concepts, prompt_chain

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rarecli.backbones.loading import LoadedPipeline

ALPHAS = (0.3, 0.15, 0.15, 0.15)  # inference_r2f_flux.sh and playground.py


@dataclass(frozen=True)
class Blend:
    """The prompt chain (stand-ins, then the rare prompt), their levels, and per step which stand-in is
    blended in (None: the rare prompt alone) with what weight."""

    prompts: tuple[str, ...]
    levels: tuple[int, ...]
    steps: tuple[tuple[int | None, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": "flux-blend",
            "prompts": list(self.prompts),
            "levels": list(self.levels),
            "blend": [{"prompt": j, "weight": a} for j, a in self.steps],
        }


def flux_chain(plan: Plan) -> tuple[list[str], list[int]]:
    """The stand-in prompts and the rare prompt last, with each stand-in prompt's level."""
    if plan.chain is not None:
        return list(plan.chain.prompts), list(plan.chain.levels[: len(plan.chain.prompts) - 1])
    return prompt_chain(plan), [c.level for c in ordered_concepts(plan)]


def blend_steps(levels: Sequence[int], steps: int, alphas: Sequence[float] = ALPHAS) -> list[tuple[int | None, float]]:
    """Per step, (stand-in index or None, its weight), by the rule in the module docstring."""

    def alpha(i: int) -> float:
        return alphas[min(i, len(alphas) - 1)]

    table: list[tuple[int | None, float]] = [(None, 0.0)] * steps
    if len(levels) == 1:
        level = levels[0]
        blended = 1 if 1 <= level <= 3 else 2 if 4 <= level <= 5 else 0
        order = [0] * blended
    else:
        order = sorted((j for j, level in enumerate(levels) if level > 0), key=lambda j: levels[j])
    for i, j in enumerate(order[:steps]):
        table[i] = (j, alpha(i))
    return table


def build_blend(plan: Plan, steps: int) -> Blend:
    prompts, levels = flux_chain(plan)
    return Blend(tuple(prompts), tuple(levels), tuple(blend_steps(levels, steps)))


def _encode(loaded: LoadedPipeline, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    loaded.check_prompt_length(prompt)
    with torch.inference_mode():
        embeds, pooled, _ = loaded.pipe.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            device=loaded.manager.torch_device,
            num_images_per_prompt=1,
            max_sequence_length=family_of(loaded.family).max_sequence_length,
        )
    return embeds, pooled


def encode_blend(loaded: LoadedPipeline, blend: Blend) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Embeddings of the rare prompt (key -1) and of each stand-in prompt some step blends in."""
    used = {j for j, _ in blend.steps if j is not None}
    out = {-1: _encode(loaded, blend.prompts[-1])}
    for j in sorted(used):
        out[j] = _encode(loaded, blend.prompts[j])
    return out


def sample_r2f_flux(
    loaded: LoadedPipeline,
    blend: Blend,
    encoded: dict[int, tuple[torch.Tensor, torch.Tensor]],
    noise: torch.Tensor,
    guidance: float,
) -> Image.Image:
    """One image from `noise` (C, h, w), each step's text inputs blended as `blend` says."""
    import torch

    pipe = loaded.pipe
    manager = loaded.manager
    latents = (noise.unsqueeze(0) if noise.dim() == 3 else noise).to(manager.device, manager.torch_dtype)
    rare_embeds, rare_pooled = encoded[-1]
    step = {"i": 0}

    def blend_inputs(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        i = step["i"]
        step["i"] += 1
        j, a = blend.steps[i] if i < len(blend.steps) else (None, 0.0)
        if j is not None:
            embeds, pooled = encoded[j]
            kwargs["encoder_hidden_states"] = a * embeds + (1 - a) * rare_embeds
            kwargs["pooled_projections"] = a * pooled + (1 - a) * rare_pooled
        return args, kwargs

    f = pipe.vae_scale_factor
    # First among the hooks, so any other (an observer) sees what the transformer really receives.
    hook = pipe.transformer.register_forward_pre_hook(blend_inputs, with_kwargs=True, prepend=True)
    try:
        with torch.inference_mode():
            result = pipe(
                prompt_embeds=rare_embeds,
                pooled_prompt_embeds=rare_pooled,
                latents=pipeline_latents(loaded, latents),
                num_inference_steps=len(blend.steps),
                guidance_scale=guidance,
                height=latents.shape[-2] * f,
                width=latents.shape[-1] * f,
                max_sequence_length=family_of(loaded.family).max_sequence_length,
                output_type="pil",
            )
    finally:
        hook.remove()
    return result.images[0]
