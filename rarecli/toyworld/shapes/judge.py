"""The shapes world's judge: a CNN with two heads, colour and shape, trained on balanced procedurally
drawn single objects (every size it meets, two-object crops included) with a seed no other part uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rarecli.toyworld.shapes import data
from rarecli.toyworld.train import cosine_lr, set_lr


@dataclass
class JudgeHyper:
    seed: int = 11
    steps: int = 700
    batch: int = 64
    lr: float = 2e-3


def to_tensor(images: list[np.ndarray]):
    """[H, W, 3] images in [0, 1] as a [B, 3, H, W] float tensor."""
    import torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def judge_module(channels: tuple[int, int, int] = (24, 48, 64)):
    """A CNN with two heads, colour and shape (8 logits: 4 + 4)."""
    from torch import nn

    c1, c2, c3 = channels
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(c3 * 4, 64), nn.ReLU(), nn.Linear(64, len(data.COLOURS) + len(data.SHAPES)),
    )  # fmt: skip


def judge_batch(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Balanced single objects of every size the judge will meet (crops of two-object images included),
    softened now and then like a generated image."""
    images, colours, shapes = [], [], []
    for _ in range(n):
        colour, shape = data.balanced_pair(rng)
        side = rng.uniform(12, 28)
        c = data.SIZE / 2
        image = data.draw([data.ShapesItem(colour, shape, c + rng.uniform(-4, 4), c + rng.uniform(-4, 4), side)], rng)
        if rng.random() < 0.5:
            k = np.ones((3, 3), dtype=np.float32) / 9
            pad = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
            blurred = sum(pad[i : i + data.SIZE, j : j + data.SIZE] * k[i, j] for i in range(3) for j in range(3))
            image = image + rng.uniform(0, 0.8) * (blurred - image)
        images.append(image.astype(np.float32))
        colours.append(data.COLOURS.index(colour))
        shapes.append(data.SHAPES.index(shape))
    return images, colours, shapes


def train_judge(hp: JudgeHyper) -> tuple[Any, dict[str, Any]]:
    import torch

    torch.manual_seed(hp.seed)
    rng = np.random.default_rng(hp.seed)
    model = judge_module()
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=1e-4)
    model.train()
    nc = len(data.COLOURS)
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
        images, colours, shapes = judge_batch(rng, hp.batch)
        logits = model(to_tensor(images))
        loss = torch.nn.functional.cross_entropy(logits[:, :nc], torch.tensor(colours)) + torch.nn.functional.cross_entropy(
            logits[:, nc:], torch.tensor(shapes)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    test_rng = np.random.default_rng(hp.seed + 1000)  # held out: never drawn in training
    images, colours, shapes = judge_batch(test_rng, 800)
    with torch.inference_mode():
        logits = model(to_tensor(images))
    colour_acc = float((logits[:, :nc].argmax(-1).numpy() == np.array(colours)).mean())
    shape_acc = float((logits[:, nc:].argmax(-1).numpy() == np.array(shapes)).mean())
    return model, {"held_out_colour_accuracy": colour_acc, "held_out_shape_accuracy": shape_acc, "test_size": 800}
