"""SeedSelect's settings: the job (`SeedSelectConfig`), the paper's defaults per method, and the
checks that run before anything loads."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rarecli.backbones.registry import EMBEDDED
from rarecli.errors import InputError
from rarecli.methods.seedselect.memory import MODES as CHECKPOINTING_MODES
from rarecli.seeds.starts import SPREADS

METHODS = ("sd", "seedselect", "nao-seedselect")
# The paper's defaults per method: (iterations, learning rate, guidance).
DEFAULTS = {"seedselect": (30, 0.1, 7.5), "nao-seedselect": (5, 0.05, 1.0)}
PAPER_CLIP = ("ViT-H-14", "laion2b_s32b_b79k")
DEFAULT_INNER_STEPS = 20


@dataclass
class SeedSelectConfig:
    prompt: str
    refs: Path | None
    method: str = "seedselect"
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    iters: int | None = None  # None: 30 for seedselect, 5 for nao-seedselect
    lr: float | None = None  # None: 0.1 for seedselect, 0.05 for nao-seedselect
    inner_steps: int = DEFAULT_INNER_STEPS
    height: int | None = None  # None: the model's native size
    width: int | None = None
    guidance: float | None = None  # None: 7.5 for seedselect, 1 for nao-seedselect
    semantic_weight: float = 10.0
    appearance_weight: float = 1.0
    weight_decay: float = 0.0
    patience: int | None = 8
    clip_model: str = "auto"
    clip_pretrained: str | None = "laion2b_s32b_b79k"
    num_images: int = 1
    batch_size: int | None = None  # None: up to 4 images per batch
    seed: int = 0
    out: Path = Path("out/seedselect")
    checkpointing: str = "auto"  # auto, on or off (rarecli.methods.seedselect.memory)
    inversion_steps: int = 50
    inversion_cache: bool = True
    # nao-seedselect: start points on the half of each NAO path nearer the centroid, or on all of it.
    nao_starts: str = "half"


def clean_prompt(prompt: str) -> str:
    """Underscores to spaces (class names like `tiger_cat`), whitespace collapsed; empty is an error."""
    text = re.sub(r"\s+", " ", prompt.replace("_", " ")).strip()
    if not text:
        raise InputError("the prompt is empty", hint='name the concept, e.g. rare seedselect "tiger cat" --refs DIR')
    return text


def resolve_clip(config: SeedSelectConfig) -> tuple[str, str | None]:
    """`auto`: an embedded backbone's own CLIP (tiny-sd -> tiny-clip), else the paper's ViT-H-14."""
    if config.clip_model != "auto":
        return config.clip_model, config.clip_pretrained
    entry = EMBEDDED.get(config.model)
    if entry is not None and entry.clip:
        return entry.clip, None
    return PAPER_CLIP


def validate(config: SeedSelectConfig) -> None:
    if config.method not in METHODS:
        raise InputError(f"unknown method {config.method!r}", hint="use one of: " + ", ".join(METHODS))
    checks = [
        (config.iters is None or config.iters >= 1, f"--iters must be >= 1 (got {config.iters})"),
        (config.lr is None or config.lr > 0, f"--lr must be > 0 (got {config.lr})"),
        (config.inner_steps >= 1, f"--inner-steps must be >= 1 (got {config.inner_steps})"),
        (config.num_images >= 1, f"--num-images must be >= 1 (got {config.num_images})"),
        (config.batch_size is None or config.batch_size >= 1, f"--batch-size must be >= 1 (got {config.batch_size})"),
        (config.guidance is None or config.guidance >= 0, f"--guidance must be >= 0 (got {config.guidance})"),
        (config.semantic_weight >= 0 and config.appearance_weight >= 0, "loss weights must be >= 0"),
        (config.semantic_weight + config.appearance_weight > 0, "at least one loss weight must be > 0"),
        (config.weight_decay >= 0, f"--weight-decay must be >= 0 (got {config.weight_decay})"),
        (config.patience is None or config.patience >= 1, f"--patience must be >= 1 (got {config.patience})"),
        (config.inversion_steps >= 1, f"inversion steps must be >= 1 (got {config.inversion_steps})"),
        (config.seed >= 0, f"--seed must be >= 0 (got {config.seed})"),
        (
            config.checkpointing in CHECKPOINTING_MODES,
            f"--checkpointing must be auto, on or off (got {config.checkpointing!r})",
        ),
        (config.nao_starts in SPREADS, f"--nao-starts must be half or whole (got {config.nao_starts!r})"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


# What a request names (the prompt, its references, its seeds) or the method and model it runs on; the
# other fields of SeedSelectConfig are the method's options (`MethodContext.options`).
_JOB_FIELDS = {"prompt", "refs", "method", "model", "revision", "num_images", "seed", "out", "inner_steps", "guidance",
               "height", "width"}  # fmt: skip
OPTION_NAMES = frozenset(f.name for f in fields(SeedSelectConfig)) - _JOB_FIELDS


def options_of(config: SeedSelectConfig) -> dict[str, Any]:
    """The method options of a job, as `MethodContext.options` carries them."""
    return {name: getattr(config, name) for name in sorted(OPTION_NAMES)}
