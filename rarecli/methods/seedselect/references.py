"""Reference images for SeedSelect: reading a folder, fitting images to the model, and the targets.

SeedSelect (Samuel et al., AAAI 2024, arXiv 2304.14530) matches a generated image to k reference
images of the rare concept: in CLIP space (the centroid of the references' embeddings) and in the
VAE's latent space (the mean of their latents). Both are computed here once per run for every
reference; a bootstrap subset (for several images) then only averages rows.

What the folder may hold:
- every file rare can decode as an image (PNG, JPEG, WebP, BMP, GIF, TIFF), in name order; other
  files, and corrupt or truncated images, are skipped with a warning as long as one valid image
  remains (the authors' script crashes on a stray file and silently keeps only `.JPEG`);
- any size or mode: palette, grey, 16-bit and alpha images become 8-bit RGB (alpha over white). For
  the VAE, each image is resized (bicubic) so its short side matches the model's resolution and then
  centre-cropped, so aspect ratios are kept rather than squashed to a square; for CLIP, the encoder's
  own short-side resize and centre crop apply (the same path generated images take).
All references are used (the authors' code keeps two, chosen by directory order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from rarecli.backbones.clip import to_tensor
from rarecli.errors import InputError
from rarecli.io.hashing import file_sha256
from rarecli.io.images import read_image_folder
from rarecli.log import warn
from rarecli.methods.ddim import encode_images

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rarecli.backbones.clip import ClipEncoder
    from rarecli.backbones.loading import LoadedPipeline


# References are fitted to the model's resolution (1024 at most) and CLIP's (224): a JPEG is decoded no
# larger than twice this, which keeps a 50 MP photo from costing hundreds of megabytes.
REFERENCE_SIDE = 1024


@dataclass
class Reference:
    path: Path
    sha256: str
    image: Image.Image

    def to_meta(self) -> dict[str, str]:
        return {"file": self.path.name, "sha256": self.sha256}


def load_references(folder: Path | None) -> list[Reference]:
    """Every readable image in `folder`; InputError when there is none (nothing else is read)."""

    if folder is None:
        raise InputError(
            "--refs is required for this method",
            hint="pass a folder with a few images of the concept, e.g. --refs refs/",
        )
    hint = "put a few PNG or JPEG images of the concept in the folder"
    try:
        images, skipped = read_image_folder(Path(folder), max_side=REFERENCE_SIDE)
    except InputError as exc:
        raise InputError(exc.message, hint=exc.hint or "--refs takes a folder of images of the concept") from exc
    if not images:
        if not skipped:
            raise InputError(f"the reference folder is empty: {folder}", hint=hint)
        reasons = "; ".join(f"{p.name}: {why}" for p, why in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise InputError(f"no readable image in {folder}: {reasons}{more}", hint=hint)
    for path, why in skipped:
        warn(f"skipping reference {path.name}: {why}")
    return [Reference(path, file_sha256(path), image) for path, image in images]


def fit(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """Resize (bicubic, antialiased) so the image covers height x width, centre-crop; (1, 3, H, W) in [0, 1]."""

    fitted = ImageOps.fit(image.convert("RGB"), (width, height), method=PILImage.Resampling.BICUBIC)
    return to_tensor(fitted)


def bootstrap_subsets(k: int, n: int, seed: int) -> list[list[int]]:
    """n multisets of reference indices: the first is every reference once; each further one is a
    bootstrap resample (k draws with replacement), as the paper does to get several images, drawn
    from `seed` so a run is reproducible."""

    subsets = [list(range(k))]
    for i in range(1, n):
        rng = np.random.default_rng([int(seed), i])
        subsets.append(sorted(int(j) for j in rng.integers(0, k, size=k)))
    return subsets


def describe_subset(refs: list[Reference], subset: list[int]) -> list[dict[str, Any]]:
    counts = Counter(subset)
    return [{**refs[j].to_meta(), "count": c} for j, c in sorted(counts.items())]


@dataclass
class ReferenceTargets:
    """Per-reference CLIP embeddings and VAE latents, computed once; subsets only average rows."""

    clip: torch.Tensor  # (k, D), each row L2-normalised
    latents: torch.Tensor  # (k, C, h, w), scaled like the UNet's latents

    def clip_centroid(self, subset: list[int]) -> torch.Tensor:
        """Normalised mean of the subset's normalised embeddings (repeats count)."""
        import torch.nn.functional as F

        return F.normalize(self.clip[subset].mean(0), dim=-1)

    def latent_mean(self, subset: list[int]) -> torch.Tensor:
        return self.latents[subset].mean(0)


def compute_targets(
    loaded: LoadedPipeline,
    clip: ClipEncoder,
    refs: list[Reference],
    latent_hw: tuple[int, int],
    seed: int,
    batch: int = 4,
) -> ReferenceTargets:
    """CLIP embeddings and VAE posterior samples (x scaling factor, as the authors) of every reference.

    The posterior noise comes from a CPU generator seeded with `seed`, so a run is reproducible.
    """
    import torch

    f = loaded.pipe.vae_scale_factor
    height, width = latent_hw[0] * f, latent_hw[1] * f
    embeddings = clip.encode_pil([r.image for r in refs])
    generator = torch.Generator("cpu").manual_seed(int(seed))
    latents = []
    for start in range(0, len(refs), batch):
        chunk = torch.cat([fit(r.image, height, width) for r in refs[start : start + batch]])
        latents.append(encode_images(loaded, chunk, generator))
    return ReferenceTargets(embeddings.to(loaded.manager.device), torch.cat(latents))
