"""A differentiable DDIM sampler over a Stable Diffusion pipeline's UNet, VAE and scheduler maths.

SeedSelect (Samuel et al., "Generating images of rare concepts using pre-trained diffusion models",
AAAI 2024, arXiv 2304.14530) back-propagates an image loss through the whole denoising loop into the
initial noise. The pipeline's `__call__` runs under `no_grad` and re-encodes the prompt on every call,
so the loop is written here over the pipeline's parts:

- the text embeddings are computed once per run (`encode_text`), not once per iteration;
- each denoising step is one `torch.utils.checkpoint` segment (`checkpoint=True`): autograd keeps only
  the latent entering each step (a few KB) and recomputes one step's UNet activations at a time in the
  backward pass, so memory does not grow with the number of inner steps;
- DDIM with eta = 0 and no x0 clipping (the authors' scheduler: `clip_sample=False`), epsilon or
  v-prediction as the model's scheduler config says, timesteps from diffusers' `DDIMScheduler` built
  from that config so `--inner-steps N` lands on the same timesteps as `DDIMScheduler` in a pipeline;
- mixed precision on CUDA: the UNet runs under `torch.autocast` in the pipeline's dtype while the
  latents, the DDIM update and the seed stay in fp32; the VAE decodes in the dtype the family's
  precision policy gives it (fp32 under fp16: the SD VAE overflows there; bf16 under bf16).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from rarecli.errors import InputError, RareError

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.loading import LoadedPipeline


@dataclass(frozen=True)
class DdimSchedule:
    """DDIM timesteps with the cumulative alphas at each step and at the step it leads to."""

    timesteps: tuple[int, ...]
    alphas: tuple[float, ...]  # alpha_bar(t_i)
    alphas_prev: tuple[float, ...]  # alpha_bar(t_i - stride), or the final alpha at the end
    prediction_type: str
    init_noise_sigma: float

    def __len__(self) -> int:
        return len(self.timesteps)

    @classmethod
    def from_pipeline(cls, pipe: Any, steps: int) -> DdimSchedule:
        from diffusers import DDIMScheduler

        if steps < 1:
            raise InputError(f"inner steps must be >= 1 (got {steps})")
        # Built from the pipeline's own scheduler config (SD2.1-base ships PNDM's; the betas are the
        # same), with SeedSelect's DDIM settings forced: no x0 clipping or thresholding.
        sched = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, thresholding=False)
        sched.set_timesteps(steps)
        stride = sched.config.num_train_timesteps // steps
        acp = sched.alphas_cumprod.double()
        final = float(sched.final_alpha_cumprod)
        ts = [int(t) for t in sched.timesteps]
        alphas = tuple(float(acp[t]) for t in ts)
        prev = tuple(float(acp[t - stride]) if t - stride >= 0 else final for t in ts)
        prediction = sched.config.prediction_type
        if prediction not in ("epsilon", "v_prediction"):
            raise RareError(f"the model's scheduler predicts {prediction!r}; SeedSelect supports epsilon and v")
        return cls(tuple(ts), alphas, prev, prediction, float(sched.init_noise_sigma))


def ddim_update(x: torch.Tensor, model_out: torch.Tensor, a_t: float, a_prev: float, prediction: str) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0): x_t -> x_{t_prev} (Song et al. 2021, eq. 12)."""
    if prediction == "v_prediction":
        x0 = a_t**0.5 * x - (1 - a_t) ** 0.5 * model_out
        eps = a_t**0.5 * model_out + (1 - a_t) ** 0.5 * x
    else:
        x0 = (x - (1 - a_t) ** 0.5 * model_out) / a_t**0.5
        eps = model_out
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps


@dataclass
class TextConditioning:
    """Prompt embeddings (and the empty prompt's, under guidance), computed once per run."""

    cond: torch.Tensor  # (1, L, D)
    uncond: torch.Tensor | None
    guidance: float

    @property
    def cfg(self) -> bool:
        # As diffusers: guidance <= 1 means the conditional prediction alone.
        return self.uncond is not None and self.guidance > 1.0

    def for_batch(self, n: int) -> torch.Tensor:
        import torch

        cond = self.cond.expand(n, -1, -1)
        if not self.cfg:
            return cond
        return torch.cat([self.uncond.expand(n, -1, -1), cond])


def encode_text(loaded: LoadedPipeline, prompt: str, guidance: float) -> TextConditioning:
    import torch

    pipe = loaded.pipe
    cfg = guidance > 1.0
    loaded.check_prompt_length(prompt)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(prompt, loaded.manager.device, 1, cfg, negative_prompt=None)
    return TextConditioning(cond.detach(), uncond.detach() if cfg else None, float(guidance))


def autocast_for(loaded: LoadedPipeline) -> contextlib.AbstractContextManager:
    """autocast in the pipeline's half dtype on CUDA (and on the CPU under the tests' switch); nothing
    elsewhere (CPU runs fp32, or the user's explicit dtype through the weights themselves)."""
    import torch

    manager = loaded.manager
    if manager.mixed_precision:
        return torch.autocast(manager.autocast_device, dtype=manager.torch_dtype)
    return contextlib.nullcontext()


