"""Output names: `{index:05d}_{seed}_{method}_{slug}.png`, never reusing an existing name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_INDEX = re.compile(r"^(\d{5,})_")


def slugify(text: str, max_len: int = 48) -> str:
    """ASCII, lower-case, words joined by '-', bounded length; 'untitled' when nothing is left."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")
    return text[:max_len].rstrip("-") or "untitled"


def next_index(folder: Path) -> int:
    """One past the highest index used in `folder` (0 for an empty or missing folder)."""
    if not folder.is_dir():
        return 0
    used = [int(m.group(1)) for p in folder.iterdir() if (m := _INDEX.match(p.name))]
    return max(used) + 1 if used else 0


def output_name(index: int, seed: int, method: str, prompt: str, suffix: str = ".png") -> str:
    return f"{index:05d}_{seed}_{slugify(method, 24)}_{slugify(prompt)}{suffix}"


def write_numbered(
    folder: Path,
    seed: int,
    method: str,
    prompt: str,
    suffix: str,
    write: Callable[[Path], T],
    attempts: int = 1000,
) -> T:
    """Call `write(path)` on the next free numbered name; retries when another process took it.

    `write` must raise FileExistsError when the path exists (the io writers do).
    """
    index = next_index(folder)
    for _ in range(attempts):
        try:
            return write(folder / output_name(index, seed, method, prompt, suffix))
        except FileExistsError:
            index += 1
    raise FileExistsError(f"no free output name in {folder} after {attempts} attempts")
