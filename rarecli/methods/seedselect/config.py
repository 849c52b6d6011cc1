"""A SeedSelect job (`SeedSelectConfig`): what to draw, from which references, where, and the method's
options (`rarecli.methods.seedselect.options`), checked once when the job is made."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.backbones.registry import EMBEDDED
from rarecli.errors import InputError
from rarecli.log import warn
from rarecli.methods import registry
from rarecli.methods.options import MethodOptions
from rarecli.methods.seedselect.options import DEFAULTS, PAPER_CLIP, SEEDSELECT, SeedSelectOptions

__all__ = ["DEFAULTS", "DEFAULT_INNER_STEPS", "PAPER_CLIP", "SeedSelectConfig", "clean_prompt", "resolve_clip"]

DEFAULT_INNER_STEPS = 20
DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"


@dataclass(init=False)
class SeedSelectConfig:
    """One `rare seedselect` job. Method options are keyword arguments (`iters=30`, ...) or an `options`
    instance; either way they are checked here, once, by the method's options class."""

    prompt: str
    refs: Path | None
    method: str
    model: str
    revision: str | None
    inner_steps: int
    height: int | None  # None: the model's native size
    width: int | None
    guidance: float | None  # None: 7.5 for seedselect, 1 for nao-seedselect
    num_images: int
    seed: int
    out: Path
    options: MethodOptions

    def __init__(
        self,
        prompt: str,
        refs: Path | None,
        method: str = SEEDSELECT,
        model: str = DEFAULT_MODEL,
        revision: str | None = None,
        inner_steps: int = DEFAULT_INNER_STEPS,
        height: int | None = None,
        width: int | None = None,
        guidance: float | None = None,
        num_images: int = 1,
        seed: int = 0,
        out: Path = Path("out/seedselect"),
        options: MethodOptions | None = None,
        **given: Any,
    ) -> None:
        self.prompt, self.refs, self.method, self.model, self.revision = prompt, refs, method, model, revision
        self.inner_steps, self.height, self.width, self.guidance = inner_steps, height, width, guidance
        self.num_images, self.seed, self.out = num_images, seed, out
        if options is not None and given:
            raise TypeError("give the method's options as an `options` instance or as keywords, not both")
        spec = registry.spec(method, "rare seedselect")
        if options is None:
            # As `rare seedselect` offers every option of the methods it runs: another of those methods'
            # option is named and left out; a name no such method has is an error (from `parse`).
            theirs = set().union(*(registry.spec(n).options.names() for n in registry.with_refs(True)))
            unused = sorted(set(given) & (theirs - spec.options.names()))
            if unused:
                warn(f"{method} does not use {', '.join(unused)}")
            given = {k: v for k, v in given.items() if k not in unused}
        self.options = spec.parse(options if options is not None else given)
        _check_job(self)


def clean_prompt(prompt: str) -> str:
    """Underscores to spaces (class names like `tiger_cat`), whitespace collapsed; empty is an error."""
    text = re.sub(r"\s+", " ", prompt.replace("_", " ")).strip()
    if not text:
        raise InputError("the prompt is empty", hint='name the concept, e.g. rare seedselect "tiger cat" --refs DIR')
    return text


def resolve_clip(config: SeedSelectConfig) -> tuple[str, str | None]:
    """`auto`: an embedded backbone's own CLIP (tiny-sd -> tiny-clip), else the paper's ViT-H-14."""
    options = config.options
    assert isinstance(options, SeedSelectOptions)
    if options.clip_model != "auto":
        return options.clip_model, options.clip_pretrained
    entry = EMBEDDED.get(config.model)
    if entry is not None and entry.clip:
        return entry.clip, None
    return PAPER_CLIP


def _check_job(config: SeedSelectConfig) -> None:
    checks = [
        (config.inner_steps >= 1, f"--inner-steps must be >= 1 (got {config.inner_steps})"),
        (config.num_images >= 1, f"--num-images must be >= 1 (got {config.num_images})"),
        (config.guidance is None or config.guidance >= 0, f"--guidance must be >= 0 (got {config.guidance})"),
        (config.seed >= 0, f"--seed must be >= 0 (got {config.seed})"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
