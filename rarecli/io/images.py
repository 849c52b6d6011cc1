"""PNG files that carry their settings, and image readers that fail clearly.

Every PNG rare writes holds two text chunks:
- `parameters`: A1111-style text (prompt, then `Steps: .., Sampler: .., CFG scale: .., Seed: ..`), which
  other tools already display;
- `rare`: JSON with the command, model id and revision, seed, method, hyper-parameters and version.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from rarecli import __version__
from rarecli.errors import InputError
from rarecli.io.atomic import write_new
from rarecli.io.inputs import require_regular_file
from rarecli.io.naming import write_numbered

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# The most pixels rare decodes from one image (an 8192 x 8192 photo): a larger one is refused before it
# is decoded, since decoding alone would cost gigabytes (Pillow's own limit, 179 MP, is an error).
MAX_PIXELS = 8192 * 8192


def a1111_parameters(prompt: str, settings: Mapping[str, Any], negative: str | None = None) -> str:
    """The `parameters` text: prompt line, optional negative line, then `Key: value` pairs."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    pairs = [f"{k}: {v}" for k, v in settings.items() if v is not None]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def png_bytes(image: Image.Image, parameters: str, rare: Mapping[str, Any]) -> bytes:

    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", parameters)
    info.add_itxt("rare", json.dumps({"version": __version__, **rare}, ensure_ascii=False, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(path: Path, image: Image.Image, parameters: str, rare: Mapping[str, Any]) -> Path:
    """Write a PNG with metadata atomically; FileExistsError if `path` exists."""
    data = png_bytes(image, parameters, rare)
    return write_new(path, lambda fh: fh.write(data))


def save_numbered_png(
    folder: Path,
    image: Image.Image,
    *,
    seed: int | str,
    method: str,
    prompt: str,
    parameters: str,
    rare: Mapping[str, Any],
) -> Path:
    """Save under the next free `{index:05d}_{seed}_{method}_{slug}.png` in `folder`."""
    data = png_bytes(image, parameters, rare)
    return write_numbered(folder, seed, method, prompt, ".png", lambda p: write_new(p, lambda fh: fh.write(data)))


def read_metadata(path: Path) -> dict[str, Any]:
    """The `parameters` text and the decoded `rare` JSON of a PNG rare wrote.

    rare writes its text chunks before the image data, where opening the file finds them without
    decoding the pixels (a dataset's manifest reads every image's); text after the data needs the decode."""
    text: dict[str, Any] = {}
    require_regular_file(path, "image")  # Image.open on a FIFO waits for a writer for ever
    try:
        with Image.open(path) as image:
            text = {k: v for k, v in image.info.items() if k in ("parameters", "rare") and isinstance(v, str)}
    except (OSError, SyntaxError, ValueError):
        pass  # open_image below says what is wrong with the file
    if not text:
        image = open_image(path)
        text = getattr(image, "text", {}) or {}
    out: dict[str, Any] = {"parameters": text.get("parameters")}
    if "rare" in text:
        out["rare"] = json.loads(text["rare"])
    return out


def open_image(path: Path, max_side: int | None = None) -> Image.Image:
    """Open and fully decode an image; InputError for a missing, non-image, truncated or oversized file
    (over MAX_PIXELS, found from its header before anything is decoded). With `max_side`, a JPEG larger
    than that is decoded at a reduced scale (its draft mode: 1/2, 1/4 or 1/8, never below `max_side`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"not a file: {path}")
    require_regular_file(path, "image")
    try:
        image = Image.open(path)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(f"{width}x{height} pixels is more than rare decodes ({MAX_PIXELS // 2**20} MP)")
        if max_side is not None and image.format == "JPEG" and min(width, height) > 2 * max_side:
            scale = min(width, height) / max_side
            image.draft("RGB", (int(width / scale), int(height / scale)))
        image.load()  # decoding everything now is what detects a truncated file
    except UnidentifiedImageError as exc:
        raise InputError(f"not an image file: {path}") from exc
    except Image.DecompressionBombError as exc:  # Pillow refuses it before rare could measure it
        raise InputError(f"too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or truncated image: {path} ({exc})") from exc
    return image


def read_rgb(path: Path, max_side: int | None = None) -> Image.Image:
    """An image as 8-bit RGB: palette, grey, 16-bit and alpha images are converted (alpha over white)."""

    image = open_image(path, max_side)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit grey: scale to 8 bits rather than clip.

        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr / top * 255.0).round().astype("uint8")).convert("RGB")
    return image.convert("RGB")


def read_image_folder(
    folder: Path, max_side: int | None = None
) -> tuple[list[tuple[Path, Image.Image]], list[tuple[Path, str]]]:
    """Every readable image in `folder` (sorted by name), and (path, reason) for each file skipped.

    Hidden files are ignored. The caller decides whether skipped files are warnings or an error.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"reference folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}", hint="--refs takes a folder of images")
    images: list[tuple[Path, Image.Image]] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            images.append((path, read_rgb(path, max_side)))
        except InputError as exc:
            skipped.append((path, exc.message))
    return images, skipped
