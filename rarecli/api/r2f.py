"""R2F from Python: plan a prompt with an LLM (`plan`), then draw from the plan (`generate`), as
`rare r2f plan` and `rare r2f generate` do; the two steps are separate, so a plan can be read, edited or
written by hand (`rarecli.llm.schema.Plan`) before it is drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarecli.api import COMMAND, Images
from rarecli.llm.planner import PlannerSettings, make_planner
from rarecli.llm.schema import Plan
from rarecli.methods import registry
from rarecli.methods.r2f.generate import R2FConfig
from rarecli.methods.r2f.generate import run as run_r2f
from rarecli.methods.r2f_plus.answer import R2F_PLUS
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.runtime.device import DeviceManager

__all__ = ["generate", "plan"]


def plan(
    prompt: str,
    *,
    backend: str = "openai",
    llm_model: str | None = None,
    base_url: str | None = None,
    plus: bool = False,
    attempts: int = 3,
    timeout: float = 60.0,
    cache: bool = True,
) -> Plan | PlusPlan:
    """The LLM's plan of `prompt`: its rare concepts, a frequent stand-in and a visual-detail level for
    each (`plus`: R2F+'s objects, boxes and per-object stand-ins). `backend`: openai (OPENAI_API_KEY; an
    OpenAI-compatible `base_url`) or llama (a GGUF `llm_model`). Answers are cached on disk (`cache`)."""
    settings = PlannerSettings(
        backend=backend,
        llm_model=llm_model,
        base_url=base_url,
        timeout=timeout,
        attempts=attempts,
        use_cache=cache,
        kind=R2F_PLUS if plus else None,
    )
    return make_planner(settings).plan(prompt)


def generate(
    plans: Plan | PlusPlan | Sequence[Plan | PlusPlan],
    *,
    model: str,
    method: str = registry.R2F.name,
    num_images: int = 1,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
    t5: bool | None = None,
    device: str = "auto",
    dtype: str = "auto",
    out: str | Path | None = None,
    **options: Any,
) -> Images:
    """`num_images` images per plan (seeds `seed`, `seed + 1`, ...): R2F, R2F+ for R2F+ plans, or another
    method that reads R2F's plans (`method="aapb"`), as `rare r2f generate` makes them (the same library
    call); `options` are the method's (`negative_prompt`, `schedule`, `gamma`, `masks`, ...)."""
    plans = [plans] if isinstance(plans, Plan | PlusPlan) else list(plans)
    config = R2FConfig(
        plans=plans, method=method, model=model, steps=steps, guidance=guidance, num_images=num_images, seed=seed,
        out=Path(out) if out is not None else Path("."), height=height, width=width, t5=t5, options=options,
    )  # fmt: skip
    images = Images()
    for result in run_r2f(config, DeviceManager(device, dtype), write=out is not None, command=COMMAND):
        images.made.extend(result.made)
        images.written.extend([*result.images, *result.parts])
    return images
