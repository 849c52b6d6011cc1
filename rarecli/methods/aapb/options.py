"""AAPB's options and registry entry."""

from __future__ import annotations

from typing import ClassVar

from rarecli.methods.options import option
from rarecli.methods.r2f.options import R2F, PlanningOptions
from rarecli.methods.spec import MethodSpec

AAPB = "aapb"
PAPER = "Lee et al., Adaptive Auxiliary Prompt Blending, CVPR 2026 (arXiv 2603.19158)"


class AAPBOptions(PlanningOptions):
    method: ClassVar[str] = AAPB

    gamma: float | None = option(
        None, "A fixed anchor weight at every step (the paper's ablation) instead of the adaptive gamma*, "
        "which is clamped to [0.01, 0.99] per step and image.", low=0.0, high=1.0,
        source="AAPB (CVPR 2026) Eq. 13; fixed gamma: its ablation", what="anchor weight",
    )  # fmt: skip


# FLUX is guidance-distilled: no unconditional prediction to blend against (refused by the method).
SPEC = MethodSpec(
    AAPB,
    "the plan's most frequent prompt blended into the target's guidance with a closed-form gamma* ("
    + PAPER + ")",
    AAPBOptions,
    frozenset({"sd", "sdxl", "sd3"}),
    "rarecli.methods.aapb.method:AAPB",
    plan_kind=R2F,
    label="AAPB",
    authors_plans="aapb_plans",
)
