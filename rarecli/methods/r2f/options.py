"""R2F's options and registry entry; `PlanningOptions`, the planner settings R2F shares with the
methods that read its plans (R2F+, AAPB)."""

from __future__ import annotations

from typing import ClassVar

from rarecli.methods.options import MethodOptions, option
from rarecli.methods.spec import MethodSpec

R2F = "r2f"
RULES = ("rare", "authors")
BACKENDS = ("openai", "llama")


class PlanningOptions(MethodOptions):
    """How a request without a plan gets one, and the negative prompt every step uses."""

    negative_prompt: str | None = option(None, "Negative prompt, the same at every step.")
    llm_backend: str | None = option(
        None, "Planner for prompts that come without a plan: openai or llama (none: a plan must be given).",
        choices=BACKENDS,
    )  # fmt: skip
    llm_model: str | None = option(
        None, "Planner model: an OpenAI name [gpt-4o], or for llama a GGUF path, REPO/FILE.gguf or smollm2."
    )
    llm_base_url: str | None = option(None, "Planner: an OpenAI-compatible server URL.")


class R2FOptions(PlanningOptions):
    method: ClassVar[str] = R2F

    schedule: str = option(
        "rare", "Step rule. rare: ours (stand-ins restored lowest level first, the level table scaled to the "
        "steps). authors: the authors' rule with its quirks (plan order, unscaled table), to replay their plans.",
        choices=RULES, source="R2F (ICLR 2025) Appendix, Tables 5-6; the authors' code for `authors`",
        what="step rule",
    )  # fmt: skip


SPEC = MethodSpec(
    R2F,
    "Rare-to-Frequent: frequent stand-ins guide the early steps, the rare prompt the rest (Park et al., ICLR 2025)",
    R2FOptions,
    frozenset({"sd", "sdxl", "sd3", "flux"}),
    "rarecli.methods.r2f.method:R2F",
    plan_kind=R2F,
    label="R2F",
    authors_plans="authors_plans",
)
