"""The shapes world's data: coloured shapes drawn procedurally, a long-tailed joint distribution of
colour and shape, and captions with a hierarchy of nouns.

Why each choice (issue 26: the smallest world in which R2F's claim can hold or fail):

- **Colour x shape.** R2F's claim is about rare *compositions* of concepts a model knows apart ("a hairy
  frog"). Here every colour and every shape is frequent on its own, and some colour-shape pairs are rare
  or absent. Colour is an appearance attribute that a frequent stand-in can carry ("a red shape"); shape
  is layout, which R2F says the early steps fix.
- **A hierarchy of nouns.** Specific nouns (circle, square, triangle, diamond) and umbrella nouns that
  cover several of them (`polygon`: square, triangle, diamond; `shape`: all four). "A red shape" is
  captioned on every red image, whatever its shape, so the stand-in R2F needs is frequent by design;
  "a red triangle" is rare because red triangles are.
- **The joint table** (`JOINT`, images per pair in the generator's training set): each shape has two
  frequent colours (300 images), one medium (40) and one rare (3) or absent (0); the rare and absent
  cells are spread so that every colour and every shape totals 600-700 images. Two rare pairs (yellow
  square, red triangle: 3 images each) and two absent ones (yellow circle, green diamond).
- **32x32 RGB, objects 14-22 px**, jittered in place, size and colour (a little), on a dark background
  with faint noise: large enough for a triangle to differ from a diamond after a 4x VAE, small enough to
  train on two CPU cores. Drawn at 4x and box-downsampled, so edges are anti-aliased.
- **Two-object images** (for R2F+): one object in each half (left, right), 12-14 px, captioned "a red
  circle and a blue square"; their pairs follow the same joint table.
- Generated on the fly from seeds: the judge, CLIP and VAE see balanced data (every pair equally), as web
  CLIP and SD's autoencoder see broad data; only the generator sees the long tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
# Captions are at most 10 tokens ("a yellow triangle and a green diamond" and the start and end tokens):
# a 16-token CLIP sequence instead of SD3's 77 makes the transformer's joint attention 3x cheaper to train.
TEXT_TOKENS = 16
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle", "diamond")
POLYGONS = ("square", "triangle", "diamond")
RGB = {"red": (220, 45, 40), "green": (40, 190, 70), "blue": (55, 90, 235), "yellow": (235, 210, 40)}

# Images per (shape, colour) in the generator's training set; columns in COLOURS order.
JOINT = {
    "circle": (300, 300, 40, 0),
    "square": (40, 300, 300, 3),
    "triangle": (3, 40, 300, 300),
    "diamond": (300, 0, 40, 300),
}
RARE = (("yellow", "square"), ("red", "triangle"))
ABSENT = (("yellow", "circle"), ("green", "diamond"))
FREQUENT = tuple((c, s) for s in SHAPES for c, n in zip(COLOURS, JOINT[s], strict=True) if n >= 300)


def count(colour: str, shape: str) -> int:
    return JOINT[shape][COLOURS.index(colour)]


def umbrella(shape: str) -> tuple[str, ...]:
    """The nouns above a shape: polygon (if it is one) and shape."""
    return ("polygon", "shape") if shape in POLYGONS else ("shape",)


def specific(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def caption(colour: str, shape: str, rng: np.random.Generator) -> str:
    """One caption of a single-object image: the specific noun 60% of the time, an umbrella noun 30%
    (so 'a red shape' is captioned on every kind of red thing), the shape alone 10%."""
    r = rng.random()
    if r < 0.6:
        return specific(colour, shape)
    if r < 0.9:
        return f"a {colour} {rng.choice(umbrella(shape))}"
    return f"a {shape}"


def pair_caption(left: tuple[str, str], right: tuple[str, str]) -> str:
    return f"{specific(*left)} and {specific(*right)}"


@dataclass(frozen=True)
class ShapesItem:
    """One object to draw: its colour and shape, where (centre, in pixels) and how big (side, pixels)."""

    colour: str
    shape: str
    cx: float
    cy: float
    side: float


def _mask(shape: str, cx: float, cy: float, side: float, scale: int) -> np.ndarray:
    n = SIZE * scale
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / scale
    h = side / 2
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx**2 + dy**2 <= h**2
    if shape == "square":
        s = h * 0.85  # the same area as the circle's, nearly: size alone does not tell them apart
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= h * 1.1
    if shape == "triangle":  # apex up, base down
        top, bottom = cy - h, cy + h * 0.8
        inside_y = (y >= top) & (y <= bottom)
        half_width = (y - top) / (bottom - top) * h * 1.1
        return inside_y & (np.abs(dx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def draw(items: list[ShapesItem], rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """An RGB image [SIZE, SIZE, 3] in [0, 1] with the items drawn (later ones on top)."""
    n = SIZE * scale
    canvas = np.zeros((n, n, 3), dtype=np.float32) + rng.uniform(0.02, 0.1, size=3).astype(np.float32)
    for item in items:
        base = np.array(RGB[item.colour], dtype=np.float32) / 255.0
        tint = np.clip(base + rng.normal(0, 0.04, size=3), 0, 1).astype(np.float32)
        canvas[_mask(item.shape, item.cx, item.cy, item.side, scale)] = tint
    image = canvas.reshape(SIZE, scale, SIZE, scale, 3).mean(axis=(1, 3))
    image = image + rng.normal(0, 0.015, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


def single(colour: str, shape: str, rng: np.random.Generator) -> np.ndarray:
    side = rng.uniform(14, 22)
    c = SIZE / 2
    return draw([ShapesItem(colour, shape, c + rng.uniform(-3, 3), c + rng.uniform(-3, 3), side)], rng)


# The boxes of a two-object image (x0, y0, x1, y1 as fractions of the image), as an R2F+ plan gives them.
LEFT_BOX = (0.03, 0.25, 0.5, 0.75)
RIGHT_BOX = (0.5, 0.25, 0.97, 0.75)


def double(left: tuple[str, str], right: tuple[str, str], rng: np.random.Generator) -> np.ndarray:
    items = []
    for (colour, shape), box in ((left, LEFT_BOX), (right, RIGHT_BOX)):
        cx = (box[0] + box[2]) / 2 * SIZE + rng.uniform(-1, 1)
        cy = (box[1] + box[3]) / 2 * SIZE + rng.uniform(-2, 2)
        items.append(ShapesItem(colour, shape, cx, cy, rng.uniform(12, 14)))
    return draw(items, rng)


def long_tail_pairs() -> list[tuple[str, str]]:
    """The generator's single-object training set, as (colour, shape) per image."""
    return [(c, s) for s in SHAPES for c in COLOURS for _ in range(count(c, s))]


def balanced_pair(rng: np.random.Generator) -> tuple[str, str]:
    return COLOURS[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
