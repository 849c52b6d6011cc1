"""Known checkpoints: what a particular model needs beyond its family's facts (`families`).

Two FLUX.1 checkpoints are both a `FluxPipeline`, yet FLUX.1-schnell samples 4 steps without guidance
while FLUX.1-dev samples 28 with a guidance embedding, and the authors' R2F rule on FLUX (blended
stand-ins on the first steps) is stated for schnell's 4 steps only. So a checkpoint is recognised here,
by its Hugging Face id or, for a local copy, by a fingerprint of its denoiser's config, and each fact
says where it comes from. A model matching no entry runs on its family's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    label: str
    pipeline: str  # the diffusers pipeline class it loads as
    ids: tuple[str, ...]  # Hugging Face ids
    # Denoiser config items that tell it from its family's other checkpoints (a local copy has no id).
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    steps: int | None = None  # plain sampling's steps (None: the family's)
    guidance: float | None = None  # plain sampling's guidance (None: the family's)
    r2f_steps: int | None = None  # R2F's default steps (None: the paper's 50)
    # "blend": R2F as the authors run it on FLUX.1-schnell (`rarecli.methods.r2f.flux`); None: R2F's
    # alternation, or, on a family without CFG, no published R2F at all.
    r2f_rule: str | None = None
    source: str = ""


CHECKPOINTS: tuple[Checkpoint, ...] = (
    Checkpoint(
        "FLUX.1-schnell",
        "FluxPipeline",
        ("black-forest-labs/FLUX.1-schnell",),
        {"guidance_embeds": False},
        steps=4,
        guidance=0.0,
        r2f_steps=4,
        r2f_rule="blend",
        source="model card (4 steps, guidance 0); R2F's FLUX code, krafton-ai/Rare-to-Frequent@834f459 (4 steps)",
    ),
    Checkpoint(
        "FLUX.1-dev",
        "FluxPipeline",
        ("black-forest-labs/FLUX.1-dev",),
        {"guidance_embeds": True},
        steps=50,
        guidance=3.5,
        source="model card (50 steps, guidance 3.5); R2F publishes no rule for it",
    ),
    Checkpoint(
        "Stable Diffusion 3 Medium",
        "StableDiffusion3Pipeline",
        ("stabilityai/stable-diffusion-3-medium-diffusers",),
        {"qk_norm": None},
        steps=28,
        guidance=7.0,
        source="model card (28 steps, guidance 7.0); R2F's paper samples it at 50 steps",
    ),
    Checkpoint(
        "Stable Diffusion 3.5 Large",
        "StableDiffusion3Pipeline",
        ("stabilityai/stable-diffusion-3.5-large",),
        {"qk_norm": "rms_norm", "num_layers": 38},
        steps=28,
        guidance=3.5,
        source="model card (28 steps, guidance 3.5)",
    ),
    Checkpoint(
        "Stable Diffusion 3.5 Medium",
        "StableDiffusion3Pipeline",
        ("stabilityai/stable-diffusion-3.5-medium",),
        {"qk_norm": "rms_norm", "num_layers": 24},
        steps=40,
        guidance=4.5,
        source="model card (40 steps, guidance 4.5)",
    ),
)


def identify(model: str, pipeline: str, denoiser_config: Mapping[str, Any]) -> Checkpoint | None:
    """The known checkpoint `model` is: by id, else the first whose fingerprint its denoiser matches."""
    candidates = [c for c in CHECKPOINTS if c.pipeline == pipeline]
    for checkpoint in candidates:
        if model in checkpoint.ids:
            return checkpoint
    for checkpoint in candidates:
        if checkpoint.fingerprint and all(denoiser_config.get(k) == v for k, v in checkpoint.fingerprint.items()):
            return checkpoint
    return None
