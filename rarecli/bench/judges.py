"""Judges that score how well an image depicts its prompt, on RareBench's 0-100 scale: their names,
what pins a judge's scores in a run's config, and building one.

- `gpt-4o` (`gpt_judge`): the paper's protocol, a vision model grading against a rubric;
- `clipscore` (`clip_judge`): offline CLIPScore, on another scale (compare clipscore runs only).
"""

from __future__ import annotations

from typing import Any

from rarecli.bench.clip_judge import CLIPSCORE_WEIGHT, DEFAULT_CLIP, ClipScoreJudge
from rarecli.bench.definition import Definition
from rarecli.bench.gpt_judge import GPTJudge
from rarecli.bench.verdict import Judge
from rarecli.errors import InputError

JUDGES = ("gpt-4o", "clipscore")


def default_model(judge: str, definition: Definition) -> str:
    return definition.judge.model if judge == "gpt-4o" else DEFAULT_CLIP


def check_name(judge: str) -> str:
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r}", hint="choose gpt-4o (the paper's protocol) or clipscore (offline)")
    return judge


def identity(judge: str, model: str | None, definition: Definition) -> dict[str, Any]:
    """What pins a judge's scores, recorded in the run's config.json (a change is a new configuration)."""
    check_name(judge)
    model = model or default_model(judge, definition)
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
) -> Judge:
    check_name(judge)
    model = model or default_model(judge, definition)
    if judge == "gpt-4o":
        return GPTJudge(definition.judge, model, base_url=base_url)
    return ClipScoreJudge(model, manager)
