"""R2F+'s options and registry entry."""

from __future__ import annotations

from typing import ClassVar

from rarecli.errors import InputError
from rarecli.methods.options import option
from rarecli.methods.r2f.options import PlanningOptions
from rarecli.methods.spec import MethodSpec

R2F_PLUS = "r2f-plus"
MASKS = ("boxes", "detector")
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"
DEFAULT_MIN_SCORE = 0.3


class R2FPlusOptions(PlanningOptions):
    method: ClassVar[str] = R2F_PLUS

    masks: str = option(
        "boxes", "Each object's mask, where its own image is pasted in: boxes (the box itself; no extra model) "
        "or detector (the detector finds the object, the segmenter outlines it; the box is used when detection "
        "is weak).", choices=MASKS, source="the authors' code runs GroundingDINO + SAM",
    )  # fmt: skip
    detector: str | None = option(
        None, "masks=detector: a zero-shot object detector (transformers), a Hub id or folder; default "
        f"{DEFAULT_DETECTOR}; tiny-grounding-dino runs offline (random weights).",
        source="the authors' code",
    )  # fmt: skip
    segmenter: str | None = option(
        None, f"masks=detector: a box-prompted segmenter (SAM), a Hub id or folder; default {DEFAULT_SEGMENTER}; "
        "tiny-sam runs offline (random weights).", source="the authors' code",
    )  # fmt: skip
    min_detection_score: float | None = option(
        None, f"masks=detector: below this best-box score (default {DEFAULT_MIN_SCORE}) detection is weak and the "
        "object's box is its mask.", low=0.0, high=1.0, source="the authors' code (box threshold 0.3)",
    )  # fmt: skip

    def validate(self) -> None:
        detection = [n for n in ("detector", "segmenter", "min_detection_score") if getattr(self, n) is not None]
        if self.masks == "boxes" and detection:
            flag = "--" + detection[0].replace("_", "-")
            raise InputError(f"{flag} needs --masks detector (masks=detector): boxes are their own masks")


SPEC = MethodSpec(
    R2F_PLUS,
    "R2F+: each object drawn in its own box, then box guidance and masked latent fusion (Park et al., ICLR 2025)",
    R2FPlusOptions,
    frozenset({"sd3"}),
    "rarecli.methods.r2f_plus.method:R2FPlus",
    plan_kind=R2F_PLUS,
    label="R2F+",
    authors_plans="authors_plus_plans",
)
