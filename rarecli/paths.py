"""Where rare reads its config and keeps what it builds.

Model weights from the Hub stay in the Hugging Face cache (HF_HOME / HF_HUB_CACHE): rare keeps no
private copy. Only things rare builds itself (the embedded tiny backbones, LLM response caches,
downloaded benchmark prompt files) live under the rare cache dir.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _platform_dir(kind: str) -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / ("Caches" if kind == "cache" else "Application Support")
    elif os.name == "nt":
        env = "LOCALAPPDATA" if kind == "cache" else "APPDATA"
        base = Path(os.environ.get(env, home / "AppData" / "Local"))
    else:
        xdg = "XDG_CACHE_HOME" if kind == "cache" else "XDG_CONFIG_HOME"
        base = Path(os.environ.get(xdg) or home / (".cache" if kind == "cache" else ".config"))
    return base / "rare"


def cache_dir() -> Path:
    """RARE_CACHE_DIR, else the platform's user cache dir (e.g. ~/.cache/rare)."""
    env = os.environ.get("RARE_CACHE_DIR")
    return Path(env).expanduser() if env else _platform_dir("cache")


def config_file() -> Path:
    """RARE_CONFIG, else config.yaml in the platform's user config dir (e.g. ~/.config/rare)."""
    env = os.environ.get("RARE_CONFIG")
    return Path(env).expanduser() if env else _platform_dir("config") / "config.yaml"


def toy_world_dir() -> Path:
    """The trained toy world shipped in the package (rarecli/toyworld/weights): the embedded backbones
    toy-digits and toy-clip load from here, and the toy evaluation reads its judge and references."""
    return Path(__file__).resolve().parent / "toyworld" / "weights"


def toy_shapes_dir() -> Path:
    """The trained shapes world shipped in the package (rarecli/toyworld/shapes-weights): toy-shapes,
    toy-shapes-clip and its judge (`make toy-shapes`)."""
    return Path(__file__).resolve().parent / "toyworld" / "shapes-weights"


def project_root() -> Path:
    """The source checkout (prompts/, rarebench/ live beside the package)."""
    return Path(__file__).resolve().parent.parent


# The data folders the project is known by, each kept once at the top of the checkout; the wheel build
# copies them into the package as rarecli/_data/<folder>/ (pyproject.toml: force-include).
DATA_FOLDERS = ("prompts", "rarebench")


def data_file(folder: str, name: str) -> Path:
    """`<folder>/<name>` of the installed package (a wheel), else of the source checkout (an editable
    install). Returns the checkout's path when neither exists, so an error can name where it looked."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"{folder!r} is not one of rare's data folders {DATA_FOLDERS}")
    installed = Path(__file__).resolve().parent / "_data" / folder / name
    return installed if installed.is_file() else project_root() / folder / name
