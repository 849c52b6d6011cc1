"""`rare r2f generate` as a library call: R2F images for each plan, written with their settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.errors import InputError, RareError
from rarecli.io.atomic import check_writable
from rarecli.llm.schema import Plan
from rarecli.methods import registry
from rarecli.methods.output import write_generated
from rarecli.methods.protocol import MethodContext, Request
from rarecli.runtime.device import DeviceManager


@dataclass
class R2FConfig:
    plans: list[Plan]
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


@dataclass
class R2FResult:
    prompt: str
    images: list[Path] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    schedule: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "images": [str(p) for p in self.images],
            "seeds": self.seeds,
            "schedule": self.schedule,
        }


def run(config: R2FConfig, manager: DeviceManager) -> Iterator[R2FResult]:
    """Generate `num_images` per plan (seeds seed, seed+1, ...); yields one result per plan as it is done."""
    if not config.plans:
        raise InputError("no plans to generate from", hint="pipe `rare r2f plan` into `rare r2f generate -`")
    check_writable(config.out)
    options = {
        "schedule": config.schedule,
        **({"negative_prompt": config.negative_prompt} if config.negative_prompt else {}),
    }
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
    prepared = registry.get("r2f").prepare(context)
    seeds = range(config.seed, config.seed + config.num_images)
    for plan in config.plans:
        result = R2FResult(plan.prompt)
        for made in prepared.generate(Request(plan.prompt, seeds, plan=plan)):
            try:
                written = write_generated(made.image, made.provenance, folder=config.out)
            except RareError as exc:  # earlier plans' images were printed as they were yielded
                exc.written = result.images + exc.written
                raise
            result.images.append(written.image)
            result.seeds.append(made.seed)
            result.schedule = made.provenance.extra["schedule"]
        yield result
