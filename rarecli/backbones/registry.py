"""The embedded backbones: names, what they are, and where their built copy lives.

A recipe is built once into `<rare cache>/backbones/<name>-r<version>` in the diffusers layout;
from then on it is loaded by `from_pretrained(folder)` like any local model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.backbones import builds, tiny, tiny_detection
from rarecli.backbones.tiny import RECIPE_VERSION
from rarecli.backbones.twins import PREFIX, TWINS, TwinSpec, save_twin
from rarecli.errors import RareError
from rarecli.log import info, warn
from rarecli.paths import cache_dir, toy_shapes_dir, toy_world_dir
from rarecli.runtime.quiet import quiet_libraries


@dataclass(frozen=True)
class Embedded:
    name: str
    kind: str  # "pipeline", "clip", "detector" or "segmenter"
    pipeline_class: str
    description: str
    build: Callable[[], Any] | None = None
    # Backbones that ship prebuilt weights inside the package instead of a recipe.
    packaged: Path | None = None
    # The embedded CLIP that goes with a pipeline (SeedSelect's `--clip-model auto`): a random-weight
    # backbone is only meaningful with a CLIP from the same world, and it keeps the command offline.
    clip: str | None = None
    # An architecture twin of a real model (random weights at its real size): built from committed configs.
    twin: TwinSpec | None = None
    # Its native image side, where its denoiser's config does not give one (tiny-flux).
    native_size: int | None = None

    @property
    def folder(self) -> Path:
        if self.packaged is not None:
            return self.packaged
        if self.twin is not None:
            return cache_dir() / "backbones" / f"twin-{self.twin.name}-r{TWIN_VERSION}"
        return cache_dir() / "backbones" / f"{self.name}-r{RECIPE_VERSION}"

    @property
    def revision(self) -> str:
        """What output metadata records: the recipe version, or for packaged weights the first 12 hex
        digits of the SHA-256 of the manifest beside them (which lists every file's SHA-256)."""
        if self.twin is not None:
            return f"twin-r{TWIN_VERSION}"
        if self.packaged is None:
            return f"r{RECIPE_VERSION}"

        manifest = self.packaged.parent / "manifest.json"
        if not manifest.is_file():
            return "unversioned"
        return "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()[:12]

    @property
    def required_file(self) -> str:
        return "model_index.json" if self.kind == "pipeline" else "config.json"

    @property
    def problem(self) -> str | None:
        """What is wrong with the built copy (None: built and complete); see `builds`."""
        if self.packaged is not None:
            return None if (self.folder / self.required_file).is_file() else "its packaged weights are missing"
        return builds.problem(self.folder, self.required_file)

    @property
    def built(self) -> bool:
        return self.problem is None


# Bump when the twin builder changes what it saves (the configs themselves are the copied models').
TWIN_VERSION = 1


def _recipe(name: str, module: Any = tiny) -> Callable[[], Any]:
    def build() -> Any:

        return getattr(module, f"build_{name.replace('-', '_')}")()

    return build


EMBEDDED: dict[str, Embedded] = {
    e.name: e
    for e in (
        Embedded(
            "tiny-sd",
            "pipeline",
            "StableDiffusionPipeline",
            "random-weight SD2.1-shaped pipeline, 64x64, DDIM (CPU, seconds)",
            _recipe("tiny-sd"),
            clip="tiny-clip",
        ),
        Embedded(
            "tiny-sdxl",
            "pipeline",
            "StableDiffusionXLPipeline",
            "random-weight SDXL-shaped pipeline, two text encoders, 64x64",
            _recipe("tiny-sdxl"),
        ),
        Embedded(
            "tiny-sd3",
            "pipeline",
            "StableDiffusion3Pipeline",
            "random-weight SD3-shaped pipeline (MMDiT, CLIP x2 + T5), 64x64",
            _recipe("tiny-sd3"),
        ),
        Embedded(
            "tiny-flux",
            "pipeline",
            "FluxPipeline",
            "random-weight FLUX.1-schnell-shaped pipeline (MMDiT + single blocks, CLIP + T5), 64x64",
            _recipe("tiny-flux"),
            native_size=64,
        ),
        Embedded(
            "tiny-clip",
            "clip",
            "CLIPModel",
            "random-weight CLIP image/text model for losses and the offline judge",
            _recipe("tiny-clip"),
        ),
        Embedded(
            "tiny-grounding-dino",
            "detector",
            "GroundingDinoForObjectDetection",
            "random-weight GroundingDINO-shaped text-prompted detector, for R2F+ --masks detector",
            _recipe("tiny-grounding-dino", tiny_detection),
        ),
        Embedded(
            "tiny-sam",
            "segmenter",
            "SamModel",
            "random-weight SAM-shaped box-prompted segmenter, for R2F+ --masks detector",
            _recipe("tiny-sam", tiny_detection),
        ),
        Embedded(
            "toy-digits",
            "pipeline",
            "StableDiffusionPipeline",
            "trained toy world: 8x8 handwritten digits, long-tailed (rare: 5-9), DDIM (make toy-world)",
            packaged=toy_world_dir() / "toy-digits",
            clip="toy-clip",
        ),
        Embedded(
            "toy-clip",
            "clip",
            "CLIPModel",
            "trained toy CLIP for toy-digits, balanced digits; preprocessing in rare_clip.json",
            packaged=toy_world_dir() / "toy-clip",
        ),
        Embedded(
            "toy-shapes",
            "pipeline",
            "StableDiffusion3Pipeline",
            "trained toy world: 32x32 coloured shapes, rare colour-shape pairs, SD3-shaped (make toy-shapes)",
            packaged=toy_shapes_dir() / "toy-shapes",
            clip="toy-shapes-clip",
        ),
        Embedded(
            "toy-shapes-clip",
            "clip",
            "CLIPModel",
            "trained toy CLIP for toy-shapes, balanced colours and shapes; preprocessing in rare_clip.json",
            packaged=toy_shapes_dir() / "toy-shapes-clip",
        ),
    )
}
EMBEDDED.update(
    {
        PREFIX + t.name: Embedded(PREFIX + t.name, t.kind, t.model_class, t.description, twin=t)
        for t in TWINS.values()
    }
)


def ensure_built(entry: Embedded) -> Path:
    """Build the backbone into its cache folder if it is not there, or is damaged; return the folder.

    Built in a temporary sibling folder named after this process, given a completion marker that lists
    every file and its size, and renamed into place: a crash, a full disk or a second process building
    at the same time never leaves a half-written model under the final name, and a copy damaged later
    is found (and built again) at the next use. Temporary folders of builds whose process died are removed.
    """
    folder = entry.folder
    if entry.packaged is not None or (entry.build is None and entry.twin is None):
        return folder
    damaged = entry.problem
    if damaged is None:
        return folder
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        removed = builds.clean_stale_temps(parent)
    except OSError as exc:
        raise RareError(
            f"the rare cache folder {parent} cannot be used: {exc.strerror or exc}",
            hint="point RARE_CACHE_DIR at a writable folder",
        ) from None
    for path in removed:
        info(f"removed {path.name}, the temporary folder of a build whose process is gone")
    if folder.exists():
        warn(f"{folder} is damaged ({damaged}); building {entry.name} again")
        builds.discard(folder)
    if entry.twin is not None:
        _check_disk(entry.twin.disk_bytes, entry.name, parent)
        info(
            f"Building {entry.name} (random weights, {entry.twin.parameters / 1e9:.2f} B parameters, "
            f"{entry.twin.disk_bytes / 1e9:.1f} GB on disk) into {folder} (once)"
        )
    else:
        _check_disk(TINY_BUILD_BYTES, entry.name, parent)
        info(f"Building embedded backbone {entry.name} into {folder} (once)")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=builds.temp_prefix(entry.name), dir=parent))
    except OSError as exc:
        raise RareError(
            f"the rare cache folder {parent} cannot be written: {exc.strerror or exc}",
            hint="point RARE_CACHE_DIR at a writable folder",
        ) from None
    try:
        with quiet_libraries():
            if entry.twin is not None:
                save_twin(entry.twin, tmp, progress=lambda line: info(f"  {entry.name} {line}"))
            else:
                entry.build().save_pretrained(tmp)
        builds.write_marker(tmp, {"backbone": entry.name, "revision": entry.revision})
        try:
            os.rename(tmp, folder)
        except OSError:
            if not entry.built:  # not a lost race with another process: a real failure
                raise
    except Exception as exc:
        if builds.no_space(exc):
            raise RareError(
                f"the disk filled up while building {entry.name} into {parent}; nothing was kept",
                hint="free some space, or point RARE_CACHE_DIR at a larger disk",
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# A tiny backbone's build takes a few tens of MB; ask for this much free before starting.
TINY_BUILD_BYTES = 200 * 2**20


def _check_disk(needed: int, name: str, parent: Path) -> None:
    free = shutil.disk_usage(parent).free
    if needed * 1.05 > free:
        raise RareError(
            f"{name} takes {needed / 1e9:.1f} GB on disk; {parent} has {free / 1e9:.1f} GB free",
            hint="free some space, or point RARE_CACHE_DIR at a larger disk",
        )
