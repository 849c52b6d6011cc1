"""How each family's diffusers pipeline encodes a prompt: one call per family, so methods never branch
on which family they run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rarecli.backbones.families import family_of

# (pos, neg, pooled, neg_pooled): neg is None without CFG, pooled is None where the family has none.
Encoded = tuple[Any, Any, Any, Any]


def _sd3(pipe: Any, prompt: str, negative: str | None, cfg: bool, device: Any, max_length: int | None) -> Encoded:
    return pipe.encode_prompt(
        prompt=prompt,
        prompt_2=None,
        prompt_3=None,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=negative,
        max_sequence_length=max_length,
    )


def _sdxl(pipe: Any, prompt: str, negative: str | None, cfg: bool, device: Any, max_length: int | None) -> Encoded:
    return pipe.encode_prompt(
        prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg, negative_prompt=negative
    )


def _sd(pipe: Any, prompt: str, negative: str | None, cfg: bool, device: Any, max_length: int | None) -> Encoded:
    pos, neg = pipe.encode_prompt(prompt, device, 1, cfg, negative_prompt=negative)
    return pos, neg, None, None


# By the number of text encoders of a family with CFG (FLUX, without CFG, is encoded by its own sampler).
_ENCODERS: dict[int, Callable[..., Encoded]] = {3: _sd3, 2: _sdxl, 1: _sd}


def encode_prompt(
    pipe: Any, family_name: str, prompt: str, negative: str | None, cfg: bool, device: Any, max_length: int | None = None
) -> Encoded:
    """The pipeline's own `encode_prompt` for its family (SD3: T5 cut at `max_length`, default the
    family's); FLUX has no CFG and is encoded by its own sampler."""
    family = family_of(family_name)
    encoder = _ENCODERS.get(family.text_encoders) if family.cfg else None
    if encoder is None:
        raise ValueError(f"{family.label} prompts are not encoded through encode_prompt here")
    return encoder(pipe, prompt, negative, cfg, device, max_length or family.max_sequence_length)
