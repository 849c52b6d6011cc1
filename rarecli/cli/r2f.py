"""`rare r2f plan` and `rare r2f generate`: Rare-to-Frequent (Park et al., ICLR 2025)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._options import (
    AttentionSlicing,
    Device,
    Dtype,
    Json,
    Model,
    Offload,
    Out,
    Quiet,
    Revision,
    Seed,
)
from rarecli.cli._run import handled

app = typer.Typer(
    help="Rare-to-Frequent: an LLM plans frequent stand-ins for rare concepts; the sampler "
    "lets them guide the early steps.",
    no_args_is_help=True,
)


class Backend(StrEnum):
    openai = "openai"
    llama = "llama"


@app.command("plan", no_args_is_help=True)
@handled
def plan(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt to plan, or - to read prompts from stdin (one per line).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", exists=True, dir_okay=False, help="Plan every line of this file (one JSON line each)."
        ),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            envvar="RARE_LLM_BACKEND",
            help="openai: GPT-4o or any OpenAI-compatible server; llama: a local GGUF through llama-cpp-python.",
        ),
    ] = Backend.openai,
    llm_model: Annotated[
        str | None,
        typer.Option(
            "--llm-model",
            envvar="RARE_LLM_MODEL",
            help="openai: model name [gpt-4o]; llama: a GGUF path, or REPO_ID/FILE.gguf when online.",
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible server URL.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ask the LLM even if a cached answer exists.")] = False,
    quiet: Quiet = False,
) -> None:
    """Find the rare concepts in a prompt and plan their frequent stand-ins; prints the plan JSON."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("r2f plan", "issue 7")


@app.command("generate", no_args_is_help=True)
@handled
def generate(
    plan_file: Annotated[str, typer.Argument(metavar="PLAN", help="A plan JSON file (or JSON lines), or - for stdin.")],
    model: Model = "stabilityai/stable-diffusion-3-medium-diffusers",
    revision: Revision = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Sampling steps [model default: 50].")] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", min=0.0, help="CFG scale [SD3 7.0, SDXL 5.0, SD 7.5].")
    ] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=1, help="Images per plan.")] = 1,
    seed: Seed = 0,
    out: Out = Path("out/r2f"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    offload: Offload = False,
    attention_slicing: AttentionSlicing = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Sample with the frequent prompts guiding the early steps and the rare prompt the rest."""
    from rarecli.errors import NotImplementedYet

    raise NotImplementedYet("r2f generate", "issue 7")
