"""`rare interpolate` and `rare centroid`: seed-space geometry (LERP, SLERP, NAO)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._options import MAX_GUIDANCE, Device, Dtype, Json, Model, Out, Quiet, Revision, bounded
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.errors import InputError
from rarecli.io.inputs import read_stdin

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


_SEED_HELP = (
    "An integer seed (noise drawn with --model's latent shape), a seed file (.safetensors), or - to read "
    "seeds from stdin (whitespace-separated, e.g. the path another `rare` command printed)."
)


def _stdin_seeds(args: list[str], each: int | None) -> list[str]:
    """`args` with each `-` replaced by seeds read from stdin: `each` per `-`, or all of them (None)."""
    if "-" not in args:
        return args
    tokens = read_stdin().split()
    out: list[str] = []
    for arg in args:
        if arg != "-":
            out.append(arg)
            continue
        take = len(tokens) if each is None else each
        if len(tokens) < take or not tokens:
            raise InputError("stdin holds fewer seeds than the - arguments ask for", hint="pipe one seed per -")
        out += tokens[:take]
        tokens = tokens[take:]
    if tokens:
        raise InputError(f"stdin holds {len(tokens)} seed(s) more than the - arguments take")
    return out


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
        callback=bounded(0.0, MAX_GUIDANCE),
        help="Classifier-free guidance for --render (default: the model family's, e.g. 7.5 for SD).",
        rich_help_panel=_RENDER,
    ),
]


def _render_options(prompt: str | None, steps: int, guidance: float | None):
    from rarecli.methods.seedspace import RenderOptions

    return None if prompt is None else RenderOptions(prompt, steps, guidance)


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
) -> Output:
    """Interpolate between two seeds and write the path as seed files (NAO, NeurIPS 2023).

    Seeds are evenly spaced along the path; each file records the method, the source seeds and its position t (0 to 1).

    Without --render no weights are loaded (only --model's configs, for the noise shape of integer seeds).

    Prints the written paths: the seed files in path order, then the strip.
    """
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.methods.seedspace import InterpolateConfig
    from rarecli.methods.seedspace import interpolate as run
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype)
    a, b = _stdin_seeds([a, b], each=1)
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
    result = run(config, manager)
    return Output(result.to_json(), result.paths)


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
) -> Output:
    """Find the centroid of several seeds and write it as a seed file (NAO, NeurIPS 2023).

    The file records the method and the source seeds. Prints the written paths: the seed file, then the strip.
    """
    from rarecli.methods.seedspace import CentroidConfig
    from rarecli.methods.seedspace import centroid as run
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype)
    config = CentroidConfig(
        seeds=_stdin_seeds(list(seeds), each=None if seeds.count("-") == 1 else 1),
        method=method.value,
        n_points=points,
        model=model,
        revision=revision,
        out=out,
        render=_render_options(render, render_steps, guidance),
    )
    result = run(config, manager)
    return Output(result.to_json(), result.paths)


def register(app: typer.Typer) -> None:
    command(
        app, "interpolate", example='rare interpolate 1 2 --method nao --steps 8 --model tiny-sd --render "a frog"'
    )(interpolate)
    command(app, "centroid", example="rare centroid 1 2 3 --method nao --model tiny-sd")(centroid)
