"""What the registry holds about a method: a light description (its name, paper, options class, the
model families it runs on, what a request must carry) and where its implementation lives.

The description imports nothing heavy, so the CLI derives its flags and help from it while `rare --help`
stays instant; the implementation (the `Method` protocol's `check` / `prepare`) is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rarecli.backbones.families import FAMILIES
from rarecli.errors import InputError
from rarecli.methods.options import MethodOptions


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str  # one line for `rare methods` and --help: what it does, and its paper
    options: type[MethodOptions]
    families: frozenset[str]  # the model families (keys of `rarecli.backbones.families`) it runs on
    # "module:Class" imported on first use, or a factory; either is called with this spec.
    implementation: str | Callable[[MethodSpec], Any]
    needs_refs: bool = False  # a request carries reference images (SeedSelect)
    # Which plans a request carries: "r2f" (R2F's plans, also AAPB's), "r2f-plus" (R2F+'s); None: none.
    plan_kind: str | None = None
    # `rare bench --plans authors`: the pinned plan files it replays (a `Category` attribute of RareBench's
    # definition) and the repository they come from ("" for R2F's own).
    authors_plans: str | None = None
    label: str = ""  # how prose names it (R2F+, AAPB); "" for its name
    _loaded: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def load(self) -> Any:
        """The implementation (a `rarecli.methods.protocol.Method`), built once."""
        if "method" not in self._loaded:
            factory = self.implementation
            if isinstance(factory, str):
                module, _, attr = factory.partition(":")
                factory = getattr(importlib.import_module(module), attr)
            self._loaded["method"] = factory(self)
        return self._loaded["method"]

    def pipelines(self) -> frozenset[str]:
        """The diffusers pipeline classes of the families it runs on."""
        return frozenset(f.pipeline for f in FAMILIES.values() if f.key in self.families)

    def parse(self, given: Mapping[str, Any] | MethodOptions | None = None, *, text: bool = False) -> MethodOptions:
        """Its options, checked; an options instance of this method passes as it is."""
        if isinstance(given, self.options):
            return given
        if isinstance(given, MethodOptions):
            raise InputError(f"{type(given).__name__} are not {self.name}'s options")
        return self.options.parse(given, text=text)

    @property
    def title(self) -> str:
        return self.label or self.name

    def family_labels(self) -> str:
        return ", ".join(f.label for f in FAMILIES.values() if f.key in self.families)


class MethodBase:
    """What every implementation shares: its description, and checking options against it. A subclass
    sets `spec` (or is given one: one class can serve two registered methods, as SeedSelect does)."""

    spec: MethodSpec

    def __init__(self, spec: MethodSpec | None = None) -> None:
        if spec is not None:
            self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def needs_refs(self) -> bool:
        return self.spec.needs_refs

    def check(self, options: Mapping[str, Any] | MethodOptions | None) -> MethodOptions:
        """The options, checked (InputError before anything loads)."""
        return self.spec.parse(options)
