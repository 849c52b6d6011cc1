"""The registry of generation methods: the one place a method is registered, by name.

The CLI, RareBench, `rare augment` and the toy evaluation look methods up here (see
`rarecli.methods.protocol` for how they are driven); which model families each supports is in
`rarecli.backbones.families`.
"""

from __future__ import annotations

from rarecli.errors import InputError
from rarecli.methods.aapb.method import AAPB
from rarecli.methods.protocol import Method
from rarecli.methods.r2f.method import R2F
from rarecli.methods.r2f.plus_method import R2FPlus
from rarecli.methods.sample import PlainSampling
from rarecli.methods.seedselect.method import SeedSelect

METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    if method.name in METHODS and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get(name: str, purpose: str = "rare") -> Method:
    """The method called `name`; InputError (before any work) for an unknown one."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} for {purpose}", hint="choose from: " + ", ".join(METHODS))
    return METHODS[name]


for _method in (PlainSampling(), R2F(), R2FPlus(), AAPB(), SeedSelect("seedselect"), SeedSelect("nao-seedselect")):
    register(_method)
