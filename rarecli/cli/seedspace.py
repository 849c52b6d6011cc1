"""`rare interpolate` and `rare centroid`: seed-space geometry (LERP, SLERP, NAO)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._options import Device, Dtype, Json, Model, Out, Quiet, Revision

_NAO = "NAO"
_RENDER = "Rendering"


class PathMethod(StrEnum):
    lerp = "lerp"
    slerp = "slerp"
    nlerp = "lerp-norm"
    nslerp = "slerp-norm"
    nao = "nao"


class CentroidMethod(StrEnum):
    euclidean = "euclidean"
    rescaled = "rescaled"
    spherical = "spherical"
    nao = "nao"


_SEED_HELP = "An integer seed (noise drawn with --model's latent shape) or a seed file (.safetensors)."

Points = Annotated[
    int,
    typer.Option(
        "--points",
        min=3,
        help="Points of the optimised NAO polyline (the paper uses 50); seeds are read off it by arc length.",
        rich_help_panel=_NAO,
    ),
]
RenderSteps = Annotated[
    int, typer.Option("--render-steps", min=1, help="Denoising steps per rendered image.", rich_help_panel=_RENDER)
]
Guidance = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        min=0.0,
        help="Classifier-free guidance for --render (default: the model family's, e.g. 7.5 for SD).",
        rich_help_panel=_RENDER,
    ),
]


def _render_options(prompt: str | None, steps: int, guidance: float | None):
    from rarecli.methods.seedspace import RenderOptions

    return None if prompt is None else RenderOptions(prompt, steps, guidance)


def _emit(result, json_out: bool) -> None:
    from rarecli.cli._output import emit_json, emit_paths

    if json_out:
        emit_json(result.to_json())
    else:
        emit_paths(result.paths)


def interpolate(
    a: Annotated[str, typer.Argument(help=_SEED_HELP)],
    b: Annotated[str, typer.Argument(help=_SEED_HELP)],
    method: Annotated[
        PathMethod,
        typer.Option(
            "--method",
            help="lerp, slerp, their norm-corrected variants (each point rescaled to the norm interpolated "
            "between the ends), or nao (the likelihood-maximising path under the chi prior).",
        ),
    ] = PathMethod.nao,
    steps: Annotated[int, typer.Option("--steps", min=2, help="Seeds to write, both ends included.")] = 8,
    points: Points = 50,
    render: Annotated[
        str | None,
        typer.Option(
            "--render", help="Also render every seed with this prompt into one PNG strip.", rich_help_panel=_RENDER
        ),
    ] = None,
    render_steps: RenderSteps = 30,
    guidance: Guidance = None,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    out: Out = Path("out/interpolate"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Interpolate between two seeds and write the path as seed files (NAO, NeurIPS 2023).

    Seeds are evenly spaced along the path; each file records the method, the source seeds and its position t (0 to 1).

    Without --render no weights are loaded (only --model's configs, for the noise shape of integer seeds).

    Prints the written paths: the seed files in path order, then the strip.
    """
    from rarecli.log import set_quiet
    from rarecli.methods.seedspace import InterpolateConfig
    from rarecli.methods.seedspace import interpolate as run
    from rarecli.runtime.device import DeviceManager

    set_quiet(quiet or json_out)
    manager = DeviceManager(device, dtype)
    config = InterpolateConfig(
        a=a,
        b=b,
        method=method.value,
        steps=steps,
        n_points=points,
        model=model,
        revision=revision,
        out=out,
        render=_render_options(render, render_steps, guidance),
    )
    _emit(run(config, manager), json_out)


def centroid(
    seeds: Annotated[list[str], typer.Argument(help=_SEED_HELP + " Two or more.")],
    method: Annotated[
        CentroidMethod,
        typer.Option(
            "--method",
            help="euclidean mean; rescaled mean (to the seeds' mean norm); spherical mean (normalised mean of "
            "unit vectors, rescaled); or nao (minimises the NAO path cost to every seed).",
        ),
    ] = CentroidMethod.nao,
    points: Points = 50,
    render: Annotated[
        str | None,
        typer.Option(
            "--render",
            help="Also render the input seeds and the centroid with this prompt into one PNG strip.",
            rich_help_panel=_RENDER,
        ),
    ] = None,
    render_steps: RenderSteps = 30,
    guidance: Guidance = None,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    out: Out = Path("out/centroid"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the centroid of several seeds and write it as a seed file (NAO, NeurIPS 2023).

    The file records the method and the source seeds. Prints the written paths: the seed file, then the strip.
    """
    from rarecli.log import set_quiet
    from rarecli.methods.seedspace import CentroidConfig
    from rarecli.methods.seedspace import centroid as run
    from rarecli.runtime.device import DeviceManager

    set_quiet(quiet or json_out)
    manager = DeviceManager(device, dtype)
    config = CentroidConfig(
        seeds=list(seeds),
        method=method.value,
        n_points=points,
        model=model,
        revision=revision,
        out=out,
        render=_render_options(render, render_steps, guidance),
    )
    _emit(run(config, manager), json_out)
