"""AAPB behind the method protocol, on the plans R2F makes (Lee et al., CVPR 2026, arXiv 2603.19158).

A plan gives the two prompts AAPB needs: the anchor, its most frequent prompt (every rare phrase replaced
by its stand-in: the first prompt of its chain), and the target, the original prompt (the last). The
chain's middle prompts and the visual-detail levels are not used: gamma* replaces R2F's schedule.

Options: `gamma` (None: adaptive gamma*, the default; a number in [0, 1]: that gamma at every step, the
paper's ablation), `negative_prompt`, and R2F's planner options for RareBench (`llm_backend`, ...).
Steps default to 50 and the guidance to the family's (SD3: 7.0, as the paper runs it). SDXL samples with
R2F's DPM-Solver++ (the paper's SDXL sampler for R2F), so the two methods share a sampler per family.
FLUX.1 is refused: it is guidance-distilled, with no unconditional prediction for Eq. 13.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import family_of, find_family
from rarecli.backbones.loading import LoadedPipeline, declared_pipeline_class, latent_shape
from rarecli.errors import InputError
from rarecli.llm.planner import Planner, planner_from_options
from rarecli.llm.schema import Plan
from rarecli.log import progress
from rarecli.methods.aapb.guidance import GAMMA_MAX, GAMMA_MIN, AnchorInputs, GammaTrace, anchored
from rarecli.methods.aapb.options import PAPER, SPEC, AAPBOptions
from rarecli.methods.latents import pipeline_latents
from rarecli.methods.output import Provenance, settings_text
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.r2f.sampler import DEFAULT_STEPS, Conditioning, encode, paper_scheduler, sampler_name, uses_cfg
from rarecli.methods.r2f.schedule import prompt_chain
from rarecli.methods.spec import MethodBase
from rarecli.seeds.noise import noise_from_seed

if TYPE_CHECKING:
    import torch
    from PIL import Image



def anchor_and_target(plan: Plan) -> tuple[str, str]:
    """(anchor, target): the plan's most frequent prompt and its original one."""
    prompts = list(plan.chain.prompts) if plan.chain is not None else prompt_chain(plan)
    return prompts[0], prompts[-1]


class AAPB(MethodBase):
    """AAPB (`AAPBOptions`)."""

    spec = SPEC

    def prepare(self, context: MethodContext) -> _PreparedAAPB:
        context = replace(context, options=self.check(context.options))
        declared = find_family(declared_pipeline_class(context.model, context.revision) or "")
        if declared is not None and not declared.cfg:
            raise InputError(
                f"AAPB needs classifier-free guidance's unconditional prediction, and {context.model} is "
                f"{declared.label}, which is guidance-distilled and samples without CFG",
                hint="use --method r2f on FLUX, or AAPB on SD3, SDXL or SD",
            )
        planner = planner_from_options(context.options)
        loaded = context.load_pipeline(self)
        return _PreparedAAPB(loaded, context, planner)


def encode_pair(
    loaded: LoadedPipeline, anchor: str, target: str, negative: str | None, cfg: bool
) -> tuple[Conditioning, AnchorInputs | None]:
    """The target's conditioning (stacked with the negative one under CFG) and the anchor's positive
    half; no anchor when it is the target (AAPB is then plain CFG, bit for bit)."""
    import torch

    with torch.inference_mode():
        target_cond = encode(loaded, target, negative, cfg)
        if anchor == target:
            return target_cond, None
        anchor_cond = encode(loaded, anchor, negative, cfg)
    pooled = anchor_cond.pooled[-1:] if anchor_cond.pooled is not None else None
    return target_cond, AnchorInputs(anchor_cond.prompt_embeds[-1:], pooled)


