"""The initial latents as a pipeline takes them. Seeds are always (channels, h, w) noise; FLUX's
pipeline takes its latents packed in 2x2 patches, (batch, h/2 * w/2, 4 * channels), in diffusers'
order (channels outermost within a patch), so one seed is the same image whichever way it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rarecli.backbones.families import family_of

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.loading import LoadedPipeline


def pack_2x2(latents: torch.Tensor) -> torch.Tensor:
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def pipeline_latents(loaded: LoadedPipeline, latents: torch.Tensor) -> torch.Tensor:
    """`latents` (batch, channels, h, w) in the form the pipeline's `latents=` argument takes."""
    return pack_2x2(latents) if family_of(loaded.family).packed_latents else latents
