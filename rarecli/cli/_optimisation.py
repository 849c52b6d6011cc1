"""Options shared by the commands that run SeedSelect / NAO-SeedSelect (`rare seedselect`, `rare augment`).

Defaults of None mean "the method's own" (SeedSelect 30 iterations, lr 0.1, CFG 7.5; NAO-SeedSelect 5,
0.05, 1), which the library resolves, so both commands show and apply the same ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from rarecli.cli._options import MAX_GUIDANCE, bounded

PANEL = "Optimisation"


class NaoStarts(StrEnum):
    half = "half"
    whole = "whole"


Iters = Annotated[
    int | None,
    typer.Option(
        "--iters",
        min=1,
        help="Optimisation iterations. Default: 30 for seedselect, 5 per refinement for nao-seedselect.",
        rich_help_panel=PANEL,
    ),
]


Lr = Annotated[
    float | None,
    typer.Option(
        "--lr",
        callback=bounded(0.0, 10.0, low_open=True),
        help="Learning rate, divided by 10 from the 4th iteration. Default: 0.1, or 0.05 for nao-seedselect.",
        rich_help_panel=PANEL,
    ),
]


InnerSteps = Annotated[
    int,
    typer.Option(
        "--inner-steps",
        min=1,
        help="DDIM denoising steps inside each iteration (gradients flow through all of them).",
        rich_help_panel=PANEL,
    ),
]


Guidance = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        callback=bounded(0.0, MAX_GUIDANCE),
        help="Classifier-free guidance. Default: 7.5 for seedselect, 1 for nao-seedselect.",
        rich_help_panel=PANEL,
    ),
]


SemanticWeight = Annotated[
    float,
    typer.Option("--semantic-weight", callback=bounded(0.0, 1e4), help="Weight of the CLIP semantic loss.", rich_help_panel=PANEL),
]


AppearanceWeight = Annotated[
    float,
    typer.Option("--appearance-weight", callback=bounded(0.0, 1e4), help="Weight of the VAE appearance loss.", rich_help_panel=PANEL),
]


Patience = Annotated[
    int,
    typer.Option(
        "--patience",
        min=1,
        help="Stop early after this many iterations without a lower loss (relative 1e-4).",
        rich_help_panel=PANEL,
    ),
]


WeightDecay = Annotated[
    float,
    typer.Option(
        "--weight-decay",
        callback=bounded(0.0, 1.0),
        help="AdamW weight decay. 0 by default: decay shrinks the seed's norm off the Gaussian shell the model "
        "was trained on (the authors' code leaves AdamW's 0.01).",
        rich_help_panel=PANEL,
    ),
]


class CheckpointingMode(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


Checkpointing = Annotated[
    CheckpointingMode,
    typer.Option(
        "--checkpointing",
        help="on: recompute each denoising step in the backward pass, so memory does not grow with "
        "--inner-steps. off: about 1.3-1.6x faster per iteration, memory grows with the steps. auto: off when "
        "one step's measured activations times --inner-steps fit in half the device's free memory, else on "
        "(the choice and its figures go into each image's .run.json).",
        rich_help_panel=PANEL,
    ),
]


BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Images optimised together (default: up to 4). Halved automatically when the GPU runs out of memory.",
        rich_help_panel=PANEL,
    ),
]


InversionSteps = Annotated[
    int,
    typer.Option(
        "--inversion-steps",
        min=1,
        help="nao-seedselect: DDIM inversion steps for the references (cached under the rare cache dir).",
        rich_help_panel=PANEL,
    ),
]


ClipModel = Annotated[
    str,
    typer.Option(
        "--clip-model",
        help="CLIP for the semantic loss. auto: the model's companion CLIP: an embedded backbone's own "
        "(tiny-sd -> tiny-clip), otherwise the paper's ViT-H-14 / laion2b_s32b_b79k (loaded through its "
        "transformers twin laion/CLIP-ViT-H-14-laion2B-s32B-b79K). Or an open_clip architecture name with "
        "--clip-pretrained, a Hugging Face CLIP id or local folder, or tiny-clip.",
        rich_help_panel=PANEL,
    ),
]


ClipPretrained = Annotated[
    str | None,
    typer.Option(
        "--clip-pretrained",
        help="open_clip pretrained tag for an open_clip --clip-model name (ignored for Hub ids and folders).",
        rich_help_panel=PANEL,
    ),
]


NaoStartsOption = Annotated[
    NaoStarts,
    typer.Option(
        "--nao-starts",
        help="nao-seedselect: where images after the first start, on the NAO paths from the centroid to each "
        "reference's inverted seed: half (the half nearer the centroid) or whole (all of each path, never a "
        "reference's own seed).",
        rich_help_panel=PANEL,
    ),
]

# The options a method does not read: given anyway (on the command line, in RARE_* or the config file),
# they are named rather than silently ignored.
OPTIMISATION = ("iters", "lr", "semantic_weight", "appearance_weight", "patience", "weight_decay",
                "checkpointing", "batch_size", "clip_model", "clip_pretrained")  # fmt: skip
UNUSED = {
    "sd": (*OPTIMISATION, "inversion_steps", "nao_starts"),
    "seedselect": ("inversion_steps", "nao_starts"),
}


def given(context: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among `names` that were set somewhere other than their default, as --flags."""
    return [
        "--" + name.replace("_", "-")
        for name in names
        if getattr(context.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    ]
