"""Box geometry of R2F+: boxes on a grid, the centred box an object is drawn in, and moving a mask or
a latent from that centred box to the object's own box."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, normalised, origin top-left


def box_mask(box: Box, rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) with 1 inside `box` (normalised corners), at least one cell."""
    import torch

    x0, y0, x1, y1 = box
    r0, c0 = min(round(y0 * rows), rows - 1), min(round(x0 * cols), cols - 1)
    r1, c1 = max(round(y1 * rows), r0 + 1), max(round(x1 * cols), c0 + 1)
    mask = torch.zeros(rows, cols)
    mask[r0:r1, c0:c1] = 1.0
    return mask


def centred(box: Box) -> Box:
    """The same box moved to the image centre (where an object is drawn alone)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return ((1 - w) / 2, (1 - h) / 2, (1 + w) / 2, (1 + h) / 2)


def shift_cells(box: Box, rows: int, cols: int) -> tuple[int, int]:
    """(down, right) in cells that move the centred box onto `box` on a rows x cols grid."""
    x0, y0, x1, y1 = box
    return round((y0 + y1 - 1) / 2 * rows), round((x0 + x1 - 1) / 2 * cols)


def shift_mask(mask: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """`mask` (..., H, W) moved by (down, right); what leaves the grid is dropped, what enters is 0."""
    import torch

    out = torch.zeros_like(mask)
    h, w = mask.shape[-2:]
    src_r, dst_r = (slice(0, h - down), slice(down, h)) if down >= 0 else (slice(-down, h), slice(0, h + down))
    src_c, dst_c = (slice(0, w - right), slice(right, w)) if right >= 0 else (slice(-right, w), slice(0, w + right))
    out[..., dst_r, dst_c] = mask[..., src_r, src_c]
    return out
