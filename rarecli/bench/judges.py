"""Judges that score how well an image depicts its prompt, on RareBench's 0-100 scale: their names,
what pins a judge's scores in a run's config, and building one.

- `gpt-4o` (`gpt_judge`): a vision model grading against a rubric: ours (`--protocol rare`) or the
  authors' (`--protocol paper`, `paper_judge`);
- `clipscore` (`clip_judge`): offline CLIPScore, on another scale (compare clipscore runs only).
"""

from __future__ import annotations

from typing import Any

from rarecli.bench.clip_judge import CLIPSCORE_WEIGHT, DEFAULT_CLIP, ClipScoreJudge
from rarecli.bench.definition import Definition
from rarecli.bench.gpt_judge import GPTJudge, RubricProtocol
from rarecli.bench.paper_judge import PaperProtocol
from rarecli.bench.verdict import Judge
from rarecli.errors import InputError

JUDGES = ("gpt-4o", "clipscore")


PROTOCOLS = ("rare", "paper")
JudgeProtocol = RubricProtocol | PaperProtocol


def check_name(judge: str, protocol: str = "rare") -> str:
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r}", hint="choose gpt-4o (the paper's protocol) or clipscore (offline)")
    if protocol not in PROTOCOLS:
        raise InputError(
            f"unknown protocol {protocol!r}", hint="choose rare (our rubric) or paper (the authors' judge)"
        )
    if protocol == "paper" and judge != "gpt-4o":
        raise InputError(
            "--protocol paper judges with GPT-4o, as the authors did", hint="drop --judge, or use --protocol rare"
        )
    return judge


def default_model(judge: str, definition: Definition, protocol: str = "rare") -> str:
    if judge != "gpt-4o":
        return DEFAULT_CLIP
    if protocol == "paper" and definition.paper_judge is not None:
        return definition.paper_judge.model
    return definition.judge.model


def protocol_for(judge: str, definition: Definition, protocol: str = "rare") -> JudgeProtocol | None:
    """How the gpt-4o judge asks and reads (the paper's fetches and verifies the authors' script)."""
    check_name(judge, protocol)
    if judge != "gpt-4o":
        return None
    return PaperProtocol.fetch(definition) if protocol == "paper" else RubricProtocol(definition.judge)


def identity(
    judge: str, model: str | None, definition: Definition, protocol: JudgeProtocol | None = None
) -> dict[str, Any]:
    """What pins a judge's scores, recorded in the run's config.json (a change is a new configuration).
    Our rubric's identity has no `protocol` key (runs made before there were protocols stay valid)."""
    name = protocol.name if protocol is not None else "rare"
    check_name(judge, name)
    model = model or default_model(judge, definition, name)
    if judge == "gpt-4o" and isinstance(protocol, PaperProtocol):
        return {"name": judge, "model": model, **protocol.identity(), "per_image": "max(s - 1, 0) / 4 * 100"}
    if judge == "gpt-4o":
        spec = definition.judge
        return {
            "name": judge,
            "model": model,
            "rubric_version": spec.rubric_version,
            "rubric_sha256": spec.rubric_sha256,
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "per_image": "max(s - 1, 0) / 4 * 100",
        }
    return {"name": judge, "model": model, "per_image": f"100 * min({CLIPSCORE_WEIGHT} * max(cos, 0), 1)"}


def build(
    judge: str,
    model: str | None,
    definition: Definition,
    manager: Any = None,
    base_url: str | None = None,
    protocol: JudgeProtocol | None = None,
) -> Judge:
    name = protocol.name if protocol is not None else "rare"
    check_name(judge, name)
    model = model or default_model(judge, definition, name)
    if judge == "gpt-4o":
        return GPTJudge(protocol or RubricProtocol(definition.judge), model, base_url=base_url)
    return ClipScoreJudge(model, manager)
