"""Does generated data help a classifier learn rare classes? The SeedSelect / NAO augmentation claim,
measured on the toy world (`make eval-toy-augment`).

The long-tailed situation: a classifier (the judge's architecture, trained afresh) sees the frequent
digits' diffusion-training images (about 110 each) and, of each rare digit, only its five reference
images: the "shots". It is tested on the held-out balanced `judge_test` split (25 images per digit),
which no model saw. Rows, for K images added per rare digit:

- `none`: the shots alone;
- `oversample`: the shots repeated to 5 + K per rare digit (the baseline a sceptic asks for first);
- `simple-aug`: the shots plus K copies moved by a random +-1 pixel shift with a little noise;
- `sd`, `seedselect`, `nao-seedselect-half`, `nao-seedselect-whole`: the shots plus the first K images
  `rare augment` wrote for the digit with that method (NAO starts on the half of each path nearer the
  centroid, or on the whole path).

Every row but `none` has the same number of rare training images, and the classifier samples training
images uniformly, so rows differ only in what those images are. Each row is trained from 5 (or more)
seeds; accuracy is reported with a 95% t-interval over them. The images come from `rare augment`
itself (`run_augment`, through the method registry), into OUT/datasets/<row>/, resumable.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rarecli.augment.run import AugmentConfig, run_augment
from rarecli.io.atomic import write_text_replace
from rarecli.io.images import read_image_folder
from rarecli.methods import registry
from rarecli.toyworld import DIGIT_WORDS, MANIFEST, REFS_DIR, data
from rarecli.toyworld.judge import JudgeConfig, build_module
from rarecli.toyworld.train import cosine_lr, say, set_lr

# A row's name -> (`rare augment` method, its options). Batches of 20 use a CPU's cores best.
_PLAIN, _SS, _NAO = registry.PLAIN.name, registry.SEEDSELECT.name, registry.NAO_SEEDSELECT.name
GENERATED = {
    _PLAIN: (_PLAIN, {}),
    _SS: (_SS, {"batch_size": 20}),
    f"{_NAO}-half": (_NAO, {"batch_size": 20, "nao_starts": "half"}),
    f"{_NAO}-whole": (_NAO, {"batch_size": 20, "nao_starts": "whole"}),
}
BASELINES = ("none", "oversample", "simple-aug")
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class AugmentEval:
    out: Path
    ks: tuple[int, ...] = (20, 100)
    classifier_seeds: int = 5
    steps: int = 10  # SeedSelect's inner DDIM steps and plain sampling's steps
    seedselect_iters: int | None = None  # None: the CLI's (30)
    nao_iters: int | None = None  # None: the CLI's (5)
    train_steps: int = 600
    rows: tuple[str, ...] = tuple(GENERATED)
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _interval(values: list[float]) -> dict[str, Any]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None, "values": values}
    half = T_975.get(len(values) - 1, 1.96) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return {"mean": mean, "low": mean - half, "high": mean + half, "values": values}


def _train(x: np.ndarray, y: np.ndarray, seed: int, steps: int):
    """The judge's CNN and recipe (AdamW, cosine schedule, label smoothing), without its on-the-fly
    augmentation, so that rows differ only in their training images."""
    import torch

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_module(JudgeConfig())
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    model.train()
    for step in range(steps):
        set_lr(opt, cosine_lr(step, steps, 3e-3))
        idx = torch.randint(0, len(xt), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def _accuracy(model, x: np.ndarray, y: np.ndarray, digits: list[int]) -> float:
    import torch

    with torch.inference_mode():
        pred = model(torch.from_numpy(x)[:, None]).argmax(-1).numpy()
    mask = np.isin(y, digits)
    return float(np.mean(pred[mask] == y[mask]))


def simple_augment(shots: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k copies of the shots (cycled), each moved by a random +-1 pixel shift, with Gaussian noise (0.05)."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(k):
        image = np.pad(shots[j % len(shots)], 1)
        dy, dx = rng.integers(0, 3, size=2)
        moved = image[dy : dy + 8, dx : dx + 8]
        out.append(np.clip(moved + rng.normal(0, 0.05, moved.shape), 0, 1))
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 8, 8), np.float32)


def _generate(run: AugmentEval, rare: list[int]) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, Any]]:
    """`rare augment` over the rare digits' reference folders, once per generated row (resumable)."""
    kmax = max(run.ks)
    images: dict[str, dict[int, np.ndarray]] = {}
    cost: dict[str, Any] = {}
    for row in run.rows:
        method, options = GENERATED[row]
        options = dict(options)
        iters = {_SS: run.seedselect_iters, _NAO: run.nao_iters}.get(method)
        if iters:
            options["iters"] = iters
        dataset = run.out / "datasets" / row
        say(f"generating {row}: {kmax} images per rare digit")
        started = time.perf_counter()
        result = run_augment(
            AugmentConfig(
                root=REFS_DIR,
                out=dataset,
                method=method,
                per_class=kmax,
                classes=[DIGIT_WORDS[d] for d in rare],
                prompt_template="a handwritten digit {}",
                model="toy-digits",
                steps=run.steps,
                options=options,
                device="cpu",
            )
        )
        seconds = time.perf_counter() - started
        if result.failed:
            raise RuntimeError(f"{row}: {result.failed}")
        cost[row] = {
            "method": method,
            "options": options,
            "seconds_per_rare_digit": seconds / len(rare) if not result.skipped else None,
            "resumed": bool(result.skipped),
            "images_written": len(result.written),
        }
        lines = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
        images[row] = {}
        for d in rare:
            mine = sorted((r for r in lines if r["class"] == DIGIT_WORDS[d]), key=lambda r: r["index"])
            images[row][d] = data.to_gray([Image.open(dataset / r["path"]) for r in mine[:kmax]])
    return images, cost


