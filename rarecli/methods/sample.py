"""Plain sampling from an explicit initial noise: the baseline every method is compared with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import family_of

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rarecli.backbones.loading import LoadedPipeline


def sample(
    loaded: LoadedPipeline,
    prompt: str,
    noise: torch.Tensor,
    steps: int,
    guidance: float | None = None,
    negative_prompt: str | None = None,
    **pipe_kwargs: Any,
) -> Image.Image:
    """Render one image from `noise` (C,h,w or 1,C,h,w); the image size follows the noise shape."""
    import torch

    pipe = loaded.pipe
    latents = noise if noise.dim() == 4 else noise.unsqueeze(0)
    f = pipe.vae_scale_factor
    guidance = family_of(loaded.family).guidance if guidance is None else guidance
    with torch.inference_mode():
        result = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            latents=latents.to(loaded.manager.device, loaded.manager.torch_dtype),
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=latents.shape[-2] * f,
            width=latents.shape[-1] * f,
            output_type="pil",
            **pipe_kwargs,
        )
    return result.images[0]


def settings_text(sampler: str, steps: int, guidance: float | None, seed: int | str, model: str) -> dict[str, Any]:
    """The A1111-style `Key: value` settings for the `parameters` chunk."""
    return {"Steps": steps, "Sampler": sampler, "CFG scale": guidance, "Seed": seed, "Model": model}
