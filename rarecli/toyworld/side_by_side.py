"""One picture comparing methods: a row per output folder (e.g. plain sampling, SeedSelect,
NAO-SeedSelect), its PNGs left to right in name order, each captioned with the folder's name.

    python -m rarecli.toyworld side-by-side OUT.png DIR [DIR ...] [--max-per-row N] [--toy-judge]

`--toy-judge` captions each image with the digit the toy world's judge sees in it (toy-digits outputs).
Tiny images (the toy world's 8x8 digits) are enlarged by an integer factor with nearest-neighbour
resampling, so pixels stay pixels. Prints the path of the picture on stdout; refuses to overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image as PILImage

from rarecli.errors import InputError
from rarecli.io.grid import make_grid
from rarecli.methods.output import Provenance, write_generated

if TYPE_CHECKING:
    from PIL import Image

MIN_SIDE = 128  # wide enough for a caption like "nao-seedselect: seven"


def enlarge(image: Image.Image, min_side: int = MIN_SIDE) -> Image.Image:
    """`image` scaled by the smallest integer factor that makes its short side >= min_side."""

    factor = -(-min_side // min(image.size))
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor), PILImage.Resampling.NEAREST)


def side_by_side(
    folders: Sequence[Path],
    max_per_row: int | None = None,
    caption: Callable[[str, Image.Image], str] | None = None,
) -> Image.Image:
    """The comparison picture; InputError when a folder holds no PNG. `caption(folder name, image)`
    replaces the default caption (the folder's name)."""

    rows: list[list[tuple[str, Image.Image]]] = []
    for folder in folders:
        files = sorted(Path(folder).glob("*.png"))
        if not files:
            raise InputError(f"no PNG in {folder}", hint="pass folders written by rare seedselect --out")
        files = files[:max_per_row] if max_per_row else files
        rows.append([(Path(folder).name, PILImage.open(f).convert("RGB")) for f in files])
    cols = max(len(r) for r in rows)
    blank = PILImage.new("RGB", (1, 1), (255, 255, 255))
    images, labels = [], []
    for row in rows:
        for name, image in row + [("", blank)] * (cols - len(row)):
            images.append(enlarge(image) if name else blank)
            labels.append(caption(name, image) if name and caption else name)
    return make_grid(images, cols=cols, labels=labels)


def compare(
    out: Path,
    folders: Sequence[Path],
    max_per_row: int | None = None,
    caption: Callable[[str, Image.Image], str] | None = None,
) -> Path:
    """Write the comparison picture to `out` (FileExistsError if it exists)."""
    picture = side_by_side(folders, max_per_row, caption)
    provenance = Provenance("side-by-side", extra={"rows": [str(f) for f in folders]})
    return write_generated(picture, provenance, path=out).image
