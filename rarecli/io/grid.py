"""Image grids and strips: several images in one picture, each optionally captioned underneath."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from PIL import Image


def make_grid(
    images: Sequence[Image.Image],
    cols: int | None = None,
    labels: Sequence[str] | None = None,
    pad: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile `images` left to right, top to bottom, into one RGB image.

    cols: tiles per row; None puts them all in one row (a strip). Images of different sizes get cells
    of the largest size and are centred in them. labels: one caption per image, drawn under it (cut
    with an ellipsis when wider than the cell).
    """

    if not images:
        raise ValueError("make_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    cols = len(images) if cols is None else cols
    if cols < 1:
        raise ValueError(f"cols must be >= 1 (got {cols})")
    rows = math.ceil(len(images) / cols)
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    font = ImageFont.load_default()
    text_h = 0
    if labels is not None:
        top, bottom = font.getbbox("Ag|")[1::2]
        text_h = bottom - top + pad
    width = cols * cell_w + (cols + 1) * pad
    height = rows * (cell_h + text_h) + (rows + 1) * pad
    grid = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        x0 = pad + col * (cell_w + pad)
        y0 = pad + row * (cell_h + text_h + pad)
        grid.paste(image.convert("RGB"), (x0 + (cell_w - image.width) // 2, y0 + (cell_h - image.height) // 2))
        if labels is not None:
            text = _fit(draw, labels[i], font, cell_w)
            w = draw.textlength(text, font=font)
            draw.text((x0 + (cell_w - w) / 2, y0 + cell_h + pad // 2), text, fill=(0, 0, 0), font=font)
    return grid


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def draw_boxes(
    image: Image.Image,
    boxes: Sequence[tuple[float, float, float, float]],
    labels: Sequence[str],
    width: int = 2,
) -> Image.Image:
    """A copy of `image` with each normalised box `[x_min, y_min, x_max, y_max]` outlined and labelled."""
    if len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    colours = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x0, y0, x1, y1 = box
        rect = [x0 * (out.width - 1), y0 * (out.height - 1), x1 * (out.width - 1), y1 * (out.height - 1)]
        colour = colours[i % len(colours)]
        draw.rectangle(rect, outline=colour, width=width)
        draw.text((rect[0] + width + 1, rect[1] + width), label, fill=colour, font=font)
    return out
