"""rare: make pre-trained text-to-image diffusion models draw rare concepts.

The Python API (`rarecli.api`, documented in docs/python.md) is reached from here without importing it
until it is used, so `import rarecli` and `rare --help` stay instant:

    import rarecli
    images = rarecli.generate("a hairy frog", model="tiny-sd")
    plan = rarecli.r2f.plan("A hairy frog", backend="llama", llm_model="smollm2")
"""

import importlib

__version__ = "0.1.0"

_API = {"generate": "rarecli.api", "seedselect": "rarecli.api", "available_methods": "rarecli.api", "Images": "rarecli.api",
        "r2f": None}  # fmt: skip


def __getattr__(name: str) -> object:  # not typing.Any: importing typing would double `import rarecli`
    if name not in _API:
        raise AttributeError(f"module 'rarecli' has no attribute {name!r}")
    if name == "r2f":
        return importlib.import_module("rarecli.api.r2f")
    return getattr(importlib.import_module("rarecli.api"), name)


def __dir__() -> list[str]:
    return [*globals(), *_API]
