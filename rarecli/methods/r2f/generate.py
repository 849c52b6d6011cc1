"""`rare r2f generate` and `rarecli.r2f.generate` as one library call: images for each plan by R2F (R2F+
for R2F+ plans) or another reader of R2F's plans (AAPB), written with their settings or kept in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.errors import InputError
from rarecli.io.atomic import check_writable
from rarecli.methods import registry
from rarecli.methods.driver import Driver, to_folder
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.r2f.options import R2F
from rarecli.methods.r2f.plans import AnyPlan, plan_kind_of
from rarecli.methods.spec import MethodSpec
from rarecli.runtime.device import DeviceManager


@dataclass
class R2FConfig:
    plans: list[AnyPlan]
    method: str = R2F  # a method that reads R2F plans: R2F (R2F+ for R2F+ plans), or AAPB
    model: str = "stabilityai/stable-diffusion-3-medium-diffusers"
    revision: str | None = None
    steps: int | None = None
    guidance: float | None = None
    num_images: int = 1
    seed: int = 0
    out: Path = Path("out/r2f")
    height: int | None = None  # None: the model's native size
    width: int | None = None
    t5: bool | None = None  # SD3: load T5 (True), leave it out (False), or as the model is saved (None)
    # The method's options, by name (`negative_prompt`, `schedule`, `gamma`, `masks`, ...); one at its
    # default counts as not chosen, so it is never "an option of another method".
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class R2FResult:
    prompt: str
    images: list[Path] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    schedule: dict[str, Any] | None = None
    parts: list[Path] = field(default_factory=list)  # R2F+: each object's image and mask, the boxes drawn
    made: list[Generated] = field(default_factory=list)  # the images, in memory, with their provenance

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


def _given(config: R2FConfig) -> dict[str, Any]:
    """The options the job chooses: each set to something other than "" and its default (its default in
    the methods that read plans; an option none of them has is kept, to be named)."""
    readers = [s for s in registry.METHODS.values() if s.plan_kind is not None]
    defaults = {o.name: o.default for spec in readers for o in spec.options.describe()}
    return {k: v for k, v in config.options.items() if v != "" and (k not in defaults or v != defaults[k])}


def choose_method(config: R2FConfig) -> tuple[MethodSpec, dict[str, Any]]:
    """The method that runs the plans (R2F's own plans may name another reader of them: AAPB; R2F+
    plans run R2F+), with the options the job sets; an option of another method is named."""
    kinds = {plan_kind_of(p) for p in config.plans}
    if len(kinds) > 1:
        raise InputError("the plans mix R2F and R2F+ plans", hint="generate them separately: one file of each kind")
    (kind,) = kinds
    spec = registry.spec(config.method, "rare r2f generate")
    if spec.plan_kind != kind:
        readers = registry.with_plans(kind)
        if spec.name != R2F or not readers:
            theirs = registry.spec(spec.plan_kind or kind).title
            raise InputError(f"{spec.title} takes {theirs} plans, not {registry.spec(kind).title} plans")
        spec = registry.spec(readers[0])  # R2F on R2F+ plans is R2F+
    given = _given(config)
    names = spec.options.names()
    for name in given:
        if name in names:
            continue
        flag = "--" + name.replace("_", "-")
        owner = next((s for s in registry.METHODS.values() if name in s.options.names() and s.plan_kind), None)
        if owner is None:
            raise InputError(f"{flag} is not an option of {spec.title}")
        if owner.plan_kind != spec.plan_kind:
            raise InputError(f"{flag} is for {registry.spec(owner.plan_kind or '').title} plans")
        raise InputError(
            f"{flag} is {owner.title}'s {owner.options.describe_one(name).info.what}; {spec.title} has none",
            hint=f"add --method {owner.name}",
        )
    return spec, given


def run(
    config: R2FConfig, manager: DeviceManager, write: bool = True, command: str = "r2f generate"
) -> Iterator[R2FResult]:
    """Generate `num_images` per plan (seeds seed, seed+1, ...); yields one result per plan as it is done.
    `write=False`: nothing is written, the images are the results' `made`."""
    if not config.plans:
        raise InputError("no plans to generate from", hint="pipe `rare r2f plan` into `rare r2f generate -`")
    spec, given = choose_method(config)
    options = spec.parse(given)  # checked once, before the output folder or any model
    if write:
        check_writable(config.out)
    context = MethodContext(
        config.model,
        config.revision,
        manager,
        config.steps,
        config.guidance,
        options,
        command=command,  # recorded in each image's provenance
        t5=config.t5,
        height=config.height,
        width=config.width,
    )
    driver = Driver.prepare(spec.load(), context)
    seeds = range(config.seed, config.seed + config.num_images)
    writer = to_folder(config.out, seeds=False) if write else None
    for plan in config.plans:  # each plan's images are printed as soon as its result is yielded
        result = R2FResult(plan.prompt)
        driver.written.clear()  # earlier plans' files were printed with their results: a failure names this plan's
        for drawn in driver.run(Request(plan.prompt, seeds, plan=plan), writer):
            result.made.append(drawn.made)
            result.seeds.append(drawn.made.seed)
            if drawn.written is not None:
                result.images.append(drawn.written.image)
                result.parts.extend(drawn.written.extras)
            extra = drawn.made.provenance.extra
            result.schedule = extra["schedule"] if "schedule" in extra else extra.get(spec.name)
        yield result
