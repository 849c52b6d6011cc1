"""What `rare env` reports: enough to reproduce a bug report. Never includes secrets."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

from huggingface_hub import constants

from rarecli import __version__
from rarecli.paths import cache_dir, config_file

_PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "huggingface-hub",
    "safetensors",
    "openai",
    "llama-cpp-python",
    "open-clip-torch",
    "torchvision",
    "typer",
    "rich",
)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "rare": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    out.update({name: _version(name) for name in _PACKAGES})
    out["cuda available"] = torch.cuda.is_available()
    out["torch cuda"] = torch.version.cuda or "none (CPU build)"
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out[f"cuda:{i}"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    mps = getattr(torch.backends, "mps", None)
    out["mps available"] = bool(mps is not None and mps.is_available())

    out["HF cache"] = constants.HF_HUB_CACHE
    out["HF offline"] = constants.HF_HUB_OFFLINE
    out["HF token set"] = bool(os.environ.get("HF_TOKEN"))  # presence only, never the value
    out["OPENAI_API_KEY set"] = bool(os.environ.get("OPENAI_API_KEY"))
    out["rare cache"] = str(cache_dir())
    cfg = config_file()
    out["rare config"] = f"{cfg}{'' if cfg.is_file() else ' (absent)'}"
    return out