def sample_aapb(
    loaded: LoadedPipeline,
    target: Conditioning,
    anchor: AnchorInputs | None,
    noise: torch.Tensor,
    steps: int,
    guidance: float,
    gamma: float | None,
    on_step: Any = None,
) -> tuple[list[Image.Image], GammaTrace]:
    """Images from `noise` (B, C, h, w, or one C, h, w) with the anchor blended in; the gamma trace."""
    import torch

    pipe = loaded.pipe
    manager = loaded.manager
    latents = noise.unsqueeze(0) if noise.dim() == 3 else noise
    n = latents.shape[0]
    cfg = uses_cfg(loaded, guidance)
    kwargs = target.pipeline_kwargs(cfg)
    if n > 1:
        kwargs = {k: (v.expand(n, *v.shape[1:]) if v is not None else None) for k, v in kwargs.items()}
    trace = GammaTrace()
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    use_anchor = anchor is not None and (cfg or gamma is not None)
    guide = anchored(denoiser, anchor, guidance, cfg, gamma, trace) if use_anchor else contextlib.nullcontext()
    f = pipe.vae_scale_factor

    def step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step)
        return tensors

    with torch.inference_mode(), paper_scheduler(loaded), guide:
        result = pipe(
            latents=pipeline_latents(loaded, latents.to(manager.device, manager.torch_dtype)),
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=latents.shape[-2] * f,
            width=latents.shape[-1] * f,
            output_type="pil",
            callback_on_step_end=step_end,
            **kwargs,
        )
    return list(result.images), trace


@dataclass
class _PreparedAAPB:
    loaded: LoadedPipeline
    context: MethodContext
    planner: Planner | None

    def plan(self, request: Request) -> Plan:
        if request.plan is not None:
            if not isinstance(request.plan, Plan):
                raise InputError("AAPB takes R2F plans (an anchor prompt per prompt), not R2F+ plans")
            return request.plan
        if self.planner is None:
            raise InputError(f"no plan for {request.prompt!r}", hint="give an R2F plan, or an LLM backend to plan with")
        return self.planner.plan(request.prompt)

    def generate(self, request: Request) -> Iterator[Generated]:
        loaded, context = self.loaded, self.context
        family = family_of(loaded.family)
        steps = context.steps or DEFAULT_STEPS
        guidance = family.guidance if context.guidance is None else context.guidance
        options: AAPBOptions = context.options  # type: ignore[assignment]
        negative = options.negative_prompt
        gamma = options.gamma
        plan = self.plan(request)
        anchor, target = anchor_and_target(plan)
        cfg = uses_cfg(loaded, guidance)
        target_cond, anchor_inputs = encode_pair(loaded, anchor, target, negative, cfg)
        if anchor_inputs is None:
            mode = "none: the anchor is the target (plain CFG)"
        elif not cfg and gamma is None:
            mode = "none: adaptive gamma* needs CFG (guidance <= 1 gives the target alone)"
        else:
            mode = "adaptive" if gamma is None else f"fixed {gamma:g}"
        shape = latent_shape(loaded.ref, context.height, context.width)
        sampler = sampler_name(loaded)
        hyper = {
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
            "negative_prompt": negative,
            "family": loaded.family,
            "gamma": "adaptive" if gamma is None else gamma,
            "gamma_bounds": [GAMMA_MIN, GAMMA_MAX],
            "gamma_per": "image",
            "latent_shape": list(shape),
        }
        if loaded.has_t5 is not None:
            hyper["t5"] = loaded.has_t5
        seeds = list(request.seeds)
        wanted = request.wanted()
        with progress(SPEC.name, total=len(wanted) * steps) as bar:
            for i in wanted:
                seed = seeds[i]
                noise = noise_from_seed(seed, shape)
                (image,), trace = sample_aapb(
                    loaded, target_cond, anchor_inputs, noise, steps, guidance, gamma, on_step=lambda _: bar.advance()
                )
                per_step = trace.per_image()[0] if trace.steps else []
                summary = f"{mode}" + (f", mean {sum(per_step) / len(per_step):.3f}" if per_step else "")
                provenance = Provenance(
                    command=context.command,
                    method=SPEC.name,
                    prompt=plan.prompt,
                    seed=seed,
                    model=loaded.meta(),
                    hyper=dict(hyper),
                    extra={
                        "plan": plan.to_json(),
                        SPEC.name: {"anchor": anchor, "target": target, "mode": mode, "gamma_trace": per_step,
                                 "paper": PAPER},  # fmt: skip
                    },
                    settings=settings_text(sampler, steps, guidance, seed, context.model, **{"AAPB gamma": summary}),
                    negative_prompt=negative,
                )
                yield Generated(i, seed, image, provenance, seed_tensor=noise)
