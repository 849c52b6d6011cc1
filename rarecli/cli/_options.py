"""Option types shared by every command, so that --model/--device/... read the same everywhere.

Each is an `Annotated` type: a command declares `device: Device = "auto"`.
Environment variables (RARE_*) and the config file fill in what the command line leaves out.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_DTYPES = {"auto", "fp32", "fp16", "bf16", "float32", "float16", "half", "bfloat16"}


def _device(value: str) -> str:
    # Only the spelling is checked here (a usage error); whether this machine has it is checked when it runs.
    if not _DEVICE.fullmatch(value.strip().lower()):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


def _dtype(value: str) -> str:
    if value.strip().lower() not in _DTYPES:
        raise typer.BadParameter(f"{value!r} is not one of auto, fp32, fp16, bf16")
    return value


def bounded(low: float, high: float, *, low_open: bool = False):
    """A callback for a float option: finite, within [low, high] (`low_open`: above low). click's own
    ranges let nan through (every comparison with nan is false) and have no upper bound by default."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            left = "(" if low_open else "["
            raise typer.BadParameter(f"{value} is not in {left}{low:g}, {high:g}]")
        return value

    return check


# Classifier-free guidance scales in use are 1-30; far beyond, every prediction is extrapolated into
# overflow (a scale of 1e300 gave NaN losses and all-black images).
MAX_GUIDANCE = 100.0

_RUNTIME = "Runtime"
_OUTPUT = "Output"

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="RARE_MODEL",
        help="Hugging Face model id, local folder in the diffusers layout, or an embedded backbone (`rare models`).",
        rich_help_panel=_RUNTIME,
    ),
]
Revision = Annotated[
    str | None,
    typer.Option("--revision", help="Hub revision (branch, tag or commit) of --model.", rich_help_panel=_RUNTIME),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        envvar="RARE_DEVICE",
        callback=_device,
        help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps.",
        rich_help_panel=_RUNTIME,
    ),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        envvar="RARE_DTYPE",
        callback=_dtype,
        help="auto (on CUDA, per model family: bf16 where the GPU has it for SD, SDXL and FLUX, fp16 for SD3; "
        "fp32 elsewhere), fp32, fp16 or bf16. Under fp16 the SD/SDXL VAE and FLUX's text encoders run in fp32.",
        rich_help_panel=_RUNTIME,
    ),
]
Offload = Annotated[
    bool,
    typer.Option(
        "--offload",
        envvar="RARE_OFFLOAD",
        help="Keep weights on the CPU, moving each model to the GPU only while it runs (less memory, slower).",
        rich_help_panel=_RUNTIME,
    ),
]
AttentionSlicing = Annotated[
    bool,
    typer.Option(
        "--attention-slicing",
        envvar="RARE_ATTENTION_SLICING",
        help="Compute attention in slices (less memory, slower).",
        rich_help_panel=_RUNTIME,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        "-s",
        min=0,
        # torch seeds its generators with 64-bit numbers; seeds seed, seed+1, ... must all fit.
        max=2**63 - 1,
        envvar="RARE_SEED",
        help="Random seed. Noise is drawn on the CPU, so a seed gives the same image on every device.",
    ),
]
Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        envvar="RARE_OUT",
        file_okay=False,
        help="Output folder (created if missing). Files in it are never overwritten.",
        rich_help_panel=_OUTPUT,
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON document (JSON lines for batches) instead of paths.", rich_help_panel=_OUTPUT
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        envvar="RARE_QUIET",
        help="No progress bars or logs on stderr (errors and warnings still).",
        rich_help_panel=_OUTPUT,
    ),
]


T5 = Annotated[
    bool | None,
    typer.Option(
        "--t5/--no-t5",
        help="SD3: load the T5-XXL text encoder (--t5) or leave it out (--no-t5: 4.7 B fewer parameters, about "
        "9.5 GB less in fp16; the pipeline feeds zeros in its place, as diffusers documents). Default: as the "
        "model is saved. Recorded in each image's metadata.",
    ),
]


Height = Annotated[
    int | None,
    typer.Option("--height", min=8, help="Image height in pixels, a multiple of the VAE's factor (default: the model's)."),
]
Width = Annotated[
    int | None,
    typer.Option("--width", min=8, help="Image width in pixels, a multiple of the VAE's factor (default: the model's)."),
]


class Masks(StrEnum):
    """R2F+: where each object's mask comes from (`rare r2f generate`, `rare bench rarebench`)."""

    boxes = "boxes"
    detector = "detector"
