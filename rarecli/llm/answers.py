"""Reading an LLM's answer as JSON: what both planners (R2F and R2F+) share.

An answer is first taken as it is; failing that, a Markdown fence or surrounding prose is removed, and
control characters inside strings are tolerated. Each such repair is listed, never silent, and anything
that still does not parse is an InvalidAnswer the planner can send back to the LLM.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidAnswer(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def extract_json(raw: str, repairs: list[str]) -> Any:
    text = raw.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    unfenced = _FENCE.sub("", text).strip()
    if unfenced != text:
        try:
            value = json.loads(unfenced)
            repairs.append("removed a Markdown code fence")
            return value
        except ValueError:
            text = unfenced
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        inner = text[start : end + 1]
        for strict in (True, False):
            try:
                value = json.loads(inner, strict=strict)
            except ValueError:
                continue
            if inner != raw.strip():
                repairs.append("took the JSON object out of surrounding text")
            if not strict:
                repairs.append("removed control characters inside strings")
            return value
    raise InvalidAnswer(["the answer is not a JSON object"])


def strip_controls(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub(" ", value)
    if isinstance(value, list):
        return [strip_controls(v) for v in value]
    if isinstance(value, dict):
        return {k: strip_controls(v) for k, v in value.items()}
    return value
