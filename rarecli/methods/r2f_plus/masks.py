"""Masks of R2F+ objects: where, in an object's own image, the object is (to paste its latents from).

`boxes` takes the object's (centred) box itself: no extra model, always available, and what is used
when detection is weak. `detector` finds the object with a text-prompted detector (GroundingDINO) and
outlines it with a box-prompted segmenter (SAM), as the authors do (`detect`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rarecli.methods.r2f_plus.geometry import Box, box_mask
from rarecli.methods.r2f_plus.schema import PlusObject

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class Mask:
    latent: torch.Tensor  # (rows, cols) at latent size, in [0, 1]
    image: torch.Tensor  # (height, width) at image size, in [0, 1]
    source: str  # "box", "detector", or "box (weak detection: ...)"


class Masker(Protocol):
    name: str

    def mask(self, image: Image.Image, obj: PlusObject, box: Box, latent_size: tuple[int, int]) -> Mask: ...

    def to_json(self) -> dict[str, Any]:
        """What an image's settings record about the masker besides its name."""


def box_only(box: Box, image_size: tuple[int, int], latent_size: tuple[int, int], source: str = "box") -> Mask:
    """The box as the mask, drawn on each grid directly (hard edges at latent size, not a resized image)."""
    width, height = image_size
    return Mask(box_mask(box, *latent_size), box_mask(box, height, width), source)


class BoxMasker:
    name = "boxes"

    def mask(self, image: Image.Image, obj: PlusObject, box: Box, latent_size: tuple[int, int]) -> Mask:
        return box_only(box, image.size, latent_size)

    def to_json(self) -> dict[str, Any]:
        return {}
