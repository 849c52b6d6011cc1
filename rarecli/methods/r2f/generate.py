"""`rare r2f generate` as a library call: R2F (or R2F+) images for each plan, written with their settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.errors import InputError, RareError
from rarecli.io.atomic import check_writable
from rarecli.llm.plus_schema import PlusPlan
from rarecli.methods import registry
from rarecli.methods.output import write_generated
from rarecli.methods.protocol import MethodContext, Request
from rarecli.methods.r2f.plans import AnyPlan
from rarecli.runtime.device import DeviceManager


@dataclass
class R2FConfig:
    plans: list[AnyPlan]
    method: str = "r2f"  # r2f (R2F, or R2F+ for R2F+ plans) or aapb (AAPB on the same R2F plans)
    gamma: float | None = None  # aapb: a fixed anchor weight (None: the adaptive gamma*)
    model: str = "stabilityai/stable-diffusion-3-medium-diffusers"
    revision: str | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    schedule: str = "rare"  # rare (ours) or authors (their step rule, for replaying their plans)
    num_images: int = 1
    seed: int = 0
    out: Path = Path("out/r2f")
    height: int | None = None  # None: the model's native size
    width: int | None = None
    t5: bool | None = None  # SD3: load T5 (True), leave it out (False), or as the model is saved (None)
    # R2F+ plans only: where each object's mask comes from (boxes, or detector: detector + segmenter)
    masks: str = "boxes"
    detector: str | None = None
    segmenter: str | None = None
    min_detection_score: float | None = None


@dataclass
class R2FResult:
    prompt: str
    images: list[Path] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    schedule: dict[str, Any] | None = None
    parts: list[Path] = field(default_factory=list)  # R2F+: each object's image and mask, the boxes drawn

    def to_json(self) -> dict[str, Any]:
        out = {
            "prompt": self.prompt,
            "images": [str(p) for p in self.images],
            "seeds": self.seeds,
            "schedule": self.schedule,
        }
        if self.parts:
            out["parts"] = [str(p) for p in self.parts]
        return out


def _method_and_options(config: R2FConfig) -> tuple[str, dict[str, Any]]:
    """R2F or R2F+ (by the plans' kind), with the options that kind takes; a mix is refused."""
    plus = [isinstance(p, PlusPlan) for p in config.plans]
    negative = {"negative_prompt": config.negative_prompt} if config.negative_prompt else {}
    detection = {
        k: v
        for k, v in (
            ("detector", config.detector),
            ("segmenter", config.segmenter),
            ("min_detection_score", config.min_detection_score),
        )
        if v is not None
    }
    if config.method == "aapb":
        if any(plus):
            raise InputError("AAPB takes R2F plans (an anchor prompt per prompt), not R2F+ plans")
        if config.schedule != "rare":
            raise InputError("--schedule is R2F's step rule; AAPB has none (gamma* decides every step)")
        if config.masks != "boxes" or detection:
            raise InputError("--masks, --detector, --segmenter and --min-detection-score are for R2F+ plans")
        gamma = {"gamma": config.gamma} if config.gamma is not None else {}
        return "aapb", {**gamma, **negative}
    if config.gamma is not None:
        raise InputError("--gamma is AAPB's anchor weight", hint="add --method aapb")
    if all(plus):
        if config.schedule != "rare":
            raise InputError("--schedule is for R2F plans; R2F+ plans alternate each object by its own levels")
        if detection and config.masks != "detector":
            raise InputError(f"--{next(iter(detection)).replace('_', '-')} needs --masks detector")
        return "r2f-plus", {"masks": config.masks, **detection, **negative}
    if any(plus):
        raise InputError("the plans mix R2F and R2F+ plans", hint="generate them separately: one file of each kind")
    if config.masks != "boxes" or detection:
        raise InputError("--masks, --detector, --segmenter and --min-detection-score are for R2F+ plans")
    return "r2f", {"schedule": config.schedule, **negative}


def run(config: R2FConfig, manager: DeviceManager) -> Iterator[R2FResult]:
    """Generate `num_images` per plan (seeds seed, seed+1, ...); yields one result per plan as it is done."""
    if not config.plans:
        raise InputError("no plans to generate from", hint="pipe `rare r2f plan` into `rare r2f generate -`")
    method, options = _method_and_options(config)
    check_writable(config.out)
    context = MethodContext(
        config.model,
        config.revision,
        manager,
        config.steps,
        config.guidance,
        options,
        command="r2f generate",
        t5=config.t5,
        height=config.height,
        width=config.width,
    )
    prepared = registry.get(method).prepare(context)
    seeds = range(config.seed, config.seed + config.num_images)
    for plan in config.plans:
        result = R2FResult(plan.prompt)
        for made in prepared.generate(Request(plan.prompt, seeds, plan=plan)):
            try:
                written = write_generated(made.image, made.provenance, folder=config.out, extras=made.extras)
            except RareError as exc:  # earlier plans' images were printed as they were yielded
                exc.written = result.images + exc.written
                raise
            result.images.append(written.image)
            result.parts.extend(written.extras)
            result.seeds.append(made.seed)
            extra = made.provenance.extra
            result.schedule = extra["schedule"] if "schedule" in extra else extra.get("aapb")
        yield result
