"""`rare seedselect`: optimise the initial noise so the image matches reference images."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._optimisation import (
    UNUSED,
    AppearanceWeight,
    BatchSize,
    Checkpointing,
    CheckpointingMode,
    ClipModel,
    ClipPretrained,
    Guidance,
    InnerSteps,
    InversionSteps,
    Iters,
    Lr,
    NaoStarts,
    NaoStartsOption,
    Patience,
    SemanticWeight,
    WeightDecay,
    given,
)
from rarecli.cli._options import (
    AttentionSlicing,
    Device,
    Dtype,
    Height,
    Json,
    Model,
    Offload,
    Out,
    Quiet,
    Revision,
    Seed,
    Width,
)
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.log import warn


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
    iters: Iters = None,
    lr: Lr = None,
    inner_steps: InnerSteps = 20,
    guidance: Guidance = None,
    semantic_weight: SemanticWeight = 10.0,
    appearance_weight: AppearanceWeight = 1.0,
    patience: Patience = 8,
    weight_decay: WeightDecay = 0.0,
    checkpointing: Checkpointing = CheckpointingMode.auto,
    batch_size: BatchSize = None,
    inversion_steps: InversionSteps = 50,
    clip_model: ClipModel = "auto",
    clip_pretrained: ClipPretrained = "laion2b_s32b_b79k",
    nao_starts: NaoStartsOption = NaoStarts.half,
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
    height: Height = None,
    width: Width = None,
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
        height=height,
        width=width,
        batch_size=batch_size,
        seed=seed,
        out=out,
        checkpointing=checkpointing.value,
        inversion_steps=inversion_steps,
        nao_starts=nao_starts.value,
    )
    result = run(config, manager)
    # What was found before Ctrl-C is written and printed, then the command exits 130.
    return Output(result.to_json(), result.images, interrupted=result.interrupted)


def _warn_unused(context: typer.Context, method: Method) -> None:
    names = UNUSED.get(method.value, ())
    if method is Method.sd:
        names = ("refs", *names)
    unused = given(context, names)
    if unused:
        warn(f"--method {method.value} does not use {', '.join(unused)}")


def register(app: typer.Typer) -> None:
    command(
        app,
        "seedselect",
        example='rare seedselect "tiger cat" --refs refs/tiger_cat/ --method nao-seedselect -n 4\n'
        'rare seedselect "a handwritten digit seven" --refs rarecli/toyworld/weights/refs/seven --model toy-digits',
    )(seedselect)
