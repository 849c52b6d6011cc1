"""`rare interpolate` and `rare centroid`: seed-space geometry (LERP, SLERP, NAO)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._options import Device, Dtype, Json, Model, Quiet, Revision


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


def interpolate(
    a: Annotated[str, typer.Argument(help=_SEED_HELP)],
    b: Annotated[str, typer.Argument(help=_SEED_HELP)],
    method: Annotated[
        PathMethod,
        typer.Option(
            "--method",
            help="lerp, slerp, their norm-corrected variants, or "
            "nao (the likelihood-maximising path under the chi prior).",
        ),
    ] = PathMethod.nao,
    steps: Annotated[int, typer.Option("--steps", help="Seeds to write, endpoints included (>= 2).")] = 8,
    render: Annotated[
        str | None, typer.Option("--render", help="Also render every seed with this prompt and write one PNG strip.")
    ] = None,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    out: Annotated[Path, typer.Option("--out", "-o", envvar="RARE_OUT", file_okay=False, help="Output folder.")] = Path(
        "out/interpolate"
    ),
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Interpolate between two seeds and write the path as seed files (NAO, NeurIPS 2023)."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("interpolate", "issue 4")


def centroid(
    seeds: Annotated[list[str], typer.Argument(help=_SEED_HELP + " Two or more.")],
    method: Annotated[
        CentroidMethod,
        typer.Option(
            "--method",
            help="euclidean mean, rescaled mean, spherical mean, or nao (minimises the NAO path cost to every seed).",
        ),
    ] = CentroidMethod.nao,
    render: Annotated[str | None, typer.Option("--render", help="Also render the centroid with this prompt.")] = None,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    out: Annotated[Path, typer.Option("--out", "-o", envvar="RARE_OUT", file_okay=False, help="Output folder.")] = Path(
        "out/centroid"
    ),
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find the centroid of several seeds and write it as a seed file (NAO, NeurIPS 2023)."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("centroid", "issue 4")
