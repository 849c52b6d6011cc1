"""The toy world as the evaluation sees it: the pipeline, the judge, and what novelty is measured against.

- Novelty: the distance of a sample to its nearest diffusion-training image (each at every +-1 pixel
  shift, as training saw them). A sample closer than `copy_threshold` counts as a copy. The threshold is
  the 5th percentile of the same distance for held-out real digits passed through the pipeline's own
  VAE (so the autoencoder's blur does not make copies look new): 5% of genuinely new handwriting is
  that close, so a copy rate far above 5% means memorisation.
- Diversity: the mean pairwise distance between images of one digit; held-out real digits (through the
  VAE) give the scale a method's samples are compared with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rarecli.backbones.loading import LoadedPipeline, load_pipeline
from rarecli.errors import RareError
from rarecli.io.images import read_image_folder
from rarecli.methods import registry
from rarecli.runtime.device import DeviceManager
from rarecli.toyworld import DIGIT_WORDS, MANIFEST, REFS_DIR, WEIGHTS_DIR, data
from rarecli.toyworld.data import to_gray
from rarecli.toyworld.judge import Judge, load_judge

if TYPE_CHECKING:
    from PIL import Image

COPY_PERCENTILE = 5.0


@dataclass
class ToyWorld:
    loaded: LoadedPipeline
    judge: Judge
    manifest: dict[str, Any]
    train_gray: np.ndarray  # [N * shifts, 64] diffusion-training images as the UNet saw them
    train_labels: np.ndarray
    copy_threshold: float
    real_distance: dict[int, float]  # per digit: median nearest-training distance of held-out real digits
    real_accuracy: dict[int, float]  # per digit: judge accuracy on held-out real digits
    vae_accuracy: dict[int, float]  # ... on the same digits after a VAE round trip
    real_diversity: dict[int, float]  # ... their mean pairwise distance (after the VAE round trip)
    refs_dir: Path

    @property
    def frequent(self) -> list[int]:
        return list(self.manifest["frequent"])

    @property
    def rare(self) -> list[int]:
        return list(self.manifest["rare"])

    def refs_folder(self, digit: int) -> Path:
        return self.refs_dir / DIGIT_WORDS[digit]

    def refs(self, digit: int) -> list[Image.Image]:

        images, _ = read_image_folder(self.refs_folder(digit))
        return [im for _, im in images]

    def ref_distance(self, digit: int, gray: np.ndarray) -> np.ndarray:
        """Distance of each [B, 8, 8] image to the nearest reference image of `digit` (any +-1 shift)."""

        refs = shifted(to_gray(self.refs(digit))).astype(np.float64)
        flat = gray.reshape(len(gray), -1).astype(np.float64)
        d2 = (flat**2).sum(1)[:, None] - 2 * flat @ refs.T + (refs**2).sum(1)[None]
        return np.sqrt(np.maximum(d2.min(1), 0))

    def nearest(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and digit of, the nearest diffusion-training image, for [B, 8, 8] grey images."""

        flat = gray.reshape(len(gray), -1).astype(np.float64)
        train = self.train_gray.astype(np.float64)
        d2 = (flat**2).sum(1)[:, None] - 2 * flat @ train.T + (train**2).sum(1)[None]
        j = d2.argmin(1)
        return np.sqrt(np.maximum(d2[np.arange(len(flat)), j], 0)), self.train_labels[j // 9]


def shifted(gray: np.ndarray) -> np.ndarray:
    """Every image at the nine +-1 pixel shifts (zeros come in), flattened: [N * 9, 64]."""

    n, h, w = gray.shape
    padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)))
    out = np.stack([padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
    return out.reshape(n * 9, h * w)


def vae_round_trip(loaded: LoadedPipeline, gray: np.ndarray) -> np.ndarray:
    """Encode (posterior mean) and decode grey [B, 8, 8] images through the pipeline's VAE."""
    import torch

    vae = loaded.pipe.vae
    x = torch.from_numpy(np.asarray(gray, dtype=np.float32))[:, None].expand(-1, 3, -1, -1) * 2 - 1
    with torch.inference_mode():
        x = x.to(loaded.manager.device, vae.dtype)
        out = vae.decode(vae.encode(x).latent_dist.mean).sample
    return ((out.float().mean(1) + 1) / 2).clamp(0, 1).cpu().numpy()


def load_world(manager: DeviceManager, folder: Path | None = None) -> ToyWorld:
    """The packaged world (or one built elsewhere by `build --out folder`), with its novelty references."""

    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    manifest_path = folder / MANIFEST.name
    if not manifest_path.is_file():
        raise RareError(f"no toy world in {folder} (manifest.json missing)", hint="run `make toy-world`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model = "toy-digits" if folder.resolve() == WEIGHTS_DIR.resolve() else str(folder / "toy-digits")
    loaded = load_pipeline(model, manager, families=registry.SEEDSELECT.families, purpose="the toy evaluation")
    judge = load_judge(folder / "judge")
    images, labels = data.load()
    split = manifest["split"]["indices_into_load_digits"]
    train = np.asarray(split["diffusion_train"])
    world = ToyWorld(
        loaded=loaded,
        judge=judge,
        manifest=manifest,
        train_gray=shifted(images[train]),
        train_labels=labels[train],
        copy_threshold=0.0,
        real_distance={},
        real_accuracy={},
        vae_accuracy={},
        real_diversity={},
        refs_dir=folder / REFS_DIR.name,
    )
    held = np.asarray(split["judge_test"])
    real = vae_round_trip(loaded, images[held])
    dist, _ = world.nearest(real)
    world.copy_threshold = float(np.percentile(dist, COPY_PERCENTILE))
    raw_pred = judge.predict(images[held])
    vae_pred = judge.predict(real)
    for d in range(10):
        m = labels[held] == d
        world.real_distance[d] = float(np.median(dist[m]))
        world.real_accuracy[d] = float(np.mean(raw_pred[m] == d))
        world.vae_accuracy[d] = float(np.mean(vae_pred[m] == d))
        world.real_diversity[d] = diversity(real[m])
    return world


def diversity(gray: np.ndarray) -> float:
    """Mean pairwise distance between [B, 8, 8] images in [0, 1]: near 0 when a method draws one image
    again and again (as a start point shared by every seed could), whatever the judge says."""

    flat = gray.reshape(len(gray), -1).astype(np.float64)
    if len(flat) < 2:
        return 0.0
    d = np.sqrt(np.maximum(((flat[:, None] - flat[None]) ** 2).sum(-1), 0))
    return float(d[np.triu_indices(len(flat), 1)].mean())
