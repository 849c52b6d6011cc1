"""R2F+ (region-guided Rare-to-Frequent) behind the method protocol, on SD3 only.

A request carries an R2F+ plan (`rare r2f generate` on a `rare.r2fplus.plan`, RareBench replaying the
authors' plans), or the method asks its planner for one (RareBench: options `llm_backend`, `llm_model`,
`llm_base_url`). Options: `negative_prompt`; `masks`: `boxes` (each object's box is its mask) or
`detector` (GroundingDINO + SAM, `detector` and `segmenter` model ids or folders, and
`min_detection_score` below which detection counts as weak and the box is used). Steps default to the
paper's 50 and the guidance to SD3's 7.0. See `sampler` for what runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from rarecli.backbones.families import family_of
from rarecli.backbones.loading import LoadedPipeline, latent_shape
from rarecli.errors import InputError
from rarecli.io.grid import draw_boxes
from rarecli.llm.planner import Planner, planner_from_options
from rarecli.log import progress
from rarecli.methods.output import Provenance, settings_text
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.r2f.sampler import DEFAULT_STEPS, sampler_name
from rarecli.methods.r2f_plus.answer import R2F_PLUS
from rarecli.methods.r2f_plus.detect import DetectorMasker
from rarecli.methods.r2f_plus.masks import BoxMasker, Masker
from rarecli.methods.r2f_plus.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_SCORE,
    DEFAULT_SEGMENTER,
    SPEC,
    R2FPlusOptions,
)
from rarecli.methods.r2f_plus.sampler import PlusSettings, Trace, sample_plus
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.methods.spec import MethodBase


class R2FPlus(MethodBase):
    """R2F+ (`R2FPlusOptions`)."""

    spec = SPEC

    def prepare(self, context: MethodContext) -> _PreparedPlus:
        options: R2FPlusOptions = self.check(context.options)  # type: ignore[assignment]
        context = replace(context, options=options)
        planner = planner_from_options(options, R2F_PLUS)
        masker: Masker = BoxMasker()
        if options.masks == "detector":
            masker = DetectorMasker(
                options.detector or DEFAULT_DETECTOR,
                options.segmenter or DEFAULT_SEGMENTER,
                context.manager,
                DEFAULT_MIN_SCORE if options.min_detection_score is None else options.min_detection_score,
            )
            masker.load()  # a missing detector fails before the pipeline loads
        loaded = context.load_pipeline(self, f"{context.command} (R2F+ runs on SD3 only)")
        return _PreparedPlus(loaded, context, planner, masker)


@dataclass
class _PreparedPlus:
    loaded: LoadedPipeline
    context: MethodContext
    planner: Planner | None
    masker: Masker

    def plan(self, request: Request) -> PlusPlan:
        if isinstance(request.plan, PlusPlan):
            return request.plan
        if request.plan is not None:
            raise InputError(
                f"{request.prompt!r}: r2f-plus needs an R2F+ plan (`rare r2f plan --plus`), not an R2F plan"
            )
        if self.planner is None:
            raise InputError(f"no R2F+ plan for {request.prompt!r}", hint="give a plan, or an LLM backend to plan with")
        return self.planner.plan(request.prompt)

    def generate(self, request: Request) -> Iterator[Generated]:
        loaded, context = self.loaded, self.context
        family = family_of(loaded.family)
        steps = context.steps or DEFAULT_STEPS
        guidance = family.guidance if context.guidance is None else context.guidance
        negative = context.options.negative_prompt  # type: ignore[union-attr]
        # Without a T5 encoder its 256 positions would be zeros: carry no text, only dilute attention. There
        # R2F+ feeds the family's length (77), as R2F and AAPB do, so every method sees one conditioning shape.
        t5_length = {} if loaded.has_t5 is not False else {"max_sequence_length": family.max_sequence_length or 77}
        settings = PlusSettings.for_steps(steps, guidance, negative, **t5_length)
        plan = self.plan(request)
        shape = latent_shape(loaded.ref, context.height, context.width)
        sampler = sampler_name(loaded)
        hyper: dict[str, Any] = {
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
            "negative_prompt": negative,
            "family": loaded.family,
            "latent_shape": list(shape),
            "masks": self.masker.name,
            **settings.to_json(),
            **self.masker.to_json(),
        }
        if loaded.has_t5 is not None:
            hyper["t5"] = loaded.has_t5
        seeds = list(request.seeds)
        wanted = request.wanted()
        with progress("r2f+", total=len(wanted)) as bar:
            for i in wanted:
                seed = seeds[i]
                trace = Trace()
                made = sample_plus(loaded, plan, seed, shape, settings, self.masker, trace)
                extras = {}
                for obj in made.objects:
                    number = obj.key.lstrip("#")
                    extras[f"object-{number}"] = draw_boxes(obj.image, [obj.centred_box], [obj.key])
                    extras[f"mask-{number}"] = obj.mask
                extras["boxes"] = draw_boxes(made.image, [o.box for o in plan.objects], [o.key for o in plan.objects])
                provenance = Provenance(
                    command=context.command,
                    method=SPEC.name,
                    prompt=plan.prompt,
                    seed=seed,
                    model=loaded.meta(),
                    hyper=dict(hyper),
                    extra={
                        "plan": plan.to_json(),
                        "schedule": trace.phrases,
                        "masks": {o.key: o.mask_source for o in made.objects},
                        "cost": {"transformer_forward": trace.forward, "transformer_backward": trace.backward},
                    },
                    settings=settings_text(sampler, steps, guidance, seed, context.model, Method="R2F+"),
                    negative_prompt=negative,
                )
                bar.advance()
                yield Generated(i, seed, made.image, provenance, extras=extras)
