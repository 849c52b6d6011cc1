"""The toy world's data: scikit-learn's `load_digits`, split once by a fixed seed into disjoint roles.

Per digit (about 180 images each), after a seeded shuffle:
- `judge_test`: held out from every model; measures the judge itself;
- `judge_train`: trains the judge only;
- the rest is the generator pool. Frequent digits put all of it into the diffusion training set. Rare
  digits put `rare_counts[d]` (<= 5) images into it, `n_refs` more become the reference images that
  SeedSelect gets, and the remainder is seen by CLIP only (CLIP knows rare concepts that the generator
  barely saw, like web CLIP and Stable Diffusion).
- `clip_train`: a balanced slice of the generator pool minus the references (the same count per digit).

Images are the digits at their native 8x8 resolution, scaled to [0, 1], white strokes on black (as RGB
for the pipeline and CLIP). Upsampling would add pixels but no information, and costs 4x on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

IMAGE_SIZE = 8


@dataclass(frozen=True)
class SplitSpec:
    seed: int = 0
    frequent: tuple[int, ...] = (0, 1, 2, 3, 4)
    # Distinct training images of each rare digit (the rest of its pool is never shown to the generator).
    rare_counts: dict[int, int] = field(default_factory=lambda: {5: 5, 6: 4, 7: 3, 8: 2, 9: 1})
    n_refs: int = 5
    judge_train: int = 45
    judge_test: int = 25

    @property
    def rare(self) -> tuple[int, ...]:
        return tuple(sorted(self.rare_counts))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rare_counts"] = {str(k): v for k, v in self.rare_counts.items()}
        return out


@dataclass
class Split:
    spec: SplitSpec
    diffusion_train: list[int]
    judge_train: list[int]
    judge_test: list[int]
    clip_train: list[int]
    refs: dict[int, list[int]]
    unused: list[int]

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "indices_into_load_digits": {
                "diffusion_train": self.diffusion_train,
                "judge_train": self.judge_train,
                "judge_test": self.judge_test,
                "clip_train": self.clip_train,
                "refs": {str(k): v for k, v in self.refs.items()},
            },
        }


def load() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 [N, 8, 8] in [0, 1] and their int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images.astype(np.float32) / 16.0), digits.target.astype(np.int64)


def make_split(labels: np.ndarray, spec: SplitSpec) -> Split:

    rng = np.random.default_rng(spec.seed)
    diffusion, judge_train, judge_test, clip_pool, unused = [], [], [], {}, []
    refs: dict[int, list[int]] = {}
    for digit in range(10):
        idx = [int(i) for i in rng.permutation(np.flatnonzero(labels == digit))]
        judge_test += idx[: spec.judge_test]
        judge_train += idx[spec.judge_test : spec.judge_test + spec.judge_train]
        pool = idx[spec.judge_test + spec.judge_train :]
        if digit in spec.rare_counts:
            n = spec.rare_counts[digit]
            diffusion += pool[:n]
            refs[digit] = pool[n : n + spec.n_refs]
            clip_pool[digit] = pool[:n] + pool[n + spec.n_refs :]
        else:
            diffusion += pool
            clip_pool[digit] = pool
    per_class = min(len(v) for v in clip_pool.values())
    clip_train = [i for digit in range(10) for i in clip_pool[digit][:per_class]]
    used = set(diffusion) | set(judge_train) | set(judge_test) | set(clip_train)
    used |= {i for v in refs.values() for i in v}
    unused = sorted(set(range(len(labels))) - used)
    return Split(spec, diffusion, judge_train, judge_test, clip_train, refs, unused)


def shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of [B, C, H, W] by a random whole number of pixels (zeros come in)."""
    import torch

    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def degrade(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur, contrast and noise on [B, 1|3, H, W] in [0, 1]: generated images are softer and
    noisier than the data, and the judge and CLIP must not be fooled by that alone."""
    import torch

    b = x.shape[0]
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
    c = x.shape[1]
    blurred = torch.nn.functional.conv2d(x, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
    mix = 0.6 * torch.rand(b, 1, 1, 1, generator=generator)
    x = x + mix * (blurred - x)
    gain = 0.7 + 0.5 * torch.rand(b, 1, 1, 1, generator=generator)
    x = x * gain + 0.05 * torch.randn(x.shape, generator=generator) * torch.rand(b, 1, 1, 1, generator=generator)
    return x.clamp(0, 1)


def to_pil(gray: np.ndarray) -> Image.Image:
    """An [8, 8] array in [0, 1] as an RGB PIL image (the pipeline's and CLIP's format)."""

    arr = (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(np.stack([arr] * 3, axis=-1), mode="RGB")


def to_gray(images: list[Image.Image] | Image.Image) -> np.ndarray:
    """PIL images of any size or mode -> float32 [B, 8, 8] grey in [0, 1] (area-resized)."""

    if isinstance(images, Image.Image):
        images = [images]
    out = []
    for image in images:
        g = image.convert("L")
        if g.size != (IMAGE_SIZE, IMAGE_SIZE):
            g = g.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
        out.append(np.asarray(g, dtype=np.float32) / 255.0)
    return np.stack(out)
