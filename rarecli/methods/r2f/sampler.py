"""Rare-to-Frequent sampling on diffusers' SD3, SDXL and SD pipelines, through their public step callback.

Park et al., ICLR 2025 (arXiv 2410.22376). Each distinct prompt of the schedule is encoded once, before
sampling. The pipeline is called with the embeddings of step 0; its `callback_on_step_end`, which runs at
the end of step i, puts step i+1's embeddings in place (`prompt_embeds`, plus the pooled embeddings:
`pooled_prompt_embeds` for SD3, `add_text_embeds` for SDXL). Under classifier-free guidance the pipeline
keeps [unconditional, conditional] stacked in those tensors, so the callback hands back the same stack
with the conditional half switched: the negative prompt is the same at every step and CFG applies to
whichever prompt is active. No diffusers code is copied or patched.

Samplers follow the paper: SD3 with its FlowMatchEuler scheduler, 50 steps, CFG 7.0, T5 truncated at 77
tokens; SDXL with DPM-Solver++ multistep and Karras sigmas, 50 steps, CFG 5.0. SD 1.x/2.x keep their
own scheduler (CFG 7.5). Noise comes from integer seeds drawn on the CPU, one generator per image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rarecli.backbones.encoding import encode_prompt
from rarecli.backbones.families import R2F_REFERENCE_STEPS, family_of, sampler_label
from rarecli.methods.r2f.schedule import Schedule

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rarecli.backbones.loading import LoadedPipeline

DEFAULT_STEPS = R2F_REFERENCE_STEPS  # the paper samples 50 steps on every family


@dataclass
class Conditioning:
    """One prompt's embeddings, already stacked with the negative ones when CFG is on."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def pipeline_kwargs(self, cfg: bool) -> dict[str, Any]:
        """The embedding arguments of a pipeline call: it stacks [negative, positive] itself, so it is
        handed the halves (the pooled ones only where the family has them)."""

        def halves(t: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
            neg, pos = t.chunk(2) if cfg else (None, t)
            return neg, pos

        neg, pos = halves(self.prompt_embeds)
        out: dict[str, Any] = {"prompt_embeds": pos, "negative_prompt_embeds": neg}
        if self.pooled is not None:
            neg_pooled, pooled = halves(self.pooled)
            out.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=neg_pooled)
        return out


def encode(
    loaded: LoadedPipeline, prompt: str, negative: str | None, cfg: bool, max_sequence_length: int | None = None
) -> Conditioning:
    """One prompt's embeddings (SD3: T5 cut at `max_sequence_length`, default the family's)."""
    import torch

    pipe = loaded.pipe
    device = loaded.manager.torch_device
    loaded.check_prompt_length(prompt)
    pos, neg, pooled, neg_pooled = encode_prompt(pipe, loaded.family, prompt, negative, cfg, device, max_sequence_length)
    if cfg:
        pos = torch.cat([neg, pos], dim=0)
        if pooled is not None:
            pooled = torch.cat([neg_pooled, pooled], dim=0)
    return Conditioning(pos, pooled)


def uses_cfg(loaded: LoadedPipeline, guidance: float) -> bool:
    """Whether the pipeline will run classifier-free guidance, by its own rule (a UNet distilled with a
    guidance embedding, `time_cond_proj_dim`, never does), so the stacks we build match what it expects."""
    unet = getattr(loaded.pipe, "unet", None)
    distilled = unet is not None and getattr(unet.config, "time_cond_proj_dim", None) is not None
    return guidance > 1.0 and not distilled


def encode_schedule(
    loaded: LoadedPipeline, schedule: Schedule, guidance: float, negative: str | None = None
) -> list[Conditioning | None]:
    """Embeddings for each prompt of the chain that some step uses (None for the others, e.g. the
    all-frequent prompt when a level-0 concept is restored before step 0); identical texts share one."""
    import torch

    cfg = uses_cfg(loaded, guidance)
    used = set(schedule.indices)
    by_text: dict[str, Conditioning] = {}
    with torch.inference_mode():
        for i, text in enumerate(schedule.prompts):
            if i in used and text not in by_text:
                by_text[text] = encode(loaded, text, negative, cfg)
    return [by_text.get(text) if i in used else None for i, text in enumerate(schedule.prompts)]


def paper_scheduler_for(loaded: LoadedPipeline) -> Any:
    """The scheduler R2F samples this pipeline with: the family's (SDXL: DPM-Solver++ with Karras
    sigmas, as the paper), else the pipeline's own."""
    swap = family_of(loaded.family).r2f_scheduler
    if swap is None:
        return loaded.pipe.scheduler
    import diffusers

    name, overrides = swap
    return getattr(diffusers, name).from_config(loaded.pipe.scheduler.config, **overrides)


def sampler_name(loaded: LoadedPipeline) -> str:
    return sampler_label(paper_scheduler_for(loaded))


@contextlib.contextmanager
def paper_scheduler(loaded: LoadedPipeline) -> Iterator[None]:
    """Swap in the paper's scheduler for the duration of one call; the cached pipeline is restored."""
    pipe = loaded.pipe
    scheduler = paper_scheduler_for(loaded)
    if scheduler is pipe.scheduler:
        yield
        return
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        yield
    finally:
        pipe.scheduler = original


def sample_r2f(
    loaded: LoadedPipeline,
    schedule: Schedule,
    conds: list[Conditioning | None],
    noise: torch.Tensor,
    guidance: float,
    on_step: Callable[[int], None] | None = None,
) -> Image.Image:
    """One image from `noise` (C,h,w) following `schedule` (one prompt index per step)."""
    import torch

    pipe = loaded.pipe
    steps = len(schedule.indices)
    manager = loaded.manager
    latents = noise.unsqueeze(0) if noise.dim() == 3 else noise
    latents = latents.to(manager.device, manager.torch_dtype)
    pooled_name = family_of(loaded.family).pooled_embeds

    def switch(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nxt = step + 1
        if nxt < steps:
            cond = conds[schedule.indices[nxt]]
            tensors["prompt_embeds"] = cond.prompt_embeds
            if pooled_name is not None:
                tensors[pooled_name] = cond.pooled
        if on_step is not None:
            on_step(step)
        return tensors

    kwargs = conds[schedule.indices[0]].pipeline_kwargs(uses_cfg(loaded, guidance))
    f = pipe.vae_scale_factor
    with torch.inference_mode(), paper_scheduler(loaded):
        result = pipe(
            latents=latents,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=latents.shape[-2] * f,
            width=latents.shape[-1] * f,
            output_type="pil",
            callback_on_step_end=switch,
            callback_on_step_end_tensor_inputs=["prompt_embeds"] + ([pooled_name] if pooled_name else []),
            **kwargs,
        )
    return result.images[0]
