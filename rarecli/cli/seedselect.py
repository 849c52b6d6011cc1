"""`rare seedselect`: optimise the initial noise so the image matches reference images."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._method_flags import method_defaults, method_flags
from rarecli.cli._optimisation import PANEL, Guidance, InnerSteps, unused_options
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
from rarecli.methods import registry

# The methods `rare seedselect` runs: plain sampling and those that take reference images.
_METHODS = [registry.PLAIN, *(registry.spec(name) for name in registry.with_refs(True))]
MethodChoice = StrEnum("MethodChoice", [(s.name.replace("-", "_"), s.name) for s in _METHODS])  # type: ignore[misc]


@method_flags(_METHODS[1:], PANEL)
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
        MethodChoice,
        typer.Option(
            "--method",
            help="; ".join(f"{s.name}: {s.summary}" for s in _METHODS) + ".",
        ),
    ] = _METHODS[1].name,  # type: ignore[assignment]
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    inner_steps: InnerSteps = 20,
    guidance: Guidance = None,
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
    options: dict | None = None,
) -> Output:
    """Optimise the initial noise seed so the generated image matches a few reference images.

    SeedSelect (Samuel et al., AAAI 2024, arXiv 2304.14530) with the NAO initialisation (NeurIPS 2023,
    arXiv 2306.08687). Writes, per image, the optimised seed (.safetensors), the PNG rendered from it
    (settings embedded) and `<stem>.run.json` (loss curve, seconds per iteration, peak memory); prints
    the image paths. Ctrl-C stops the optimisation, writes the best seeds found so far and exits 130.
    """
    method_name = str(MethodChoice(method).value)
    own = registry.spec(method_name).options.names()
    options = {**method_defaults(ctx, method_name), **(options or {})}
    unused = ["--refs"] if refs is not None and not registry.spec(method_name).needs_refs else []
    unused += unused_options(options or {}, own)
    if unused:
        warn(f"--method {method_name} does not use {', '.join(unused)}")
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.methods.seedselect.config import SeedSelectConfig
    from rarecli.methods.seedselect.run import run
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype, offload=offload, attention_slicing=attention_slicing)
    config = SeedSelectConfig(
        prompt=prompt,
        refs=refs,
        method=method_name,
        model=model,
        revision=revision,
        inner_steps=inner_steps,
        guidance=guidance,
        num_images=num_images,
        height=height,
        width=width,
        seed=seed,
        out=out,
        **{k: v for k, v in (options or {}).items() if k in own},
    )
    result = run(config, manager)
    # What was found before Ctrl-C is written and printed, then the command exits 130.
    return Output(result.to_json(), result.images, interrupted=result.interrupted)


def register(app: typer.Typer) -> None:
    command(
        app,
        "seedselect",
        example='rare seedselect "tiger cat" --refs refs/tiger_cat/ --method nao-seedselect -n 4\n'
        'rare seedselect "a handwritten digit seven" --refs rarecli/toyworld/weights/refs/seven --model toy-digits',
    )(seedselect)
