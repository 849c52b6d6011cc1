"""Seeds as users give them: an integer (noise drawn on the CPU) or a seed file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rarecli.errors import InputError
from rarecli.seeds.files import load_seed

if TYPE_CHECKING:
    import torch


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer


def noise_from_seed(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise of `shape` from an integer seed, drawn on the CPU (fp32), so that the
    same seed gives the same tensor on every device."""
    import torch

    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be from 0 to {MAX_SEED} (got {seed})")
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)), dtype=torch.float32)


def parse_seed_arg(arg: str, shape: tuple[int, ...] | None) -> tuple[torch.Tensor, dict]:
    """An integer seed or a seed-file path -> (tensor, provenance for metadata).

    `shape` is needed for integer seeds; a file's own shape is checked against it when given.
    """

    text = arg.strip()
    if text.isdigit():  # also true for "²" and other Unicode digits int() refuses
        if not text.isascii() or int(text) > MAX_SEED:
            raise InputError(f"seed {text!r} is not an integer from 0 to {MAX_SEED} (what torch seeds with)")
        if shape is None:
            raise InputError(f"seed {text}: an integer seed needs a model to take its noise shape from")
        return noise_from_seed(int(text), shape), {"seed": int(text)}
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{arg!r} is neither an integer seed nor an existing seed file")
    loaded = load_seed(path)
    if shape is not None and tuple(loaded.tensor.shape) != tuple(shape):
        raise InputError(
            f"{path}: seed shape {tuple(loaded.tensor.shape)} does not match the model's {tuple(shape)}",
            hint="use seeds made for the same --model and image size",
        )
    return loaded.tensor, {"file": str(path), **{k: v for k, v in loaded.metadata.items() if k == "seed"}}
