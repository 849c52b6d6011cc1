"""Object masks from a text-prompted detector and a box-prompted segmenter: not wired yet."""

from __future__ import annotations

from typing import Any

from rarecli.errors import InputError

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"
DEFAULT_MIN_SCORE = 0.3


class DetectorMasker:
    name = "detector"

    def __init__(self, detector: str, segmenter: str, manager: Any, min_score: float) -> None:
        raise InputError("--masks detector is not available in this version", hint="use --masks boxes")

    def load(self) -> None: ...

    def to_json(self) -> dict[str, Any]:
        return {}
