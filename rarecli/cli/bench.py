"""`rare bench`: run RareBench end to end (generate, judge, report) and compare runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._options import Device, Dtype, Json, Model, Quiet, Revision, Seed
from rarecli.cli._run import handled

app = typer.Typer(help="Benchmarks: RareBench (R2F, ICLR 2025).", no_args_is_help=True)


@app.command("rarebench", no_args_is_help=True)
@handled
def rarebench(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", file_okay=False, help="Run folder: one result file per work item; re-running resumes."
        ),
    ],
    method: Annotated[str, typer.Option("--method", help="sd, r2f or seedselect.")] = "sd",
    model: Model = "stabilityai/stable-diffusion-3-medium-diffusers",
    revision: Revision = None,
    categories: Annotated[
        list[str] | None, typer.Option("--categories", "-c", help="Categories to run (repeat); default all eight.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Prompts per category.")] = None,
    images_per_prompt: Annotated[int, typer.Option("--images-per-prompt", "-k", min=1)] = 1,
    judge: Annotated[str, typer.Option("--judge", help="clipscore (offline) or gpt-4o.")] = "gpt-4o",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            exists=True,
            file_okay=False,
            help="Folder with the prompt files (offline); default: download once and verify checksums.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reuse a run folder made with other settings.")] = False,
    seed: Seed = 0,
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Generate, judge and report RareBench; resumable, and splits across processes under accelerate."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("bench rarebench", "issue 6")


@app.command("report", no_args_is_help=True)
@handled
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to report and compare.")],
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="Write a comparison plot PNG.")] = None,
    anchors: Annotated[bool, typer.Option("--anchors", help="Print the paper's published numbers beside.")] = False,
    json_out: Json = False,
) -> None:
    """Report one or more runs per category and overall; compare methods."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("bench report", "issue 6")
