"""Rare-to-Frequent behind the method protocol (Park et al., ICLR 2025, arXiv 2410.22376).

A request carries its plan (`rare r2f generate`, the toy evaluation, RareBench's `--plans authors`), or
R2F asks its planner for one (RareBench: options `llm_backend`, `llm_model`, `llm_base_url`; answers are
cached on disk, so a resumed run asks nothing twice). Options: `negative_prompt`, and `schedule`: `rare`
(ours, the default) or `authors` (their step rule, quirks included; `schedule.py`). Steps default to the
paper's 50 and the guidance to the model family's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from rarecli.backbones.families import family_of
from rarecli.backbones.loading import LoadedPipeline, latent_shape
from rarecli.errors import InputError
from rarecli.llm.planner import Planner, planner_from_options
from rarecli.llm.schema import Plan
from rarecli.log import progress
from rarecli.methods.output import Provenance, settings_text
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.r2f.flux import build_blend, encode_blend, sample_r2f_flux
from rarecli.methods.r2f.options import SPEC, R2FOptions
from rarecli.methods.r2f.sampler import DEFAULT_STEPS, Conditioning, encode_schedule, sample_r2f, sampler_name
from rarecli.methods.r2f.schedule import Schedule, build_schedule
from rarecli.methods.spec import MethodBase
from rarecli.seeds.noise import noise_from_seed


class R2F(MethodBase):
    """R2F (`R2FOptions`)."""

    spec = SPEC

    def prepare(self, context: MethodContext) -> _PreparedR2F:
        options: R2FOptions = self.check(context.options)  # type: ignore[assignment]
        context = replace(context, options=options)
        planner = planner_from_options(options)
        loaded = context.load_pipeline(self)
        return _PreparedR2F(loaded, context, planner)


@dataclass
class _PreparedR2F:
    loaded: LoadedPipeline
    context: MethodContext
    planner: Planner | None
    # The last plan's schedule and embeddings: requests come prompt by prompt (RareBench items), so
    # one is reused across a prompt's seeds without keeping every prompt's embeddings.
    _last: tuple[str, Schedule, list[Conditioning | None]] | None = field(default=None, repr=False)

    def plan(self, request: Request) -> Plan:
        if request.plan is not None:
            return request.plan
        if self.planner is None:
            raise InputError(f"no R2F plan for {request.prompt!r}", hint="give a plan, or an LLM backend to plan with")
        return self.planner.plan(request.prompt)

    def generate(self, request: Request) -> Iterator[Generated]:
        if not family_of(self.loaded.family).cfg:  # FLUX: no CFG to alternate prompts under
            yield from self._generate_blend(request)
            return
        loaded, context = self.loaded, self.context
        options: R2FOptions = context.options  # type: ignore[assignment]
        family = family_of(loaded.family)
        steps = context.steps or DEFAULT_STEPS
        guidance = family.guidance if context.guidance is None else context.guidance
        negative = options.negative_prompt
        rule = options.schedule
        plan = self.plan(request)
        key = repr((plan.to_json(), steps, guidance, negative, rule))
        if self._last is None or self._last[0] != key:
            schedule = build_schedule(plan, loaded.family, steps, rule)
            self._last = (key, schedule, encode_schedule(loaded, schedule, guidance, negative))
        _, schedule, conds = self._last
        shape = latent_shape(loaded.ref, context.height, context.width)
        sampler = sampler_name(loaded)
        hyper = {
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
            "negative_prompt": negative,
            "family": loaded.family,
            "level_stops_family": family.key,
            "schedule_rule": rule,
            "latent_shape": list(shape),
        }
        if loaded.has_t5 is not None:
            hyper["t5"] = loaded.has_t5
        stops = "/".join(str(s) for s in schedule.stops) or "none"
        seeds = list(request.seeds)
        wanted = request.wanted()
        with progress(SPEC.name, total=len(wanted) * steps) as bar:
            for i in wanted:
                seed = seeds[i]
                noise = noise_from_seed(seed, shape)
                image = sample_r2f(loaded, schedule, conds, noise, guidance, on_step=lambda _: bar.advance())
                provenance = Provenance(
                    command=context.command,
                    method=SPEC.name,
                    prompt=plan.prompt,
                    seed=seed,
                    model=loaded.meta(),
                    hyper=dict(hyper),
                    extra={"plan": plan.to_json(), "schedule": schedule.to_json()},
                    settings=settings_text(sampler, steps, guidance, seed, context.model, **{"R2F stops": stops}),
                    negative_prompt=negative,
                )
                yield Generated(i, seed, image, provenance, seed_tensor=noise)

    def _generate_blend(self, request: Request) -> Iterator[Generated]:
        """R2F without CFG: the authors' embedding blend on FLUX.1-schnell (`flux.py`), 4 steps by default."""
        loaded, context = self.loaded, self.context
        options: R2FOptions = context.options  # type: ignore[assignment]
        family = family_of(loaded.family)
        checkpoint = loaded.checkpoint
        if checkpoint is None or checkpoint.r2f_rule != "blend":
            raise InputError(
                f"R2F on {family.label} follows the authors' rule for FLUX.1-schnell's 4 steps, and "
                f"{context.model} is {checkpoint.label if checkpoint else 'not FLUX.1-schnell'}: no R2F rule is "
                "published for it",
                hint="use FLUX.1-schnell, or R2F on SD3, SDXL or SD",
            )
        if options.schedule != "rare":
            raise InputError("--schedule is for SD, SDXL and SD3; on FLUX, R2F blends embeddings by the authors' rule")
        if options.negative_prompt:
            raise InputError("FLUX samples without CFG: a negative prompt has no effect", hint="leave out --negative-prompt")
        steps = context.steps or checkpoint.r2f_steps or DEFAULT_STEPS
        distilled = not getattr(loaded.pipe.transformer.config, "guidance_embeds", False)
        guidance = family.guidance if context.guidance is None else context.guidance
        plan = self.plan(request)
        blend = build_blend(plan, steps)
        encoded = encode_blend(loaded, blend)
        shape = latent_shape(loaded.ref, context.height, context.width)
        sampler = sampler_name(loaded)
        hyper = {
            "steps": steps,
            "guidance": None if distilled else guidance,  # schnell has no guidance embedding: unused
            "sampler": sampler,
            "family": loaded.family,
            "schedule_rule": "flux-blend",
            "latent_shape": list(shape),
        }
        weights = "/".join(f"{a:g}" if j is not None else "0" for j, a in blend.steps)
        seeds = list(request.seeds)
        wanted = request.wanted()
        with progress(SPEC.name, total=len(wanted)) as bar:
            for i in wanted:
                seed = seeds[i]
                noise = noise_from_seed(seed, shape)
                image = sample_r2f_flux(loaded, blend, encoded, noise, guidance)
                bar.advance()
                provenance = Provenance(
                    command=context.command,
                    method=SPEC.name,
                    prompt=plan.prompt,
                    seed=seed,
                    model=loaded.meta(),
                    hyper=dict(hyper),
                    extra={"plan": plan.to_json(), "schedule": blend.to_json()},
                    settings=settings_text(
                        sampler, steps, hyper["guidance"], seed, context.model, **{"R2F blend": weights}
                    ),
                )
                yield Generated(i, seed, image, provenance, seed_tensor=noise)
