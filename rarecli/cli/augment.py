"""`rare augment`: grow a folder of class folders with SeedSelect / NAO-SeedSelect images."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._method_flags import method_defaults, method_flags
from rarecli.cli._optimisation import PANEL, Guidance, unused_options
from rarecli.cli._options import Device, Dtype, Json, Model, Offload, Quiet, Revision, Seed
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.log import warn
from rarecli.methods import registry

_JOB = "Dataset"
# Plain sampling and the methods that learn from a class's own images (its references).
_METHODS = [registry.PLAIN, *(registry.spec(name) for name in registry.with_refs(True))]
MethodChoice = StrEnum("MethodChoice", [(s.name.replace("-", "_"), s.name) for s in _METHODS])  # type: ignore[misc]


def _classes(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@method_flags(_METHODS[1:], PANEL)
def augment(
    ctx: typer.Context,
    root: Annotated[
        Path,
        typer.Argument(
            file_okay=False,
            help="Folder of class folders, a few images each (ImageFolder's layout). Class names come from the "
            "folder names (tiger_cat -> 'tiger cat'), or from ROOT/classes.json ({\"n02123159\": \"tiger cat\"}, "
            "or imagenet_class_index.json's {\"281\": [\"n02123159\", \"tiger_cat\"]}) or ROOT/classes.txt (lines "
            "'FOLDER NAME', e.g. ImageNet's LOC_synset_mapping.txt; the first of comma-separated synonyms is used).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            file_okay=False,
            help="DATASET folder: ROOT's layout (DATASET/<class>/<name>.png, settings embedded) plus manifest.jsonl. "
            "Re-running resumes; raising --per-class adds images.",
            rich_help_panel=_JOB,
        ),
    ],
    method: Annotated[
        MethodChoice,
        typer.Option(
            "--method",
            help="sd: plain sampling (baseline); seedselect: one optimised seed per image, matched to the class's "
            "images (the first to all of them, the others to bootstrap resamples); nao-seedselect: refinements "
            "from the NAO centroid of the images' inverted seeds and points on the NAO paths.",
            rich_help_panel=_JOB,
        ),
    ] = _METHODS[1].name,  # type: ignore[assignment]
    per_class: Annotated[
        int,
        typer.Option("--per-class", "-k", min=1, help="Images to generate per class.", rich_help_panel=_JOB),
    ] = 10,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--classes",
            "-c",
            help="Only these classes (folder or class names; repeat, or comma-separated). Default: all.",
            rich_help_panel=_JOB,
        ),
    ] = None,
    only_below: Annotated[
        int | None,
        typer.Option(
            "--only-below",
            min=1,
            help="Only classes with fewer than N real images (the long-tail use: augment the tail, not the head).",
            rich_help_panel=_JOB,
        ),
    ] = None,
    prompt_template: Annotated[
        str,
        typer.Option(
            "--prompt-template",
            help="The prompt of a class; {} is its name.",
            rich_help_panel=_JOB,
        ),
    ] = "a photo of a {}",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="DATASET made with other settings: move it aside (DATASET.superseded-<time>) and start again.",
            rich_help_panel=_JOB,
        ),
    ] = False,
    model: Model = "stabilityai/stable-diffusion-2-1-base",
    revision: Revision = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=1,
            help="Denoising steps: SeedSelect's inner DDIM steps (default 20), or plain sampling's (the model's).",
        ),
    ] = None,
    guidance: Guidance = None,
    seed: Seed = 0,
    device: Device = "auto",
    dtype: Dtype = "auto",
    offload: Offload = False,
    json_out: Json = False,
    quiet: Quiet = False,
    options: dict | None = None,
) -> Output:
    """Few-shot and long-tail data augmentation: generate images of every class of ROOT into DATASET.

    SeedSelect (AAAI 2024) and NAO-SeedSelect (NeurIPS 2023) make images of a rare class from its few real
    ones. Image i of every class uses seed --seed + i. A class that cannot be done (an empty folder, no
    readable image, no name in the mapping) fails alone and the others go on. Under `accelerate launch`
    the images are split across processes. Prints the paths of the images written; summary.json holds
    the failures and timings. Ctrl-C keeps every finished image and exits 130; re-run to resume.
    """
    method_name = str(MethodChoice(method).value)
    own = registry.spec(method_name).options.names()
    options = {**method_defaults(ctx, method_name), **(options or {})}
    unused = unused_options(options or {}, own)
    if unused:
        warn(f"--method {method_name} does not use {', '.join(unused)}")
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.augment.run import AugmentConfig, run_augment

    result = run_augment(
        AugmentConfig(
            root=root,
            out=out,
            method=method_name,
            per_class=per_class,
            classes=_classes(classes),
            only_below=only_below,
            prompt_template=prompt_template,
            model=model,
            revision=revision,
            steps=steps,
            guidance=guidance,
            seed=seed,
            options={k: v for k, v in (options or {}).items() if k in own},
            force=force,
            device=device,
            dtype=dtype,
            offload=offload,
        )
    )
    return Output(result.to_json(), result.written, interrupted=result.interrupted)


def register(app: typer.Typer) -> None:
    command(
        app,
        "augment",
        example="rare augment imagenet-lt/train --out augmented/ --method nao-seedselect --only-below 20 -k 50\n"
        "rare augment rarecli/toyworld/weights/refs --model toy-digits --prompt-template "
        '"a handwritten digit {}" -k 4 --iters 5 --out out/augment',
    )(augment)
