"""What `rare interpolate` and `rare centroid` do, as library calls: read the seeds, compute, optionally
render, write seed files (and one PNG strip).

Everything that can be wrong with the input is checked before anything is written, and the images are
rendered (and the strip composed) in memory before the first file appears, so bad input or a failed
render leaves the output folder untouched.
Geometry: NAO, Samuel et al., NeurIPS 2023 (arXiv 2306.08687); see rarecli/seeds/paths.py and
rarecli/seeds/centroid.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.loading import latent_shape
from rarecli.errors import InputError, RareError
from rarecli.io.atomic import check_writable, write_new
from rarecli.io.grid import make_grid
from rarecli.io.naming import slugify, write_numbered
from rarecli.log import info
from rarecli.methods.output import Provenance, settings_text, write_generated
from rarecli.methods.sample import Renderer
from rarecli.runtime.device import DeviceManager
from rarecli.seeds.centroid import CENTROID_METHODS
from rarecli.seeds.centroid import centroid as centroid_of
from rarecli.seeds.files import seed_bytes
from rarecli.seeds.noise import parse_seed_arg
from rarecli.seeds.paths import PATH_METHODS, check_seeds
from rarecli.seeds.paths import interpolate as interpolate_seeds

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class RenderOptions:
    prompt: str
    steps: int = 30
    guidance: float | None = None


@dataclass
class InterpolateConfig:
    a: str
    b: str
    method: str = "nao"
    steps: int = 8
    n_points: int = 50
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    out: Path = Path("out/interpolate")
    render: RenderOptions | None = None


@dataclass
class CentroidConfig:
    seeds: list[str]
    method: str = "nao"
    n_points: int = 50
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    out: Path = Path("out/centroid")
    render: RenderOptions | None = None


@dataclass
class GeometryResult:
    command: str
    method: str
    sources: list[dict[str, Any]]
    seeds: list[Path]
    positions: list[float] | None = None
    grid: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        return [*self.seeds, *([self.grid] if self.grid else [])]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"command": self.command, "method": self.method, "sources": self.sources}
        if self.positions is not None:
            out["seeds"] = [{"path": str(p), "t": t} for p, t in zip(self.seeds, self.positions, strict=True)]
        else:
            out["seeds"] = [{"path": str(p)} for p in self.seeds]
        out["grid"] = str(self.grid) if self.grid else None
        return {**out, **self.extra}


def _read_seeds(
    args: list[str], model: str, revision: str | None, need_model_shape: bool
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Parse every seed argument. Integer seeds take --model's latent shape (read from its configs, no
    weights); seed files are checked against it too when it is known, and against each other always."""

    shape = None
    if need_model_shape or any(a.strip().isdigit() for a in args):
        shape = latent_shape(model, revision=revision)
    parsed = [parse_seed_arg(arg, shape) for arg in args]
    tensors, sources = [t for t, _ in parsed], [s for _, s in parsed]
    check_seeds(tensors, [str(s.get("file", s.get("seed"))) for s in sources])
    return tensors, sources


def _label(sources: list[dict[str, Any]]) -> str:
    """The `{seed}` part of output names: the integer seeds (or file stems) joined by '-'."""

    parts = [str(s["seed"]) if "file" not in s else slugify(Path(s["file"]).stem, 16) for s in sources]
    label = "-".join(parts)
    return label if len(label) <= 32 else f"{len(sources)}seeds"


def _check_prompt(render: RenderOptions | None) -> None:
    if render is not None and not render.prompt.strip():
        raise InputError("the --render prompt is empty")


def _render(renderer: Renderer | None, render: RenderOptions | None, seeds: list[torch.Tensor]):
    if renderer is None or render is None:
        return None
    return renderer.render(render.prompt, seeds, render.steps, render.guidance)


def _write(
    folder: Path,
    label: str,
    method: str,
    kind: str,
    seeds: list[torch.Tensor],
    metas: list[dict[str, Any]],
    render: RenderOptions | None,
    images: list[Image.Image] | None,
    captions: list[str],
    grid_meta: dict[str, Any],
    renderer: Renderer | None,
) -> tuple[list[Path], Path | None]:

    slug = render.prompt if render is not None else kind
    blobs = [seed_bytes(tensor, meta) for tensor, meta in zip(seeds, metas, strict=True)]
    grid = None
    if render is not None and images is not None and renderer is not None:
        grid = make_grid(images, labels=captions)
    paths: list[Path] = []
    try:
        for data in blobs:
            paths.append(
                write_numbered(folder, label, method, slug, ".safetensors", lambda p, data=data: _write_bytes(p, data))
            )
        grid_path = _write_grid(folder, label, method, render, grid, grid_meta, renderer, paths)
    except RareError as exc:
        exc.written = paths + exc.written  # the seed files written before the failure stay, and are said
        raise
    return paths, grid_path


