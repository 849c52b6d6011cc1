"""How a RareBench run draws an item's image with a registered method (`rarecli.methods.registry`).

Every method is driven through the one method protocol: the run prepares it once per process and asks
for one image per item (the item's prompt and seed). What RareBench adds:
- reference images for the methods that need them (SeedSelect, NAO-SeedSelect): RareBench has none, so
  the user supplies `--refs-root DIR` with one folder per prompt, named after the prompt's slug (an item
  whose folder is missing fails with that reason; the run goes on);
- what a method makes besides the image (an optimised seed, a loss curve) is written, as the CLI writes
  it, under `RUN_DIR/method/<method>/<prompt slug>/`, and the item's PNG records where.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.bench.dataset import plan_key
from rarecli.errors import InputError
from rarecli.io.naming import slugify
from rarecli.llm.schema import Plan
from rarecli.methods import registry
from rarecli.methods.driver import Driver
from rarecli.methods.options import MethodOptions
from rarecli.methods.output import Provenance, Written, write_generated
from rarecli.methods.protocol import Generated, Method, MethodContext, Request
from rarecli.methods.r2f_plus.options import R2F_PLUS
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.methods.spec import MethodSpec
from rarecli.runtime.device import DeviceManager

COMMAND = "bench rarebench"
# Options of the run itself, not of the method: where references come from, which plans R2F replays.
# `t5` is a loading choice (MethodContext.t5), recorded in the identity since it changes the images.
RUN_OPTIONS = frozenset({"refs_root", "plans", "t5"})


def method_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in RUN_OPTIONS and v is not None}


def spec_of(name: str) -> MethodSpec:
    return registry.spec(name, "RareBench")


def reads_plus_plans(spec: MethodSpec) -> bool:
    """Whether the method's replayed plans are R2F+ plans (objects and boxes), not R2F's."""
    return spec.plan_kind == R2F_PLUS


def check(name: str, options: Mapping[str, Any]) -> tuple[Method, MethodOptions]:
    """The method and its options, checked: fails before the run folder or any model."""
    spec = spec_of(name)
    if spec.needs_refs:
        _check_refs_root(options)
    if options.get("plans") == "authors" and spec.authors_plans is None:
        replayable = [s.name for s in registry.METHODS.values() if s.authors_plans]
        raise InputError(f"--plans authors replays {', '.join(replayable)}'s published plans; {name} has none")
    method = spec.load()
    return method, method.check(method_options(options))


def _check_refs_root(options: Mapping[str, Any]) -> None:
    refs_root = options.get("refs_root")
    if not refs_root:
        raise InputError(
            "seedselect needs reference images: --refs-root DIR with one folder per prompt",
            hint="name each folder after the prompt's slug, e.g. DIR/a-hairy-frog/ for 'A hairy frog'",
        )
    if not Path(refs_root).is_dir():
        raise InputError(f"--refs-root {refs_root} is not a folder")


@dataclass
class Drawer:
    """Draws and writes items' images with one prepared method."""

    method: Method
    driver: Driver
    options: Mapping[str, Any]
    work_dir: Path  # where the method's own outputs go (seed files, run records)
    plans: Mapping[str, Plan | PlusPlan] | None = None  # --plans authors: the authors' plan of each prompt
    refused: Mapping[str, str] = field(default_factory=dict)  # their plans our checks refuse: why

    @classmethod
    def prepare(
        cls,
        name: str,
        model: str,
        revision: str | None,
        manager: DeviceManager,
        steps: int | None,
        guidance: float | None,
        options: Mapping[str, Any],
        work_dir: Path,
        plans: Mapping[str, Plan | PlusPlan] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> Drawer:
        method, checked = check(name, options)
        context = MethodContext(model, revision, manager, steps, guidance, checked, command=COMMAND, t5=options.get("t5"))
        return cls(method, Driver.prepare(method, context), options, work_dir, plans, dict(refused or {}))

    def draw(self, prompt: str, seed: int) -> Generated:
        refs = None
        if self.method.needs_refs:
            refs = Path(self.options["refs_root"]) / slugify(prompt)
            if not refs.is_dir():
                raise InputError(f"no reference folder for this prompt: {refs}")
        plan = None
        if self.plans is not None:
            key = plan_key(prompt)
            if key in self.refused:
                raise InputError(f"the authors' plan for this prompt is refused by our checks: {self.refused[key]}")
            plan = self.plans.get(key)
            if plan is None:
                raise InputError(f"the authors' plans hold no plan for this prompt: {prompt!r}")
        (drawn,) = self.driver.run(Request(prompt, [seed], refs=refs, plan=plan))
        return drawn.made

    def write(self, made: Generated, path: Path, item: dict[str, Any]) -> Path:
        """The item's PNG at `path`; the method's own record beside a copy of it in the work folder."""
        own = made.provenance
        hyper = {**(own.hyper or {}), **own.extra}
        if made.run_record is not None or made.extras:
            kept: Written = write_generated(
                made.image,
                own,
                folder=self.work_dir / slugify(own.prompt or ""),
                seed_tensor=made.seed_tensor if made.run_record is not None else None,
                run_record=made.run_record,
                extras=made.extras,
            )
            if made.run_record is not None:
                hyper.update(seed_file=str(kept.seed), run=str(kept.run))
            if made.extras:  # R2F+: the objects' own images and masks, beside a copy of the image
                hyper["parts"] = [str(p) for p in kept.extras]
        provenance = Provenance(
            command=COMMAND,
            method=self.method.name,
            prompt=own.prompt,
            seed=made.seed,
            model=own.model,
            hyper=hyper,
            extra=item,
            settings={**own.settings, "Method": self.method.name},
            negative_prompt=own.negative_prompt,
        )
        return write_generated(made.image, provenance, path=path).image
