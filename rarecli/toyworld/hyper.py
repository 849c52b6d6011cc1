"""The toy world's hyper-parameters, one dataclass per trained part (all recorded in manifest.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rarecli.toyworld.data import SplitSpec

# Templates CLIP is trained with: the generator's own prompt plus a few others, so the text tower
# learns the number words rather than one fixed string.
CLIP_TEMPLATES = (
    "a handwritten digit {}",
    "the digit {}",
    "a picture of the number {}",
    "a handwritten {}",
    "{}",
)


@dataclass
class JudgeHyper:
    seed: int = 1
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    shift: int = 1


@dataclass
class ClipHyper:
    seed: int = 2
    steps: int = 800
    batch: int = 100
    lr: float = 2e-3
    text_hidden: int = 32
    vision_hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 2
    projection: int = 32
    shift: int = 1


@dataclass
class VaeHyper:
    seed: int = 3
    steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-4
    channels: tuple[int, int] = (16, 32)
    latent_channels: int = 4


@dataclass
class UnetHyper:
    seed: int = 4
    steps: int = 1200
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    channels: tuple[int, int] = (32, 64)
    layers_per_block: int = 1
    head_dim: int = 8
    uncond_prob: float = 0.1
    # A short run: a 0.999 EMA would still average in the first, poor, thousand steps.
    ema_decay: float = 0.995
    shift: int = 1
    # Sampling weight of one rare-digit image relative to one frequent-digit image. At 1 every image
    # is drawn equally often (a trial with 1,500 steps: 170-850 draws per rare digit) and plain
    # sampling then drew 6, 7 and 9 right 60-95% of the time at guidance 7.5 (the tail barely
    # fails); at 0.25 each rare digit is drawn 35-175 times in all, against ~15,000 per frequent one.
    rare_weight: float = 0.25


@dataclass
class ToyHyper:
    split: SplitSpec = field(default_factory=SplitSpec)
    judge: JudgeHyper = field(default_factory=JudgeHyper)
    clip: ClipHyper = field(default_factory=ClipHyper)
    vae: VaeHyper = field(default_factory=VaeHyper)
    unet: UnetHyper = field(default_factory=UnetHyper)
    # One thread: on a shared 2-core machine OpenMP threads spin-wait on each other (measured 16x
    # slower with 2 threads under load), and a fixed count keeps float reductions reproducible.
    threads: int = 1

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["split"] = self.split.to_json()
        return out