def run_augment_eval(run: AugmentEval) -> list[Path]:
    import torch

    torch.set_num_threads(run.threads)
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    frequent, rare = list(manifest["frequent"]), list(manifest["rare"])
    split = manifest["split"]["indices_into_load_digits"]
    all_images, labels = data.load()
    train_idx = np.asarray(split["diffusion_train"])
    keep = np.isin(labels[train_idx], frequent)
    x_freq, y_freq = all_images[train_idx][keep], labels[train_idx][keep]
    test = np.asarray(split["judge_test"])
    x_test, y_test = all_images[test], labels[test]
    shots = {}
    for d in rare:
        found, _ = read_image_folder(REFS_DIR / DIGIT_WORDS[d])
        shots[d] = data.to_gray([im for _, im in found])

    generated, cost = _generate(run, rare)

    def training_set(row: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [x_freq], [y_freq]
        for d in rare:
            if row == "none":
                extra = np.zeros((0, 8, 8), np.float32)
            elif row == "oversample":
                extra = shots[d][np.arange(k) % len(shots[d])]
            elif row == "simple-aug":
                extra = simple_augment(shots[d], k, seed=1000 + d)
            else:
                extra = generated[row][d][:k]
            xs += [shots[d], extra]
            ys += [np.full(len(shots[d]) + len(extra), d, np.int64)]
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys)

    rows: list[dict[str, Any]] = []
    plan = [("none", 0)] + [(row, k) for k in run.ks for row in (*BASELINES[1:], *run.rows)]
    for row, k in plan:
        x, y = training_set(row, k)
        rare_acc, freq_acc = [], []
        for s in range(run.classifier_seeds):
            model = _train(x, y, seed=s, steps=run.train_steps)
            rare_acc.append(_accuracy(model, x_test, y_test, rare))
            freq_acc.append(_accuracy(model, x_test, y_test, frequent))
        per_rare = {d: int((y == d).sum()) for d in rare}
        rows.append(
            {
                "row": row,
                "k": k,
                "rare_accuracy": _interval(rare_acc),
                "frequent_accuracy": _interval(freq_acc),
                "rare_training_images_per_digit": per_rare,
                "generation_seconds_per_rare_digit": _cost_at(cost.get(row), k, max(run.ks)),
            }
        )
        say(f"{row:>22} K={k:<3} rare {np.mean(rare_acc):.3f}  frequent {np.mean(freq_acc):.3f}")
    result = {
        "setup": {**asdict(run), "out": str(run.out), "frequent": frequent, "rare": rare},
        "test_images_per_digit": int((y_test == rare[0]).sum()),
        "frequent_training_images": int(len(x_freq)),
        "generation": cost,
        "rows": rows,
    }
    path = write_text_replace(run.out / "toy-augment.json", json.dumps(result, indent=1) + "\n")
    table = write_text_replace(run.out / "toy-augment.md", markdown_table(result))
    return [path, table]


def _cost_at(cost: dict[str, Any] | None, k: int, kmax: int) -> float | None:
    # The first k images of a class are those a run with --per-class k makes: their cost is k/kmax of it.
    if not cost or cost["seconds_per_rare_digit"] is None:
        return None
    return cost["seconds_per_rare_digit"] * k / kmax


def markdown_table(result: dict[str, Any]) -> str:
    def cell(a: dict[str, Any]) -> str:
        if a["low"] is None:
            return f"{100 * a['mean']:.1f}"
        # A t-interval may pass 100% when the seeds' accuracies sit near it; accuracy cannot.
        low, high = max(a["low"], 0.0), min(a["high"], 1.0)
        return f"{100 * a['mean']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    lines = [
        "| training data for each rare digit | K | rare-digit accuracy % (95% CI) | frequent-digit accuracy % | "
        "generation s per rare digit |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        sec = r["generation_seconds_per_rare_digit"]
        lines.append(
            f"| {r['row']} | {r['k']} | {cell(r['rare_accuracy'])} | {cell(r['frequent_accuracy'])} | "
            f"{'' if sec is None else f'{sec:.1f}'} |"
        )
    return "\n".join(lines) + "\n"
