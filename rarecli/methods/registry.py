"""The registry of generation methods: the one place a method is registered, by name.

Each entry is a light `MethodSpec` (options class, families, what a request carries); the CLI, RareBench,
`rare augment`, the Python API and the toy evaluations look methods up here and never by a name of their
own. A new method is its own module(s) plus one line below; `register` also takes one at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rarecli.errors import InputError
from rarecli.methods.aapb.options import SPEC as AAPB
from rarecli.methods.plain.options import SPEC as PLAIN
from rarecli.methods.r2f.options import SPEC as R2F
from rarecli.methods.r2f_plus.options import SPEC as R2F_PLUS
from rarecli.methods.seedselect.options import NAO_SEEDSELECT_SPEC as NAO_SEEDSELECT
from rarecli.methods.seedselect.options import SEEDSELECT_SPEC as SEEDSELECT
from rarecli.methods.spec import MethodSpec

if TYPE_CHECKING:
    from rarecli.methods.protocol import Method

METHODS: dict[str, MethodSpec] = {}


def register(entry: MethodSpec | Method, *, replace: bool = False) -> MethodSpec:
    """Register a method's description, or an implementation object (its class's description under the
    object's own name)."""
    if not isinstance(entry, MethodSpec):
        method = entry
        entry = method.spec._replace(name=method.name, implementation=lambda _spec: method)
    if entry.name in METHODS and not replace:
        raise ValueError(f"method {entry.name!r} is already registered")
    METHODS[entry.name] = entry
    return entry


def spec(name: str, purpose: str = "rare") -> MethodSpec:
    """The description of the method called `name`; InputError (before any work) for an unknown one."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} for {purpose}", hint="choose from: " + ", ".join(METHODS))
    return METHODS[name]


def get(name: str, purpose: str = "rare") -> Method:
    """The implementation of the method called `name` (imported on first use)."""
    return spec(name, purpose).load()


def with_refs(needs_refs: bool) -> list[str]:
    """The registered methods that need reference images (or that do not)."""
    return [s.name for s in METHODS.values() if s.needs_refs == needs_refs]


def with_plans(kind: str) -> list[str]:
    """The registered methods that draw from plans of `kind`."""
    return [s.name for s in METHODS.values() if s.plan_kind == kind]


for _spec in (PLAIN, R2F, R2F_PLUS, AAPB, SEEDSELECT, NAO_SEEDSELECT):
    register(_spec)
