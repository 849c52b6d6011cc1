"""Stdout is data: paths one per line, or JSON (one document, or JSON lines for batches).

A command returns an `Output` (or yields one per finished batch); `_run.command` prints it, so every
command treats `--json`, `--quiet` and stdout the same way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Output:
    """What a command prints: `document` under --json, else `lines` (paths, names), one per line.
    `lines=None` means the document is the data (printed as JSON whatever the flags). `interrupted`:
    the work was cut short by Ctrl-C after writing what it had; the command exits 130."""

    document: Any
    lines: Sequence[Path | str] | None = None
    interrupted: bool = False


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def strict(obj: Any) -> Any:
    """`obj` with NaN and infinities as null: JSON has no such numbers, and a bare `NaN` breaks every
    strict reader downstream (jq, JSON.parse)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(strict(obj), default=_default, ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def emit_paths(paths: Iterable[Path | str]) -> None:
    for p in paths:
        sys.stdout.write(f"{p}\n")
    sys.stdout.flush()


def emit(output: Output, as_json: bool) -> None:
    if as_json or output.lines is None:
        emit_json(output.document)
    else:
        emit_paths(output.lines)
