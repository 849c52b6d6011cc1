"""What a method of the toy evaluation returns (shared by the evaluation and its method adapters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class MethodOutput:
    image: Image.Image
    iterations: int | None = None
    # Optional: the image the method would return after each of these iterations (0 = before any).
    checkpoints: dict[int, Image.Image] | None = None
    info: dict[str, Any] = field(default_factory=dict)


ToyMethod = Callable[[str, Sequence["Image.Image"], int], "Image.Image | MethodOutput"]
