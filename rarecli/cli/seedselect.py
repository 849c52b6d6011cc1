"""`rare seedselect`: optimise the initial noise so the image matches reference images."""

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

_OPT = "Optimisation"


class Method(StrEnum):
    sd = "sd"
    seedselect = "seedselect"
    nao_seedselect = "nao-seedselect"


def seedselect(
    prompt: Annotated[str, typer.Argument(help='Text naming the rare concept, e.g. "tiger cat".')],
    refs: Annotated[
        Path | None,
        typer.Option(
            "--refs",
            "-r",
            help="Folder of reference images of the "
            "concept (PNG/JPEG/WebP; other files are skipped with a "
            "warning). Required except for --method sd.",
        ),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="sd: plain sampling (baseline); seedselect: "
            "optimise a random seed; nao-seedselect: start from the NAO "
            "centroid of the references' inverted seeds.",
        ),
    ] = Method.seedselect,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    iters: Annotated[
        int | None,
        typer.Option(
            "--iters",
            min=1,
            help="Optimisation iterations [default: 30 for seedselect, 5 per refinement for nao-seedselect].",
            rich_help_panel=_OPT,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            min=0.0,
            help="Learning rate, divided by 10 from the 4th iteration [default: 0.1, or 0.05 for nao-seedselect].",
            rich_help_panel=_OPT,
        ),
    ] = None,
    inner_steps: Annotated[
        int,
        typer.Option(
            "--inner-steps",
            min=1,
            help="DDIM denoising steps inside each iteration (gradients flow through all of them).",
            rich_help_panel=_OPT,
        ),
    ] = 20,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance",
            min=0.0,
            help="Classifier-free guidance [default: 7.5 for seedselect, 1 for nao-seedselect].",
            rich_help_panel=_OPT,
        ),
    ] = None,
    semantic_weight: Annotated[
        float,
        typer.Option("--semantic-weight", min=0.0, help="Weight of the CLIP semantic loss.", rich_help_panel=_OPT),
    ] = 10.0,
    appearance_weight: Annotated[
        float,
        typer.Option("--appearance-weight", min=0.0, help="Weight of the VAE appearance loss.", rich_help_panel=_OPT),
    ] = 1.0,
    patience: Annotated[
        int,
        typer.Option(
            "--patience",
            min=1,
            help="Stop early after this many iterations without a lower loss.",
            rich_help_panel=_OPT,
        ),
    ] = 8,
    clip_model: Annotated[
        str,
        typer.Option(
            "--clip-model",
            help="CLIP for the semantic loss: an open_clip "
            "architecture name, a Hugging Face CLIP id or local folder, or an "
            "embedded one (tiny-clip).",
            rich_help_panel=_OPT,
        ),
    ] = "ViT-H-14",
    clip_pretrained: Annotated[
        str | None,
        typer.Option("--clip-pretrained", help="open_clip pretrained tag for --clip-model.", rich_help_panel=_OPT),
    ] = "laion2b_s32b_b79k",
    num_images: Annotated[
        int,
        typer.Option(
            "--num-images", "-n", min=1, help="Images to produce, each from its own bootstrap subset of the references."
        ),
    ] = 1,
    seed: Seed = 0,
    out: Out = Path("out/seedselect"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    offload: Offload = False,
    attention_slicing: AttentionSlicing = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Optimise the initial noise seed so the generated image matches a few reference images.

    SeedSelect (Samuel et al., AAAI 2024) with the NAO initialisation (NeurIPS 2023). Writes the
    optimised seed (.safetensors), the images (PNG with settings embedded) and run.json with the loss
    curve; prints the image paths.
    """
    from rarecli.cli._output import emit_json, emit_paths
    from rarecli.log import set_quiet
    from rarecli.methods.seedselect import SeedSelectConfig, run
    from rarecli.runtime.device import DeviceManager

    set_quiet(quiet or json_out)
    manager = DeviceManager(device, dtype, offload=offload, attention_slicing=attention_slicing)
    config = SeedSelectConfig(
        prompt=prompt,
        refs=refs,
        method=method.value,
        model=model,
        revision=revision,
        inner_steps=inner_steps,
        guidance=guidance,
        num_images=num_images,
        seed=seed,
        out=out,
    )
    result = run(config, manager)
    if json_out:
        emit_json(result.to_json())
    else:
        emit_paths(result.images)