def predict(loaded: LoadedPipeline, x: torch.Tensor, t: int, text: TextConditioning) -> torch.Tensor:
    """The guided model output for latents `x` at timestep `t`, in fp32."""
    import torch

    unet = loaded.pipe.unet
    inp = torch.cat([x, x]) if text.cfg else x
    out = unet(inp.to(loaded.unet_dtype), t, encoder_hidden_states=text.for_batch(x.shape[0])).sample.float()
    if text.cfg:
        uncond, cond = out.chunk(2)
        out = uncond + text.guidance * (cond - uncond)
    return out


def checkpointed(fn: Callable[..., torch.Tensor], enabled: bool) -> Callable[..., torch.Tensor]:
    if not enabled:
        return fn
    from torch.utils.checkpoint import checkpoint

    def run(*args: Any) -> torch.Tensor:
        # Reentrant: its forward runs under no_grad, while the non-reentrant variant calls a Python
        # hook on every saved tensor; on the CPU (tiny-sd, 20 steps) the denoising loop then cost ~1.6x
        # its unchecked time against ~1.3x here, for identical gradients (a test checks them).
        # Both restore the autocast state on recompute. The latent input always requires grad here,
        # which reentrant checkpointing needs; no RNG is drawn in a step (eta = 0), so none is kept.
        return checkpoint(fn, *args, use_reentrant=True, preserve_rng_state=False)

    return run


def denoise_step(
    loaded: LoadedPipeline, x: torch.Tensor, i: int, text: TextConditioning, schedule: DdimSchedule
) -> torch.Tensor:
    """The latent after DDIM step `i` of `schedule` from `x`."""
    with autocast_for(loaded):
        out = predict(loaded, x, schedule.timesteps[i], text)
    return ddim_update(x, out, schedule.alphas[i], schedule.alphas_prev[i], schedule.prediction_type)


def trajectory(
    loaded: LoadedPipeline,
    seed: torch.Tensor,
    text: TextConditioning,
    schedule: DdimSchedule,
    *,
    checkpoint: bool = True,
    keep_last: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (step index, latent after that step) along the DDIM trajectory from `seed` (B, C, h, w).

    Differentiable with respect to `seed` when it requires grad; each step is a checkpoint segment,
    except the last `keep_last` steps, whose activations are kept (each kept step saves one recomputed
    UNet forward in backward, and costs one step's activations of memory).
    """

    def step(x: torch.Tensor, i: int) -> torch.Tensor:
        return denoise_step(loaded, x, i, text, schedule)

    import torch

    # Without a gradient to compute nothing is kept for backward, so there is nothing to checkpoint.
    run = checkpointed(step, checkpoint and seed.requires_grad and torch.is_grad_enabled())
    first_kept = len(schedule) - max(0, keep_last)
    x = seed.float() * schedule.init_noise_sigma
    for i in range(len(schedule)):
        x = run(x, i) if i < first_kept else step(x, i)
        yield i, x


def decode(loaded: LoadedPipeline, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents to images in [0, 1] (B, 3, H, W), returned in fp32; differentiable. The VAE
    runs in its own dtype (the precision policy's)."""
    vae = loaded.pipe.vae
    cfg = vae.config
    z = latents / cfg.scaling_factor
    if getattr(cfg, "shift_factor", None):
        z = z + cfg.shift_factor
    image = vae.decode(z.to(vae.dtype)).sample.float()
    return (image / 2 + 0.5).clamp(0, 1)


def encode_images(loaded: LoadedPipeline, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """VAE latents (scaled like the UNet's) of images in [0, 1]: a posterior sample drawn with a CPU
    `generator`, or the posterior mean when `generator` is None. No grad."""
    import torch

    vae = loaded.pipe.vae
    cfg = vae.config
    with torch.no_grad():
        x = (images * 2 - 1).to(loaded.manager.device, vae.dtype)
        dist = vae.encode(x).latent_dist
        z = dist.mean.float()
        if generator is not None:
            noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device)
            z = z + dist.std.float() * noise
    if getattr(cfg, "shift_factor", None):
        z = z - cfg.shift_factor
    return z * cfg.scaling_factor


def render(loaded: LoadedPipeline, seed: torch.Tensor, text: TextConditioning, schedule: DdimSchedule) -> torch.Tensor:
    """The image(s) in [0, 1] that the optimisation sees for `seed`, without gradients."""
    import torch

    with torch.no_grad():
        x = seed
        for _, latent in trajectory(loaded, seed.to(loaded.manager.device), text, schedule, checkpoint=False):
            x = latent
        return decode(loaded, x)


def to_pil(images: torch.Tensor) -> list:
    """(B, 3, H, W) in [0, 1] -> PIL images, rounded as diffusers does."""
    import torch

    arr = (images.detach().cpu().permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8)
    return [Image.fromarray(a.numpy()) for a in arr]
