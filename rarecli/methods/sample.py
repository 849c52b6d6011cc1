"""Plain sampling from an explicit initial noise: the baseline every method is compared with.

`sample_batch` renders images from given noise with the pipeline's own `__call__` (its own scheduler);
`PlainSampling` is the registered plain-sampling method: integer seeds -> noise drawn on the CPU -> images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rarecli.backbones.families import sampler_label
from rarecli.backbones.loading import LoadedPipeline, latent_shape, load_pipeline
from rarecli.log import progress
from rarecli.methods.latents import pipeline_latents
from rarecli.methods.output import Provenance, settings_text
from rarecli.methods.plain.options import SPEC, PlainOptions
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.spec import MethodBase
from rarecli.runtime.device import DeviceManager
from rarecli.seeds.noise import noise_from_seed

if TYPE_CHECKING:
    import torch
    from PIL import Image


def sample_batch(
    loaded: LoadedPipeline,
    prompt: str,
    noise: torch.Tensor,
    steps: int,
    guidance: float | None = None,
    negative_prompt: str | None = None,
) -> list[Image.Image]:
    """Render one image per noise in `noise` (B,C,h,w, or one C,h,w); the size follows the noise shape."""
    import torch

    pipe = loaded.pipe
    latents = noise if noise.dim() == 4 else noise.unsqueeze(0)
    f = pipe.vae_scale_factor
    guidance = loaded.sampling_defaults()[1] if guidance is None else guidance
    n = latents.shape[0]
    loaded.check_prompt_length(prompt)
    with torch.inference_mode():
        result = pipe(
            prompt=prompt if n == 1 else [prompt] * n,
            negative_prompt=negative_prompt if n == 1 or negative_prompt is None else [negative_prompt] * n,
            latents=pipeline_latents(loaded, latents.to(loaded.manager.device, loaded.manager.torch_dtype)),
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=latents.shape[-2] * f,
            width=latents.shape[-1] * f,
            output_type="pil",
        )
    return list(result.images)


def sample(
    loaded: LoadedPipeline,
    prompt: str,
    noise: torch.Tensor,
    steps: int,
    guidance: float | None = None,
    negative_prompt: str | None = None,
) -> Image.Image:
    """Render one image from `noise` (C,h,w or 1,C,h,w)."""
    return sample_batch(loaded, prompt, noise, steps, guidance, negative_prompt)[0]


class PlainSampling(MethodBase):
    """Plain sampling: the pipeline from each seed's noise (`PlainOptions`)."""

    spec = SPEC

    def prepare(self, context: MethodContext) -> _PreparedPlain:
        context = replace(context, options=self.check(context.options))
        loaded = context.load_pipeline(self)
        return _PreparedPlain(loaded, context)


@dataclass
class _PreparedPlain:
    loaded: LoadedPipeline
    context: MethodContext

    def generate(self, request: Request) -> Iterator[Generated]:
        import torch

        loaded, context = self.loaded, self.context
        options: PlainOptions = context.options  # type: ignore[assignment]
        shape = latent_shape(loaded.ref, context.height, context.width)
        # Plain sampling's default is the model card's number of steps (the pipeline's own for its family).
        default_steps, default_guidance = loaded.sampling_defaults()
        steps = context.steps or default_steps
        guidance = default_guidance if context.guidance is None else context.guidance
        negative = options.negative_prompt
        size = options.batch_size
        sampler = sampler_label(loaded.pipe.scheduler)
        hyper = {"steps": steps, "guidance": guidance, "family": loaded.family, "latent_shape": list(shape)}
        if loaded.has_t5 is not None:
            hyper["t5"] = loaded.has_t5
        if negative:
            hyper["negative_prompt"] = negative
        seeds = list(request.seeds)
        wanted = request.wanted()
        with progress("sampling", total=len(wanted)) as bar:
            for start in range(0, len(wanted), size):
                indices = wanted[start : start + size]
                chunk = [seeds[i] for i in indices]
                noises = torch.stack([noise_from_seed(s, shape) for s in chunk])
                images = sample_batch(loaded, request.prompt, noises, steps, guidance, negative)
                for j, (index, seed, image) in enumerate(zip(indices, chunk, images, strict=True)):
                    provenance = Provenance(
                        command=context.command,
                        method=SPEC.name,
                        prompt=request.prompt,
                        seed=seed,
                        model=loaded.meta(),
                        hyper=dict(hyper),
                        settings=settings_text(sampler, steps, guidance, seed, context.model),
                        negative_prompt=negative,
                    )
                    yield Generated(index, seed, image, provenance, seed_tensor=noises[j])
                    bar.advance()


@dataclass
class Renderer:
    """Plain sampling of given seed tensors with one prompt (`rare interpolate/centroid --render`)."""

    loaded: LoadedPipeline

    @classmethod
    def load(cls, model: str, revision: str | None, manager: DeviceManager) -> Renderer:
        return cls(load_pipeline(model, manager, revision, families=SPEC.families, purpose="--render"))

    def guidance(self, guidance: float | None) -> float:
        return self.loaded.sampling_defaults()[1] if guidance is None else guidance

    @property
    def sampler(self) -> str:
        return sampler_label(self.loaded.pipe.scheduler)

    def render(self, prompt: str, seeds: list[torch.Tensor], steps: int, guidance: float | None) -> list[Image.Image]:
        images = []
        with progress("rendering", total=len(seeds)) as bar:
            for seed in seeds:
                images.append(sample(self.loaded, prompt, seed, steps=steps, guidance=guidance))
                bar.advance()
        return images
