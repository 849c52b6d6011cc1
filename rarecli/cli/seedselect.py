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
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.log import warn

_OPT = "Optimisation"


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not above 0")
    return value


class Method(StrEnum):
    sd = "sd"
    seedselect = "seedselect"
    nao_seedselect = "nao-seedselect"


def seedselect(
    ctx: typer.Context,
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
            help="Optimisation iterations. Default: 30 for seedselect, 5 per refinement for nao-seedselect.",
            rich_help_panel=_OPT,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            callback=_positive,
            help="Learning rate, divided by 10 from the 4th iteration. Default: 0.1, or 0.05 for nao-seedselect.",
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
            help="Classifier-free guidance. Default: 7.5 for seedselect, 1 for nao-seedselect.",
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
            help="Stop early after this many iterations without a lower loss (relative 1e-4).",
            rich_help_panel=_OPT,
        ),
    ] = 8,
    weight_decay: Annotated[
        float,
        typer.Option(
            "--weight-decay",
            min=0.0,
            help="AdamW weight decay. 0 by default: decay shrinks the seed's norm off the Gaussian shell the model "
            "was trained on (the authors' code leaves AdamW's 0.01).",
            rich_help_panel=_OPT,
        ),
    ] = 0.0,
    checkpointing: Annotated[
        bool,
        typer.Option(
            "--checkpointing/--no-checkpointing",
            help="Recompute each denoising step in the backward pass, so memory does not grow with --inner-steps. "
            "Off: somewhat faster, memory grows linearly with the steps.",
            rich_help_panel=_OPT,
        ),
    ] = True,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Images optimised together (default: up to 4). Halved automatically when the GPU runs out of memory.",
            rich_help_panel=_OPT,
        ),
    ] = None,
    inversion_steps: Annotated[
        int,
        typer.Option(
            "--inversion-steps",
            min=1,
            help="nao-seedselect: DDIM inversion steps for the references (cached under the rare cache dir).",
            rich_help_panel=_OPT,
        ),
    ] = 50,
    clip_model: Annotated[
        str,
        typer.Option(
            "--clip-model",
            help="CLIP for the semantic loss. auto: the model's companion CLIP: an embedded backbone's own "
            "(tiny-sd -> tiny-clip), otherwise the paper's ViT-H-14 / laion2b_s32b_b79k (loaded through its "
            "transformers twin laion/CLIP-ViT-H-14-laion2B-s32B-b79K). Or an open_clip architecture name with "
            "--clip-pretrained, a Hugging Face CLIP id or local folder, or tiny-clip.",
            rich_help_panel=_OPT,
        ),
    ] = "auto",
    clip_pretrained: Annotated[
        str | None,
        typer.Option(
            "--clip-pretrained",
            help="open_clip pretrained tag for an open_clip --clip-model name (ignored for Hub ids and folders).",
            rich_help_panel=_OPT,
        ),
    ] = "laion2b_s32b_b79k",
    num_images: Annotated[
        int,
        typer.Option(
            "--num-images",
            "-n",
            min=1,
            help="Images to produce. seedselect: one optimisation each, the first against all references, the "
            "others against bootstrap resamples of them (seeds --seed, --seed+1, ...). nao-seedselect: the first "
            "from the NAO centroid, the others from points on the NAO paths.",
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
) -> Output:
    """Optimise the initial noise seed so the generated image matches a few reference images.

    SeedSelect (Samuel et al., AAAI 2024, arXiv 2304.14530) with the NAO initialisation (NeurIPS 2023,
    arXiv 2306.08687). Writes, per image, the optimised seed (.safetensors), the PNG rendered from it
    (settings embedded) and `<stem>.run.json` (loss curve, seconds per iteration, peak memory); prints
    the image paths. Ctrl-C stops the optimisation, writes the best seeds found so far and exits 130.
    """
    _warn_unused(ctx, method)
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.methods.seedselect.config import SeedSelectConfig
    from rarecli.methods.seedselect.run import run
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype, offload=offload, attention_slicing=attention_slicing)
    config = SeedSelectConfig(
        prompt=prompt,
        refs=refs,
        method=method.value,
        model=model,
        revision=revision,
        iters=iters,
        lr=lr,
        inner_steps=inner_steps,
        guidance=guidance,
        semantic_weight=semantic_weight,
        appearance_weight=appearance_weight,
        weight_decay=weight_decay,
        patience=patience,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        num_images=num_images,
        batch_size=batch_size,
        seed=seed,
        out=out,
        checkpointing=checkpointing,
        inversion_steps=inversion_steps,
    )
    result = run(config, manager)
    # What was found before Ctrl-C is written and printed, then the command exits 130.
    return Output(result.to_json(), result.images, interrupted=result.interrupted)


# The options each method does not read: given anyway (on the command line, in RARE_* or the config file),
# they are named rather than silently ignored.
_OPTIMISATION = ("refs", "iters", "lr", "semantic_weight", "appearance_weight", "patience", "weight_decay",
                 "checkpointing", "batch_size", "clip_model", "clip_pretrained")  # fmt: skip
_UNUSED = {Method.sd: (*_OPTIMISATION, "inversion_steps"), Method.seedselect: ("inversion_steps",)}


def _warn_unused(context: typer.Context, method: Method) -> None:
    given = [
        "--" + name.replace("_", "-")
        for name in _UNUSED.get(method, ())
        if getattr(context.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    ]
    if given:
        warn(f"--method {method.value} does not use {', '.join(given)}")


def register(app: typer.Typer) -> None:
    command(
        app,
        "seedselect",
        example='rare seedselect "tiger cat" --refs refs/tiger_cat/ --method nao-seedselect -n 4\n'
        'rare seedselect "a handwritten digit seven" --refs rarecli/toyworld/weights/refs/seven --model toy-digits',
    )(seedselect)
