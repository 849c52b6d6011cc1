"""Scoring a method's images on the toy world: accuracy by the judge, copies, diversity, and summaries.

- Accuracy: the judge (trained on images no generator saw) must return the prompt's digit.
- `novel_accuracy` counts samples that are both correct and not copies (of a training image, nor of a
  reference image for methods that see them: `ref_copy_rate` is the share of samples within
  `copy_threshold` of a reference image at any +-1 pixel shift).
- For methods that report their image after chosen iterations: accuracy after N iterations and the
  iterations needed to first draw the right digit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rarecli.toyworld import DIGIT_WORDS
from rarecli.toyworld.data import to_gray
from rarecli.toyworld.world import ToyWorld, diversity

if TYPE_CHECKING:
    from PIL import Image


def score_images(world: ToyWorld, digit: int, images: list[Image.Image], with_refs: bool = False) -> dict[str, Any]:

    gray = to_gray(images)
    probs = world.judge.probs(gray)
    pred = probs.argmax(1)
    dist, nearest_digit = world.nearest(gray)
    correct = pred == digit
    copy = dist < world.copy_threshold
    row: dict[str, Any] = {
        "n": len(images),
        "accuracy": float(correct.mean()),
        "mean_prob": float(probs[:, digit].mean()),
        "predicted": {DIGIT_WORDS[k]: int((pred == k).sum()) for k in range(10) if (pred == k).any()},
        "novelty_median": float(np.median(dist)),
        "diversity": diversity(gray),
        "copy_rate": float(copy.mean()),
        "novel_accuracy": float((correct & ~copy).mean()),
        "nearest_train_digit": {
            DIGIT_WORDS[k]: int((nearest_digit == k).sum()) for k in range(10) if (nearest_digit == k).any()
        },
    }
    if with_refs:
        # Reproducing a reference is memorisation too: such a sample is not counted as novel.
        ref_dist = world.ref_distance(digit, gray)
        ref_copy = ref_dist < world.copy_threshold
        row["ref_distance_median"] = float(np.median(ref_dist))
        row["ref_copy_rate"] = float(ref_copy.mean())
        row["novel_accuracy"] = float((correct & ~copy & ~ref_copy).mean())
    return row


def score_trajectory(world: ToyWorld, digit: int, checkpoints: list[dict[int, Image.Image]]) -> dict[str, Any]:
    """Accuracy after each checkpointed iteration, the fraction of seeds judged correct at some
    checkpoint, and the median first such iteration (a later checkpoint may be wrong again: the final
    image's accuracy is the `accuracy` field)."""

    steps = sorted({k for c in checkpoints for k in c})
    by_iter: dict[str, float] = {}
    prob_by_iter: dict[str, float] = {}
    for k in steps:
        imgs = [c[k] for c in checkpoints if k in c]
        probs = world.judge.probs(to_gray(imgs))
        by_iter[str(k)] = float(np.mean(probs.argmax(1) == digit))
        prob_by_iter[str(k)] = float(np.mean(probs[:, digit]))
    first = []
    for c in checkpoints:
        hits = [k for k in sorted(c) if world.judge.predict(c[k])[0] == digit]
        first.append(hits[0] if hits else None)
    reached = [f for f in first if f is not None]
    return {
        "accuracy_by_iteration": by_iter,
        # The judge's mean probability of the right digit: a smoother read of progress than accuracy.
        "mean_prob_by_iteration": prob_by_iter,
        "reached_fraction": len(reached) / len(first),
        "iterations_to_first_correct_median": float(np.median(reached)) if reached else None,
    }


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (honest error bars at 20 seeds a digit)."""

    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise_groups(world: ToyWorld, per_digit: dict[str, Any]) -> dict[str, Any]:

    out: dict[str, Any] = {}
    for group, digits in (("frequent", world.frequent), ("rare", world.rare)):
        rows = [per_digit[DIGIT_WORDS[d]] for d in digits if DIGIT_WORDS[d] in per_digit]
        if not rows:
            continue
        out[group] = {
            key: float(np.mean([r[key] for r in rows]))
            for key in ("accuracy", "novel_accuracy", "copy_rate", "diversity", "seconds_per_image")
        }
        n = sum(r["n"] for r in rows)
        hits = round(sum(r["accuracy"] * r["n"] for r in rows))
        out[group]["accuracy_ci95"] = list(wilson(hits, n))
        out[group]["n"] = n
        for key in ("iterations_mean", "seconds_to_result", "seconds_per_iteration", "ref_copy_rate"):
            values = [r[key] for r in rows if key in r]
            if values:
                out[group][key] = float(np.mean(values))
        curves = [r["accuracy_by_iteration"] for r in rows if "accuracy_by_iteration" in r]
        if curves and len(curves) == len(rows):
            common = sorted(set.intersection(*(set(c) for c in curves)), key=int)
            out[group]["accuracy_by_iteration"] = {k: float(np.mean([c[k] for c in curves])) for k in common}
    return out


def iterations_to_reach(report: dict[str, Any], group: str = "rare") -> dict[str, dict[str, int | None]]:
    """For methods A and B with accuracy-by-iteration curves: the fewest iterations after which A's mean
    `group` accuracy is at least B's final accuracy (None: never within A's budget)."""
    methods = report["methods"]
    curves = {
        name: {int(k): v for k, v in m[group]["accuracy_by_iteration"].items()}
        for name, m in methods.items()
        if group in m and "accuracy_by_iteration" in m[group]
    }
    out: dict[str, dict[str, int | None]] = {}
    for a, curve in curves.items():
        out[a] = {}
        for b in curves:
            target = methods[b][group]["accuracy"]
            hits = [k for k in sorted(curve) if curve[k] >= target - 1e-9]
            out[a][b] = hits[0] if hits else None
    return out
