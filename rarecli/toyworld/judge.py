"""The toy world's judge: a small CNN digit classifier, trained only on the `judge_train` split (no image
a generator or CLIP saw), used only for evaluation. Weights are safetensors plus a JSON config.

It reads any image (converted to grey, box-resized to 8x8, white strokes on black) and returns the
digit probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rarecli.errors import RareError
from rarecli.toyworld import DIGIT_WORDS, JUDGE_DIR
from rarecli.toyworld.data import to_gray

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class JudgeConfig:
    image_size: int = 8
    channels: tuple[int, int, int] = (16, 32, 64)
    hidden: int = 64
    num_classes: int = 10
    arch: str = "rare-toy-judge-cnn"


def build_module(config: JudgeConfig) -> torch.nn.Module:
    """conv-conv-pool-conv-mlp on 8x8 inputs; about 0.1 M parameters."""
    from torch import nn

    c1, c2, c3 = config.channels
    side = config.image_size // 2
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(c3 * side * side, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, config.num_classes),
    )


class Judge:
    """A loaded judge: `probs(images)` -> [B, 10], `predict(images)` -> digits."""

    def __init__(self, module: torch.nn.Module, config: JudgeConfig) -> None:
        self.module = module.eval()
        self.config = config

    def probs(self, images: list[Image.Image] | Image.Image | np.ndarray) -> np.ndarray:
        import torch

        gray = images if isinstance(images, np.ndarray) else to_gray(images)
        x = torch.from_numpy(np.asarray(gray, dtype=np.float32))[:, None]
        with torch.inference_mode():
            return torch.softmax(self.module(x), dim=-1).numpy()

    def predict(self, images: list[Image.Image] | Image.Image | np.ndarray) -> np.ndarray:
        return self.probs(images).argmax(axis=-1)


def load_judge(folder: Path | None = None) -> Judge:
    """Load the judge from `folder` (default: the packaged one). Never unpickles."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else JUDGE_DIR
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise RareError(f"no toy judge in {folder}", hint="run `make toy-world` to build the toy world")
    raw = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    config = JudgeConfig(
        image_size=raw["image_size"],
        channels=tuple(raw["channels"]),
        hidden=raw["hidden"],
        num_classes=raw["num_classes"],
        arch=raw["arch"],
    )
    module = build_module(config)
    module.load_state_dict(load_file(str(folder / WEIGHTS)))
    return Judge(module, config)


def digit_caption(folder: Path | None = None) -> Callable[[str, Image.Image], str]:
    """A caption for the side-by-side picture: the folder's name and the digit the judge sees."""
    judge = load_judge(folder)

    def caption(name: str, image: Image.Image) -> str:
        return f"{name}: {DIGIT_WORDS[int(judge.predict([image])[0])]}"

    return caption
