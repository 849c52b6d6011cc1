"""Architecture twins: the public configs of the models users run, with seeded random weights.

Shape, dtype and memory bugs live at real sizes (512² SD2.1 with a ViT-H CLIP, SD3-medium at 1024²),
which the tiny backbones never reach, and no weights can be downloaded here. A twin is built by our
code from a config committed as data (`twin_configs/<name>.json`, which names the Hub repository and
revision it copies and the parameter count of each component), saved in the diffusers/transformers
layout, and from then on loaded through the same `from_pretrained(folder)` path as the real model.

Weights are random: a twin's images are noise, and every output made with one says so in its metadata.
They are saved in fp16 to halve the disk cost; the loader casts them to the run's dtype.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rarecli.backbones.tokenizers import clip_tokenizer, t5_tokenizer
from rarecli.errors import RareError
from rarecli.runtime.device import available_system_memory

CONFIG_DIR = Path(__file__).with_name("twin_configs")
PREFIX = "twin:"
SAVED_BYTES_PER_PARAMETER = 2  # fp16 on disk
_SEED = 20240101


@dataclass(frozen=True)
class TwinSpec:
    """One twin: the committed config file, and which optional components (T5) it includes."""

    file: str  # <directory>/<file>.json
    name: str  # what --model / --clip-model take, without the prefix
    with_optional: frozenset[str] = frozenset()
    directory: Path = CONFIG_DIR

    @cached_property
    def data(self) -> dict[str, Any]:
        return json.loads((self.directory / f"{self.file}.json").read_text(encoding="utf-8"))

    @property
    def kind(self) -> str:
        return "pipeline" if "pipeline_class" in self.data else "clip"

    @property
    def model_class(self) -> str:
        return self.data.get("pipeline_class") or self.data["model_class"]

    @property
    def copies(self) -> str:
        """`repo@revision` of the model this twin copies the architecture of."""
        c = self.data["copies"]
        return f"{c['repo']}@{c['revision']}"

    def components(self) -> dict[str, dict[str, Any] | None]:
        """Component name -> its spec, or None for a component the pipeline is saved without."""
        out: dict[str, dict[str, Any] | None] = {}
        for name, spec in self.data["components"].items():
            if spec is not None and spec.get("optional") and spec["optional"] not in self.with_optional:
                spec = None
            out[name] = spec
        return out

    def expected_parameters(self) -> dict[str, int]:
        return {n: s["parameters"] for n, s in self.components().items() if s is not None and "parameters" in s}

    @property
    def parameters(self) -> int:
        return sum(self.expected_parameters().values())

    @property
    def disk_bytes(self) -> int:
        return self.parameters * SAVED_BYTES_PER_PARAMETER

    @property
    def description(self) -> str:
        extra = f" (with {', '.join(sorted(self.with_optional))})" if self.with_optional else ""
        return f"random-weight twin of {self.data['copies']['repo']}{extra}: {self.data['description']}"


TWINS: dict[str, TwinSpec] = {
    t.name: t
    for t in (
        TwinSpec("sd21-base", "sd21-base"),
        TwinSpec("sdxl-base", "sdxl-base"),
        TwinSpec("sd3-medium", "sd3-medium"),
        TwinSpec("sd3-medium", "sd3-medium-t5", frozenset({"t5"})),
        TwinSpec("flux-schnell", "flux-schnell"),
        TwinSpec("vit-h-14", "vit-h-14"),
    )
}


def _module_class(spec: dict[str, Any]) -> type:
    return getattr(importlib.import_module(spec["library"]), spec["class"])


def build_module(spec: dict[str, Any]) -> Any:
    """One diffusers/transformers model (or scheduler) from its committed config, default-initialised
    on the current default device and dtype."""
    cls = _module_class(spec)
    if spec["library"] == "transformers":
        import transformers

        config_cls = getattr(transformers, spec["config_class"])
        return cls(config_cls(**spec["config"]))
    if hasattr(cls, "from_config"):
        return cls.from_config(spec["config"])
    return cls(**spec["config"])


def _tokenizer(spec: dict[str, Any]) -> Any:
    if spec["tokenizer"] == "t5":
        return t5_tokenizer()
    tokenizer = clip_tokenizer()
    if "pad_token" in spec:  # SD2.1's and bigG's tokenizers pad with "!" rather than the end token
        tokenizer.pad_token = spec["pad_token"]
    return tokenizer


def count_parameters(twin: TwinSpec) -> dict[str, int]:
    """Each weight component's parameter count, from modules built on the meta device: no memory, no
    initialisation, so the committed configs can be checked in a second."""
    import torch

    counts = {}
    for name, spec in twin.components().items():
        if spec is None or "tokenizer" in spec or spec["class"].endswith("Scheduler"):
            continue
        with torch.device("meta"):
            module = build_module(spec)
        counts[name] = sum(p.numel() for p in module.parameters())
    return counts


@contextmanager
def _default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def save_twin(twin: TwinSpec, folder: Path, progress: Callable[[str], None] = lambda _: None) -> None:
    """Build the twin one component at a time (initialised directly in fp16, so the largest one, T5-XXL
    at 9.5 GB, fits beside nothing else) and save it in the layout `from_pretrained` reads.

    On a machine with a CUDA GPU the weights are initialised there: drawing 12 B random numbers is
    minutes on a CPU and a second on a GPU, and saving then dominates (FLUX's transformer). The seed is
    the same, the numbers are not (each device has its own generator): `rare_twin.json` says where a
    twin was initialised. Random weights either way."""
    import torch

    largest = max(twin.expected_parameters().values(), default=0) * SAVED_BYTES_PER_PARAMETER
    init_device = "cuda" if torch.cuda.is_available() else "cpu"
    available = (
        int(torch.cuda.mem_get_info()[0]) if init_device == "cuda" else available_system_memory()
    )
    if available is not None and largest * 1.2 > available:
        raise RareError(
            f"twin:{twin.name} needs about {largest / 1e9:.1f} GB of free memory to build its largest "
            f"component; {available / 1e9:.1f} GB is available",
            hint="build it on a machine with more memory, or choose a smaller twin (`rare models`)",
        )
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": twin.model_class}
    for i, (name, spec) in enumerate(twin.components().items()):
        if spec is None:
            index[name] = [None, None]
            continue
        if "tokenizer" in spec:
            tokenizer = _tokenizer(spec)
            tokenizer.save_pretrained(folder / name)
            index[name] = ["transformers", type(tokenizer).__name__]
            continue
        index[name] = [spec["library"], spec["class"]]
        if spec["class"].endswith("Scheduler"):
            build_module(spec).save_pretrained(folder / name)
            continue
        progress(f"{name}: {spec['class']}, {spec['parameters'] / 1e6:,.0f}M parameters")
        torch.manual_seed(_SEED + i)
        with _default_dtype(torch.float16), torch.device(init_device):
            module = build_module(spec)
        module.to("cpu").save_pretrained(folder / name, safe_serialization=True)
        del module
        if init_device == "cuda":
            torch.cuda.empty_cache()
    if twin.kind == "clip":
        _flatten_clip(folder)
    else:
        import diffusers

        index["_diffusers_version"] = diffusers.__version__
        index.update(twin.data.get("pipeline_config", {}))
        (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (folder / "rare_twin.json").write_text(
        json.dumps(
            {"twin": twin.name, "copies": twin.data["copies"], "random_weights": True, "initialised_on": init_device},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


def _flatten_clip(folder: Path) -> None:
    """A CLIP twin is one transformers model: its files live at the top of the folder, as on the Hub."""
    for sub in ("model", "tokenizer"):
        for path in (folder / sub).iterdir():
            os.replace(path, folder / path.name)
        (folder / sub).rmdir()


def twin_of(folder: str | Path) -> dict[str, Any] | None:
    """The twin record of a model folder (None for real weights): what metadata marks."""
    path = Path(folder) / "rare_twin.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
