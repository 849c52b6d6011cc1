"""DDIM inversion: the seed z_T from which DDIM would (approximately) regenerate a given image.

NAO-SeedSelect (Samuel et al., "Norm-guided latent space exploration for text-to-image generation",
NeurIPS 2023, arXiv 2306.08687, building on SeedSelect, AAAI 2024, arXiv 2304.14530) starts from the
NAO centroid of the references' inverted seeds. As in the authors' code: the image's VAE posterior
mean (x scaling factor), then 50 deterministic DDIM steps run backwards at guidance 1, the UNet
conditioned on the prompt and evaluated at the step's target timestep on the current latent
(Mokady et al.'s null-text-inversion `next_step`).

Inverted seeds are cached under `<rare cache>/inversion/`, one safetensors file per image, keyed by
the SHA-256 of: the model (id, source, location, revision; for local folders the size and mtime of
the UNet and VAE weights), the image file's SHA-256, the prompt, the image size and the inversion
settings (steps, guidance, dtype, device type). Nothing is ever written into the user's reference
folder (the authors cache there, and never invalidate).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.errors import InputError
from rarecli.io.atomic import cache_write
from rarecli.log import info, warn
from rarecli.methods.ddim import DdimSchedule, autocast_for, ddim_update, encode_images, encode_text, predict
from rarecli.methods.seedselect.references import fit
from rarecli.paths import cache_dir
from rarecli.seeds.files import load_seed, save_seed

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.loading import LoadedPipeline, ModelRef
    from rarecli.methods.ddim import TextConditioning
    from rarecli.methods.seedselect.references import Reference

# Bump when the inversion maths change: old cache entries then stop matching.
INVERSION_VERSION = 1


@dataclass(frozen=True)
class InversionSettings:
    steps: int = 50
    guidance: float = 1.0


def invert_latents(
    loaded: LoadedPipeline, latents: torch.Tensor, text: TextConditioning, steps: int = 50
) -> torch.Tensor:
    """Run DDIM backwards from clean latents (B, C, h, w; scaled like the UNet's) to seeds z_T."""
    import torch

    schedule = DdimSchedule.from_pipeline(loaded.pipe, steps)
    x = latents.to(loaded.manager.device, torch.float32)
    with torch.no_grad():
        for i in reversed(range(len(schedule))):
            with autocast_for(loaded):
                out = predict(loaded, x, schedule.timesteps[i], text)
            # The forward step maps alpha_bar(t_i) -> alpha_bar(t_prev); inversion goes the other way.
            x = ddim_update(x, out, schedule.alphas_prev[i], schedule.alphas[i], schedule.prediction_type)
    return x / schedule.init_noise_sigma


def model_fingerprint(ref: ModelRef) -> dict[str, Any]:
    """What identifies the weights: the revision for Hub and embedded models, file stats for local folders."""
    out: dict[str, Any] = {"name": ref.name, "source": ref.source, "location": ref.location, "revision": ref.revision}
    if ref.source == "local":
        stats = []
        for sub in ("unet", "vae"):
            folder = Path(ref.location) / sub
            if folder.is_dir():
                for f in sorted(folder.iterdir()):
                    if f.suffix in (".safetensors", ".bin"):
                        st = f.stat()
                        stats.append([f"{sub}/{f.name}", st.st_size, st.st_mtime_ns])
        out["weights"] = stats
    return out


def cache_key(loaded: LoadedPipeline, image_sha256: str, prompt: str, hw: tuple[int, int], settings: InversionSettings):
    data = {
        "version": INVERSION_VERSION,
        "model": model_fingerprint(loaded.ref),
        "image": image_sha256,
        "prompt": prompt,
        "latent_hw": list(hw),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "dtype": loaded.manager.dtype,
        "device": loaded.manager.device.split(":")[0],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), data


def cache_folder() -> Path:

    return cache_dir() / "inversion"


# An inverted seed is Gaussian-like noise: its values are within a few standard deviations; a cache entry
# far outside that was not written by this inversion.
MAX_ABS_INVERTED = 50.0


def _cached(path: Path, shape: tuple[int, ...], data: dict[str, Any]) -> Any:
    """A cached inverted seed, or None (and the entry removed) when it is not what this key stores: not a
    seed file, another shape, non-finite or implausible values, or metadata of another key."""
    try:
        loaded = load_seed(path)
    except InputError:
        loaded = None
    reason = None
    if loaded is None:
        reason = "not a readable seed file"
    elif tuple(loaded.tensor.shape) != tuple(shape):
        reason = f"shape {tuple(loaded.tensor.shape)}, expected {tuple(shape)}"
    elif float(loaded.tensor.abs().max()) > MAX_ABS_INVERTED:
        reason = "values far outside an inverted seed's range"
    elif any(loaded.metadata.get(k) != v and str(loaded.metadata.get(k)) != str(v) for k, v in data.items()):
        reason = "written for another image, prompt, model or settings"
    if reason is None:
        return loaded.tensor
    warn(f"inversion cache entry {path.name} is unusable ({reason}); inverting again")
    path.unlink(missing_ok=True)
    return None


def _store(folder: Path, key: str, z: Any, data: dict[str, Any]) -> None:
    path = folder / f"{key}.safetensors"
    try:
        save_seed(path, z, {"kind": "ddim-inversion", **data})
    except FileExistsError:
        if not path.is_file():  # not another process's entry for the same image: a file where the folder goes
            raise


def invert_references(
    loaded: LoadedPipeline,
    refs: list[Reference],
    prompt: str,
    latent_hw: tuple[int, int],
    settings: InversionSettings = InversionSettings(),
    use_cache: bool = True,
) -> torch.Tensor:
    """Inverted seeds (k, C, h, w) of the reference images, from the cache where possible."""
    import torch

    folder = cache_folder()
    keys = [cache_key(loaded, r.sha256, prompt, latent_hw, settings) for r in refs]
    seeds: list[torch.Tensor | None] = [None] * len(refs)
    if use_cache:
        channels = loaded.pipe.unet.config.in_channels
        for i, (key, data) in enumerate(keys):
            path = folder / f"{key}.safetensors"
            if path.is_file():
                seeds[i] = _cached(path, (channels, *latent_hw), data)
    todo = [i for i, s in enumerate(seeds) if s is None]
    if todo:
        info(f"Inverting {len(todo)} reference image(s) ({settings.steps} DDIM steps, guidance {settings.guidance:g})")
        text = encode_text(loaded, prompt, settings.guidance)
        f = loaded.pipe.vae_scale_factor
        for i in todo:
            image = fit(refs[i].image, latent_hw[0] * f, latent_hw[1] * f)
            latent = encode_images(loaded, image, generator=None)  # posterior mean, as the authors
            z = invert_latents(loaded, latent, text, settings.steps)[0].cpu()
            seeds[i] = z
            if use_cache:
                key, data = keys[i]
                cache_write("inverted seeds", lambda key=key, z=z, data=data: _store(folder, key, z, data))
    return torch.stack([s.to(torch.float32) for s in seeds])
