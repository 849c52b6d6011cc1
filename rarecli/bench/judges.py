"""The registry of RareBench judges: the one place a judge is registered, by name.

A judge is described by a `JudgeKind` (its protocols, default model, what pins its scores in a run's
config, whether it calls a service or runs on the device, the scale of its scores) and builds the
callable that scores one image (`verdict.Judge`). Running and reporting ask the judge, never its name:
- `gpt-4o` (`gpt4o_judge`): a vision model grading against a rubric, ours or the authors';
- `clipscore` (`clip_judge`): offline CLIPScore, on another scale.
A new judge is its own module plus one line below, or `register(...)` at run time.
"""

from __future__ import annotations

from typing import Any, Protocol

from rarecli.bench.clip_judge import ClipScoreKind
from rarecli.bench.definition import Definition
from rarecli.bench.gpt4o_judge import GPT4oJudge
from rarecli.bench.verdict import Judge
from rarecli.errors import InputError

PROTOCOLS = ("rare", "paper")


class JudgeKind(Protocol):
    name: str
    summary: str
    protocols: tuple[str, ...]  # the rubric protocols it judges under (`--protocol`)
    online: bool  # it calls a service: built, and so checked, before any image is drawn
    uses_device: bool  # it runs on the device: the diffusion model is freed before it loads

    def default_model(self, definition: Definition, protocol: str) -> str: ...

    def protocol_for(self, definition: Definition, protocol: str) -> Any: ...

    def identity(self, model: str, definition: Definition, protocol: Any) -> dict[str, Any]: ...

    def build(self, model: str, definition: Definition, manager: Any, base_url: str | None, protocol: Any) -> Judge: ...

    def endpoint(self, base_url: str | None) -> str | None: ...

    def scale(self, identity: dict[str, Any]) -> str: ...


JUDGES: dict[str, JudgeKind] = {}


def register(kind: JudgeKind, *, replace: bool = False) -> JudgeKind:
    if kind.name in JUDGES and not replace:
        raise ValueError(f"judge {kind.name!r} is already registered")
    JUDGES[kind.name] = kind
    return kind


def get(judge: str, protocol: str = "rare") -> JudgeKind:
    """The judge called `judge`, once it is known to judge under `protocol`; InputError otherwise."""
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r}", hint="choose from: " + ", ".join(JUDGES))
    if protocol not in PROTOCOLS:
        raise InputError(
            f"unknown protocol {protocol!r}", hint="choose rare (our rubric) or paper (the authors' judge)"
        )
    kind = JUDGES[judge]
    if protocol not in kind.protocols:
        able = [k.name for k in JUDGES.values() if protocol in k.protocols]
        raise InputError(
            f"--protocol {protocol} judges with {' or '.join(able)}, as the authors did",
            hint="drop --judge, or use --protocol rare",
        )
    return kind


def scale_of(identity: dict[str, Any]) -> str:
    """The scale a recorded judge's scores are on (its protocol, or its own): runs compare on one scale."""
    kind = JUDGES.get(str(identity.get("name")))
    return kind.scale(identity) if kind is not None else str(identity.get("protocol", "rare"))


def identity(judge: str, model: str | None, definition: Definition, protocol: Any = None) -> dict[str, Any]:
    """What pins a judge's scores, recorded in the run's config.json (a change is a new configuration)."""
    name = protocol.name if protocol is not None else "rare"
    kind = get(judge, name)
    return kind.identity(model or kind.default_model(definition, name), definition, protocol)


def build(
    judge: str,
    model: str | None,
    definition: Definition,
    manager: Any = None,
    base_url: str | None = None,
    protocol: Any = None,
) -> Judge:
    name = protocol.name if protocol is not None else "rare"
    kind = get(judge, name)
    return kind.build(model or kind.default_model(definition, name), definition, manager, base_url, protocol)


for _kind in (GPT4oJudge(), ClipScoreKind()):
    register(_kind)