def _write_grid(
    folder: Path,
    label: str,
    method: str,
    render: RenderOptions | None,
    grid: Image.Image | None,
    grid_meta: dict[str, Any],
    renderer: Renderer | None,
    paths: list[Path],
) -> Path | None:
    grid_path = None
    if grid is not None and render is not None and renderer is not None:
        guidance = renderer.guidance(render.guidance)
        described = {k: v for k, v in grid_meta.items() if k not in ("command", "method", "hyper")}
        provenance = Provenance(
            command=grid_meta["command"],
            method=method,
            prompt=render.prompt,
            seed=label,
            model=renderer.loaded.meta(),
            hyper=grid_meta["hyper"],
            extra={
                **described,
                "seed_files": [str(p) for p in paths],
                "render": {"steps": render.steps, "guidance": guidance},
            },
            settings=settings_text(renderer.sampler, render.steps, guidance, label, renderer.loaded.ref.name),
        )
        grid_path = write_generated(grid, provenance, folder=folder, name_method=f"{method}-strip").image
    return grid_path


def _write_bytes(path: Path, data: bytes) -> Path:
    return write_new(path, lambda fh: fh.write(data))


def interpolate(config: InterpolateConfig, manager: DeviceManager) -> GeometryResult:
    """Seeds along the path from A to B (ends included), written as seed files; optionally rendered."""
    import torch

    if config.method not in PATH_METHODS:
        raise InputError(f"unknown method {config.method!r}", hint="use one of: " + ", ".join(PATH_METHODS))
    if config.steps < 2:
        raise InputError(f"--steps must be at least 2, the two ends (got {config.steps})")
    if config.method == "nao" and config.n_points < 3:
        raise InputError(f"--points must be at least 3 (got {config.n_points})")
    _check_prompt(config.render)
    check_writable(config.out)
    (a, b), sources = _read_seeds([config.a, config.b], config.model, config.revision, config.render is not None)
    renderer = Renderer.load(config.model, config.revision, manager) if config.render is not None else None

    start = time.perf_counter()
    seeds, positions = interpolate_seeds(a, b, config.steps, config.method, n_points=config.n_points)
    info(f"{config.method} path of {config.steps} seeds in {time.perf_counter() - start:.2f} s")
    seeds_list = [s.to(torch.float32) for s in seeds.unbind(0)]
    ts = [round(float(t), 6) for t in positions]
    images = _render(renderer, config.render, seeds_list)

    hyper = {"steps": config.steps, **({"n_points": config.n_points} if config.method == "nao" else {})}
    metas = [
        {
            "command": "interpolate",
            "method": config.method,
            "sources": sources,
            "t": t,
            "position": i,
            "hyper": hyper,
        }
        for i, t in enumerate(ts)
    ]
    label = _label(sources)
    paths, grid = _write(
        config.out,
        label,
        config.method,
        "interpolate",
        seeds_list,
        metas,
        config.render,
        images,
        [f"t={t:.2f}" for t in ts],
        {"command": "interpolate", "method": config.method, "sources": sources, "t": ts, "hyper": hyper},
        renderer,
    )
    return GeometryResult("interpolate", config.method, sources, paths, ts, grid)


def centroid(config: CentroidConfig, manager: DeviceManager) -> GeometryResult:
    """The centroid of two or more seeds, written as a seed file; optionally rendered beside the inputs."""
    import torch

    if config.method not in CENTROID_METHODS:
        raise InputError(f"unknown method {config.method!r}", hint="use one of: " + ", ".join(CENTROID_METHODS))
    if len(config.seeds) < 2:
        raise InputError(f"a centroid needs at least two seeds (got {len(config.seeds)})")
    if config.method == "nao" and config.n_points < 3:
        raise InputError(f"--points must be at least 3 (got {config.n_points})")
    _check_prompt(config.render)
    check_writable(config.out)
    tensors, sources = _read_seeds(config.seeds, config.model, config.revision, config.render is not None)
    renderer = Renderer.load(config.model, config.revision, manager) if config.render is not None else None

    start = time.perf_counter()
    c = centroid_of(tensors, config.method, n_points=config.n_points).to(torch.float32)
    info(f"{config.method} centroid of {len(tensors)} seeds in {time.perf_counter() - start:.2f} s")
    images = _render(renderer, config.render, [*tensors, c])

    hyper = {"n_points": config.n_points} if config.method == "nao" else {}
    meta = {"command": "centroid", "method": config.method, "sources": sources, "hyper": hyper}
    captions = [f"seed {s['seed']}" if "file" not in s else Path(s["file"]).stem for s in sources] + ["centroid"]
    paths, grid = _write(
        config.out,
        _label(sources),
        config.method,
        "centroid",
        [c],
        [meta],
        config.render,
        images,
        captions,
        meta,
        renderer,
    )
    return GeometryResult("centroid", config.method, sources, paths, None, grid)
