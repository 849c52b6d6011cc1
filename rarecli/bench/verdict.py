"""What a RareBench judge returns for one image, and how it fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import RareError


class JudgeFailed(RareError):
    """The judge could not score this image (API error, malformed answer); the item is recorded as failed."""


@dataclass
class Verdict:
    score: float  # 0..100
    raw: dict[str, Any]  # the judge's own output (1..5 score and explanation, or the cosine)
    cached: bool = False
    attempts: int = 1


Judge = Callable[[Path, str], Verdict]
