"""Seed files: safetensors holding one noise tensor under `seed`, with string metadata.

Loading never unpickles: safetensors cannot execute code, and a pickled `.pt` file is rejected
with a clear error rather than loaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli import __version__
from rarecli.errors import InputError
from rarecli.io.atomic import write_new

if TYPE_CHECKING:
    import torch

FORMAT = "rare-seed"
FORMAT_VERSION = "1"
_TENSOR = "seed"


@dataclass
class SeedFile:
    tensor: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


def seed_bytes(tensor: torch.Tensor, metadata: Mapping[str, Any] | None = None) -> bytes:
    import torch
    from safetensors.torch import save

    if not torch.isfinite(tensor).all():
        raise InputError("refusing to save a seed with NaN or Inf values")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rare_version": __version__,
        "shape": json.dumps(list(tensor.shape)),
    }
    # safetensors metadata is str -> str; structured values are stored as JSON text.
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    return save({_TENSOR: tensor.detach().to("cpu", torch.float32).contiguous()}, metadata=meta)


def save_seed(path: Path, tensor: torch.Tensor, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a seed file atomically; FileExistsError if `path` exists."""
    data = seed_bytes(tensor, metadata)
    return write_new(Path(path), lambda fh: fh.write(data))


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_seed(path: Path) -> SeedFile:
    """Read a seed file; InputError for anything that is not one (pickles included)."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"seed file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        raise InputError(
            f"{path} is a pickled tensor (torch.save); rare never loads pickles",
            hint="convert it once in a trusted session: safetensors.torch.save_file({'seed': t}, ...)",
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            if _TENSOR not in keys:
                raise InputError(f"{path} is a safetensors file but has no `{_TENSOR}` tensor (has: {keys[:5]})")
            tensor = f.get_tensor(_TENSOR)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"not a seed file: {path} ({exc})") from exc
    if meta.get("format") not in (None, FORMAT):
        raise InputError(f"{path}: unknown seed format {meta.get('format')!r}")
    if not tensor.is_floating_point():  # int, bool and complex tensors are not Gaussian noise
        raise InputError(f"{path}: the seed is a {str(tensor.dtype).removeprefix('torch.')} tensor, not floating-point noise")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise InputError(f"{path}: the seed holds NaN or Inf values")
    return SeedFile(tensor, {k: _decode(v) for k, v in meta.items()})
