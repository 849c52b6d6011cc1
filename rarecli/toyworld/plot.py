"""The toy evaluation's picture: accuracy and novel accuracy per digit and method, accuracy against
iterations for the optimisers, and a grid of samples per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rarecli.methods.registry import PLAIN as _PLAIN_SPEC
from rarecli.toyworld import DIGIT_WORDS

PLAIN = _PLAIN_SPEC.name  # the plain-sampling rows: PLAIN and PLAIN-cfgG


def plot(report: dict[str, Any], path: Path) -> Path:
    """Accuracy and copy rate per digit and method, and a grid of samples per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["methods"])
    rare = set(report["world"]["rare"])
    grids = {m: g for m, g in report.get("_grids", {}).items() if g}
    fig = plt.figure(figsize=(max(15, 3.2 * len(grids)), 9.5))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.3, 1.25])
    x = np.arange(10)
    width = 0.8 / max(1, len(methods))
    curves = {
        name: m["rare"]["accuracy_by_iteration"]
        for name, m in report["methods"].items()
        if "accuracy_by_iteration" in m.get("rare", {})
    }
    panels = top.subplots(1, 3 if curves else 2, gridspec_kw={"width_ratios": [2, 2, 1.3] if curves else [1, 1]})
    if curves:
        ax = panels[2]
        for name, curve in curves.items():
            ks = sorted(curve, key=int)
            ax.plot([int(k) for k in ks], [curve[k] for k in ks], marker=".", label=name)
        for name, m in report["methods"].items():
            if name.startswith(PLAIN) and "rare" in m:  # the plain-sampling baselines
                ax.axhline(m["rare"]["accuracy"], ls="--", lw=0.8, color="grey")
                ax.annotate(name, (0, m["rare"]["accuracy"]), fontsize=7, color="grey", va="bottom")
        ax.set_xlabel("optimisation iterations")
        ax.set_ylim(0, 1.05)
        ax.set_title("rare-digit accuracy vs iterations")
        ax.legend(fontsize=7)
    for ax, key, title in zip(
        panels[:2],
        ("accuracy", "novel_accuracy"),
        ("judge accuracy", "correct and not a copy"),
        strict=True,
    ):
        for i, name in enumerate(methods):
            entry = report["methods"][name]
            per = entry["per_digit"]
            vals = [per.get(w, {}).get(key, np.nan) for w in DIGIT_WORDS]
            groups = ", ".join(f"{g} {entry[g][key]:.2f}" for g in ("frequent", "rare") if g in entry)
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=f"{name} ({groups})")
        ax.set_xticks(x, [f"{d}{'*' if d in rare else ''}" for d in range(10)])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{title} per digit (* = rare)")
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    # A report read back from JSON has no images: the bottom row is left empty then.
    axes = bottom.subplots(1, len(grids), squeeze=False)[0] if grids else []
    for ax, (name, grid) in zip(axes, grids.items(), strict=False):
        digits = sorted(grid)
        cols = max(len(v) for v in grid.values())
        canvas = np.full((len(digits) * 9, cols * 9), 0.5)
        for r, d in enumerate(digits):
            for c, im in enumerate(grid[d]):
                canvas[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = np.asarray(im.convert("L"), dtype=float)[:8, :8] / 255
        ax.imshow(canvas, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_yticks([r * 9 + 3.5 for r in range(len(digits))], [f"{d}{'*' if d in rare else ''}" for d in digits])
        ax.set_xticks([])
        ax.set_title(f"{name}: first {cols} seeds", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
