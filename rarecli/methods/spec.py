"""What the registry holds about a method: a light description (its name, paper, options class, the
model families it runs on, what a request must carry) and where its implementation lives.

The description imports nothing heavy, so the CLI derives its flags and help from it while `rare --help`
stays instant; the implementation (the `Method` protocol's `check` / `prepare`) is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from rarecli.errors import InputError
from rarecli.methods.options import MethodOptions


class MethodSpec(NamedTuple):
    """(A named tuple, not a dataclass: the CLI reads these at start-up, and a dataclass compiles code.)"""

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

    def load(self) -> Any:
        """The implementation (a `rarecli.methods.protocol.Method`), built once per description."""
        key = id(self)
        if key not in _LOADED or _LOADED[key][0] is not self:
            factory = self.implementation
            if isinstance(factory, str):
                module, _, attr = factory.partition(":")
                factory = getattr(importlib.import_module(module), attr)
            _LOADED[key] = (self, factory(self))
        return _LOADED[key][1]

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


_LOADED: dict[int, tuple[MethodSpec, Any]] = {}  # by the description's identity: (it, its implementation)


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
