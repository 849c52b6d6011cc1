"""Stdout is data: paths one per line, or JSON (one document, or JSON lines for batches)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_paths(paths: Iterable[Path | str]) -> None:
    for p in paths:
        sys.stdout.write(f"{p}\n")
    sys.stdout.flush()
