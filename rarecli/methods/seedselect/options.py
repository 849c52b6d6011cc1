"""SeedSelect's and NAO-SeedSelect's options (one typed class each) and their registry entries.

None for `iters` and `lr` means the method's own default (`DEFAULTS`), which differs between the two
methods while `rare seedselect` offers one flag for both.
"""

from __future__ import annotations

from typing import ClassVar

from rarecli.errors import InputError
from rarecli.methods.options import MethodOptions, option
from rarecli.methods.spec import MethodSpec

SEEDSELECT = "seedselect"
NAO_SEEDSELECT = "nao-seedselect"
# The papers' defaults per method: (iterations, learning rate, guidance). SeedSelect: AAAI 2024, Sec. 5
# (30 iterations, lr 0.1, CFG 7.5); NAO-SeedSelect: NeurIPS 2023, Sec. 5.2 (5 iterations, lr 0.05, CFG 1).
DEFAULTS = {SEEDSELECT: (30, 0.1, 7.5), NAO_SEEDSELECT: (5, 0.05, 1.0)}
PAPER_CLIP = ("ViT-H-14", "laion2b_s32b_b79k")
CHECKPOINTING_MODES = ("auto", "on", "off")
SPREADS = ("half", "whole")


class SeedSelectOptions(MethodOptions):
    method: ClassVar[str] = SEEDSELECT

    iters: int | None = option(
        None, "Optimisation iterations. Default: 30 for seedselect, 5 per refinement for nao-seedselect.", low=1,
        source="SeedSelect (AAAI 2024) Sec. 5; NAO (NeurIPS 2023) Sec. 5.2",
    )  # fmt: skip
    lr: float | None = option(
        None, "Learning rate, divided by 10 from the 4th iteration. Default: 0.1, or 0.05 for nao-seedselect.",
        low=0.0, low_open=True, flag_high=10.0, source="the authors' code (dvirsamuel/SeedSelect)",
    )  # fmt: skip
    semantic_weight: float = option(
        10.0, "Weight of the CLIP semantic loss.", low=0.0, high=1e4, source="the authors' code"
    )
    appearance_weight: float = option(
        1.0, "Weight of the VAE appearance loss.", low=0.0, high=1e4, source="the authors' code"
    )
    patience: int | None = option(
        8, "Stop early after this many iterations without a lower loss (relative 1e-4).", low=1,
        source="rare (the authors run every iteration)",
    )  # fmt: skip
    weight_decay: float = option(
        0.0, "AdamW weight decay. 0 by default: decay shrinks the seed's norm off the Gaussian shell the model "
        "was trained on (the authors' code leaves AdamW's 0.01).", low=0.0, high=1.0,
        source="rare; the authors' code has AdamW's default 0.01",
    )  # fmt: skip
    checkpointing: str = option(
        "auto", "on: recompute each denoising step in the backward pass, so memory does not grow with "
        "--inner-steps. off: about 1.3-1.6x faster per iteration, memory grows with the steps. auto: off when "
        "one step's measured activations times --inner-steps fit in half the device's free memory, else on "
        "(the choice and its figures go into each image's .run.json).", choices=CHECKPOINTING_MODES
    )  # fmt: skip
    batch_size: int | None = option(
        None, "Images optimised together (default: up to 4). Halved automatically when the GPU runs out of "
        "memory.", low=1,
    )  # fmt: skip
    clip_model: str = option(
        "auto", "CLIP for the semantic loss. auto: the model's companion CLIP: an embedded backbone's own "
        "(tiny-sd -> tiny-clip), otherwise the paper's ViT-H-14 / laion2b_s32b_b79k (loaded through its "
        "transformers twin laion/CLIP-ViT-H-14-laion2B-s32B-b79K). Or an open_clip architecture name with "
        "--clip-pretrained, a Hugging Face CLIP id or local folder, or tiny-clip.",
        source="SeedSelect (AAAI 2024): OpenCLIP ViT-H-14",
    )  # fmt: skip
    clip_pretrained: str | None = option(
        "laion2b_s32b_b79k", "open_clip pretrained tag for an open_clip --clip-model name (ignored for Hub ids "
        "and folders).", source="SeedSelect (AAAI 2024)",
    )  # fmt: skip

    def validate(self) -> None:
        if self.semantic_weight + self.appearance_weight <= 0:
            raise InputError("at least one loss weight must be > 0")


class NaoSeedSelectOptions(SeedSelectOptions):
    method: ClassVar[str] = NAO_SEEDSELECT

    inversion_steps: int = option(
        50, "nao-seedselect: DDIM inversion steps for the references (cached under the rare cache dir).", low=1,
        source="NAO (NeurIPS 2023) Sec. 5.2",
    )  # fmt: skip
    inversion_cache: bool = option(
        True, "nao-seedselect: keep the references' inversions on disk and reuse them."
    )
    nao_starts: str = option(
        "half", "nao-seedselect: where images after the first start, on the NAO paths from the centroid to each "
        "reference's inverted seed: half (the half nearer the centroid) or whole (all of each path, never a "
        "reference's own seed).", choices=SPREADS, source="rare (NAO Sec. 5.2 samples along the paths)",
    )  # fmt: skip


_FAMILIES = frozenset({"sd"})  # DDIM inversion and the differentiable loop are written for the SD UNet
SEEDSELECT_SPEC = MethodSpec(
    SEEDSELECT,
    "optimise the initial noise to match reference images (Samuel et al., AAAI 2024)",
    SeedSelectOptions,
    _FAMILIES,
    "rarecli.methods.seedselect.method:SeedSelect",
    needs_refs=True,
    label="SeedSelect",
)
NAO_SEEDSELECT_SPEC = MethodSpec(
    NAO_SEEDSELECT,
    "SeedSelect from the NAO centroid of the references' inverted seeds (Samuel et al., NeurIPS 2023)",
    NaoSeedSelectOptions,
    _FAMILIES,
    "rarecli.methods.seedselect.method:SeedSelect",
    needs_refs=True,
    label="NAO-SeedSelect",
)
