"""Measure the toy world: per digit, how often a method draws the digit a prompt names, and whether it
draws a new one or copies a training image.

- Accuracy: the judge (trained on images no generator saw) must return the prompt's digit.
- Novelty: the distance of a sample to its nearest diffusion-training image (each at every +-1 pixel
  shift, as training saw them). A sample closer than `copy_threshold` counts as a copy. The threshold is
  the 5th percentile of the same distance for held-out real digits passed through the pipeline's own
  VAE (so the autoencoder's blur does not make copies look new): 5% of genuinely new handwriting is
  that close, so a copy rate far above 5% means memorisation. `novel_accuracy` counts samples that are
  both correct and not copies (of a training image, nor of a reference image for methods that see them).
- Diversity: the mean pairwise distance between a method's samples of one digit, beside that of
  held-out real digits of it (through the VAE): a method can be accurate by drawing one digit every time.
- Reference copies: methods that see reference images could return them; `ref_copy_rate` is the share
  of samples within `copy_threshold` of a reference image (at any +-1 pixel shift).

Methods plug in as callables `method(prompt, refs, seed) -> PIL image`, or a `MethodOutput` that also
carries the iterations run and, optionally, the image at chosen iterations (`checkpoints`), from which
the report derives accuracy after N iterations and the iterations needed to first draw the right digit.
A method object with `run_seeds(prompt, refs_folder, seeds) -> list[MethodOutput]` is called once per
digit with every seed (so it can batch). Plain sampling is built in ("sd" at the configured guidance,
7.5 as in SD and SeedSelect, and "sd-cfg1" at guidance 1 as NAO-SeedSelect samples); SeedSelect /
NAO-SeedSelect come from `seedselect_methods` (`main` wires them in). Methods that need references run
on the rare digits only (their reference folders).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.toy import DIGIT_WORDS, MANIFEST, REFS_DIR, WEIGHTS_DIR, prompt_for
from rarecli.errors import RareError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from rarecli.backbones.loading import LoadedPipeline
    from rarecli.backbones.toy.judge import Judge
    from rarecli.runtime.device import DeviceManager

COPY_PERCENTILE = 5.0


@dataclass
class MethodOutput:
    image: Image.Image
    iterations: int | None = None
    # Optional: the image the method would return after each of these iterations (0 = before any).
    checkpoints: dict[int, Image.Image] | None = None
    info: dict[str, Any] = field(default_factory=dict)


Method = Callable[[str, Sequence["Image.Image"], int], "Image.Image | MethodOutput"]


@dataclass
class EvalConfig:
    seeds: int = 20
    first_seed: int = 0
    steps: int = 20
    guidance: float = 7.5
    # Plain sampling is also reported at these guidance scales, as "sd-cfg<g>".
    extra_guidances: tuple[float, ...] = (1.0,)
    digits: tuple[int, ...] | None = None  # default: all ten
    # Methods other than plain sampling run on the rare digits (they need reference images).
    methods_on_frequent: bool = False
    grid_seeds: int = 8


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
        from rarecli.io.images import read_image_folder

        images, _ = read_image_folder(self.refs_folder(digit))
        return [im for _, im in images]

    def ref_distance(self, digit: int, gray: np.ndarray) -> np.ndarray:
        """Distance of each [B, 8, 8] image to the nearest reference image of `digit` (any +-1 shift)."""
        import numpy as np

        from rarecli.backbones.toy.data import to_gray

        refs = _shifted(to_gray(self.refs(digit))).astype(np.float64)
        flat = gray.reshape(len(gray), -1).astype(np.float64)
        d2 = (flat**2).sum(1)[:, None] - 2 * flat @ refs.T + (refs**2).sum(1)[None]
        return np.sqrt(np.maximum(d2.min(1), 0))

    def nearest(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and digit of, the nearest diffusion-training image, for [B, 8, 8] grey images."""
        import numpy as np

        flat = gray.reshape(len(gray), -1).astype(np.float64)
        train = self.train_gray.astype(np.float64)
        d2 = (flat**2).sum(1)[:, None] - 2 * flat @ train.T + (train**2).sum(1)[None]
        j = d2.argmin(1)
        return np.sqrt(np.maximum(d2[np.arange(len(flat)), j], 0)), self.train_labels[j // 9]


def _shifted(gray: np.ndarray) -> np.ndarray:
    """Every image at the nine +-1 pixel shifts (zeros come in), flattened: [N * 9, 64]."""
    import numpy as np

    n, h, w = gray.shape
    padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)))
    out = np.stack([padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
    return out.reshape(n * 9, h * w)


def vae_round_trip(loaded: LoadedPipeline, gray: np.ndarray) -> np.ndarray:
    """Encode (posterior mean) and decode grey [B, 8, 8] images through the pipeline's VAE."""
    import numpy as np
    import torch

    vae = loaded.pipe.vae
    x = torch.from_numpy(np.asarray(gray, dtype=np.float32))[:, None].expand(-1, 3, -1, -1) * 2 - 1
    with torch.inference_mode():
        x = x.to(loaded.manager.device, vae.dtype)
        out = vae.decode(vae.encode(x).latent_dist.mean).sample
    return ((out.float().mean(1) + 1) / 2).clamp(0, 1).cpu().numpy()


def load_world(manager: DeviceManager, folder: Path | None = None) -> ToyWorld:
    """The packaged world (or one built elsewhere by `build --out folder`), with its novelty references."""
    import numpy as np

    from rarecli.backbones.loading import load_pipeline
    from rarecli.backbones.toy import data
    from rarecli.backbones.toy.judge import load_judge

    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    manifest_path = folder / MANIFEST.name
    if not manifest_path.is_file():
        raise RareError(f"no toy world in {folder} (manifest.json missing)", hint="run `make toy-world`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model = "toy-digits" if folder.resolve() == WEIGHTS_DIR.resolve() else str(folder / "toy-digits")
    loaded = load_pipeline(model, manager, families={"StableDiffusionPipeline"}, purpose="the toy evaluation")
    judge = load_judge(folder / "judge")
    images, labels = data.load()
    split = manifest["split"]["indices_into_load_digits"]
    train = np.asarray(split["diffusion_train"])
    world = ToyWorld(
        loaded=loaded,
        judge=judge,
        manifest=manifest,
        train_gray=_shifted(images[train]),
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
    import numpy as np

    flat = gray.reshape(len(gray), -1).astype(np.float64)
    if len(flat) < 2:
        return 0.0
    d = np.sqrt(np.maximum(((flat[:, None] - flat[None]) ** 2).sum(-1), 0))
    return float(d[np.triu_indices(len(flat), 1)].mean())


class PlainSampling:
    """The baseline: DDIM from the seed's noise with classifier-free guidance; batched over seeds."""

    needs_refs = False

    def __init__(self, loaded: LoadedPipeline, steps: int = 20, guidance: float = 7.5) -> None:
        self.loaded, self.steps, self.guidance = loaded, steps, guidance

    def batch(self, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        import torch

        from rarecli.backbones.loading import latent_shape
        from rarecli.seeds.noise import noise_from_seed

        shape = latent_shape(self.loaded.ref)
        latents = torch.stack([noise_from_seed(s, shape) for s in seeds])
        pipe, manager = self.loaded.pipe, self.loaded.manager
        f = pipe.vae_scale_factor
        with torch.inference_mode():
            return pipe(
                prompt=[prompt] * len(seeds),
                latents=latents.to(manager.device, manager.torch_dtype),
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                height=shape[-2] * f,
                width=shape[-1] * f,
                output_type="pil",
            ).images

    def __call__(self, prompt: str, refs: Sequence[Image.Image], seed: int) -> Image.Image:
        return self.batch(prompt, [seed])[0]


def _score(world: ToyWorld, digit: int, images: list[Image.Image], with_refs: bool = False) -> dict[str, Any]:
    import numpy as np

    from rarecli.backbones.toy.data import to_gray

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


def evaluate(
    world: ToyWorld,
    methods: dict[str, Method] | None = None,
    config: EvalConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run plain sampling on every digit and each extra method on the rare digits; return the report.

    `methods` maps a name to `method(prompt, refs, seed)`; the result is timed per image and, when it
    is a `MethodOutput` with `iterations`, the iterations are averaged.
    """
    import numpy as np

    config = config or EvalConfig()
    digits = list(config.digits) if config.digits is not None else list(range(10))
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    all_methods: dict[str, Method] = {"sd": PlainSampling(world.loaded, config.steps, config.guidance)}
    for g in config.extra_guidances:
        all_methods[f"sd-cfg{g:g}"] = PlainSampling(world.loaded, config.steps, g)
    all_methods.update(methods or {})
    results: dict[str, dict[str, Any]] = {}
    grids: dict[str, dict[int, list[Image.Image]]] = {}
    for name, method in all_methods.items():
        per_digit: dict[str, Any] = {}
        grids[name] = {}
        for digit in digits:
            rare = digit in world.rare
            plain = isinstance(method, PlainSampling)
            if not plain and not rare and not config.methods_on_frequent:
                continue
            prompt = prompt_for(digit)
            refs = world.refs(digit) if rare else []
            t0 = time.perf_counter()
            iterations: list[int] = []
            checkpoints: list[dict[int, Image.Image]] = []
            infos: list[dict[str, Any]] = []
            if plain:
                outputs: list[Any] = method.batch(prompt, seeds)
            elif hasattr(method, "run_seeds"):
                outputs = method.run_seeds(prompt, world.refs_folder(digit), seeds)
            else:
                outputs = [method(prompt, refs, seed) for seed in seeds]
            seconds = time.perf_counter() - t0
            images = []
            for out in outputs:
                if isinstance(out, MethodOutput):
                    if out.iterations is not None:
                        iterations.append(out.iterations)
                    if out.checkpoints:
                        checkpoints.append(out.checkpoints)
                    infos.append(out.info)
                    out = out.image
                images.append(out)
            row = _score(world, digit, images, with_refs=not plain and rare)
            # Wall time of the whole call, the checkpoint renders included; `seconds_to_result` is the
            # method's own account (setup + optimisation + final render) where it gives one.
            row["seconds_per_image"] = seconds / len(images)
            for key in ("seconds", "setup_seconds", "seconds_per_iteration"):
                values = [i[key] for i in infos if i.get(key) is not None]
                if values:
                    row["seconds_to_result" if key == "seconds" else key] = float(np.mean(values))
            if iterations:
                row["iterations_mean"] = float(np.mean(iterations))
            if checkpoints:
                row.update(_trajectory(world, digit, checkpoints))
            per_digit[DIGIT_WORDS[digit]] = row
            grids[name][digit] = images[: config.grid_seeds]
            if progress is not None:
                progress(f"{name} {DIGIT_WORDS[digit]}: accuracy {row['accuracy']:.2f} copies {row['copy_rate']:.2f}")
        results[name] = {"per_digit": per_digit, **_summary(world, per_digit)}
    report = {
        "config": asdict(config),
        "world": {
            "model": world.loaded.ref.to_meta(),
            "frequent": world.frequent,
            "rare": world.rare,
            "copy_threshold": world.copy_threshold,
            "copy_percentile_of_heldout_real": COPY_PERCENTILE,
            "heldout_real": {
                DIGIT_WORDS[d]: {
                    "judge_accuracy": world.real_accuracy[d],
                    "judge_accuracy_after_vae": world.vae_accuracy[d],
                    "novelty_median": world.real_distance[d],
                    "diversity": world.real_diversity[d],
                }
                for d in range(10)
            },
        },
        "methods": results,
    }
    report["iterations_to_reach_final_rare_accuracy"] = iterations_to_reach(report)
    report["_grids"] = grids  # images for the plot; dropped when written
    return report


def _trajectory(world: ToyWorld, digit: int, checkpoints: list[dict[int, Image.Image]]) -> dict[str, Any]:
    """Accuracy after each checkpointed iteration, the fraction of seeds judged correct at some
    checkpoint, and the median first such iteration (a later checkpoint may be wrong again: the final
    image's accuracy is the `accuracy` field)."""
    import numpy as np

    from rarecli.backbones.toy.data import to_gray

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
    import math

    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _summary(world: ToyWorld, per_digit: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

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


def plot(report: dict[str, Any], path: Path) -> Path:
    """Accuracy and copy rate per digit and method, and a grid of samples per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
            if name.startswith("sd") and "rare" in m:  # the plain-sampling baselines
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


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`<out>/toy-eval.json` and `<out>/toy-eval.png` (replaced: an evaluation is a state, not an output)."""
    from rarecli.io.atomic import write_text_replace

    out.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    json_path = write_text_replace(out / "toy-eval.json", json.dumps(clean, indent=1) + "\n")
    png_path = plot(report, out / "toy-eval.png")
    return json_path, png_path


OPTIMISERS = ("seedselect", "nao-seedselect")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Evaluate plain sampling, SeedSelect and NAO-SeedSelect on the toy-digits world (make eval-toy)."
    )
    parser.add_argument("--out", type=Path, default=Path("out/toy-eval"))
    parser.add_argument("--world", type=Path, default=None, help="a folder written by the build (default: packaged)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps, also SeedSelect's inner steps")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument(
        "--methods",
        default=",".join(OPTIMISERS),
        help="comma-separated optimisers to run besides plain sampling (seedselect, nao-seedselect; '' for none)",
    )
    parser.add_argument("--digits", default=None, help="comma-separated digits (default: all ten)")
    parser.add_argument("--seedselect-iters", type=int, default=None, help="default: the CLI's (30)")
    parser.add_argument("--nao-iters", type=int, default=None, help="default: the CLI's (5)")
    parser.add_argument(
        "--r2f-levels",
        default="1,2,3,4,5",
        help="R2F visual-detail levels to run (rare prompt guided early by a toy-clip-chosen frequent digit; '' for none)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.r2f_levels.split(",") if x.strip()]
    if any(not 0 <= level <= 5 for level in levels):
        parser.error("--r2f-levels takes levels 0..5")
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(OPTIMISERS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(OPTIMISERS)}")
    import torch

    from rarecli.backbones.toy.r2f_methods import R2FMethod, clip_stand_ins
    from rarecli.backbones.toy.seedselect_methods import SeedSelectMethod
    from rarecli.runtime.device import DeviceManager

    torch.set_num_threads(args.threads)
    world = load_world(DeviceManager("cpu", "fp32"), args.world)
    iters = {"seedselect": args.seedselect_iters, "nao-seedselect": args.nao_iters}
    methods: dict[str, Method] = {
        name: SeedSelectMethod(world, name, inner_steps=args.steps, iters=iters[name]) for name in names
    }
    stand_ins = clip_stand_ins(world) if levels else {}
    for level in levels:
        methods[f"r2f-l{level}"] = R2FMethod(world, level, stand_ins, args.steps, args.guidance)
    digits = tuple(int(d) for d in args.digits.split(",")) if args.digits else None
    config = EvalConfig(seeds=args.seeds, steps=args.steps, guidance=args.guidance, digits=digits)
    report = evaluate(world, methods, config, progress=lambda m: print(m, file=sys.stderr, flush=True))
    if len(levels) > 1:  # one picture row for R2F: its best level on the rare digits
        ranked = sorted(levels, key=lambda lv: report["methods"][f"r2f-l{lv}"].get("rare", {}).get("accuracy", 0))
        for level in ranked[:-1]:
            report["_grids"].pop(f"r2f-l{level}", None)
    if levels:
        report["r2f"] = {
            "stand_ins": {DIGIT_WORDS[r]: DIGIT_WORDS[f] for r, f in stand_ins.items()},
            "chosen_by": "nearest toy-clip text embedding among the frequent digits' prompts",
            "schedules": {name: methods[name].schedules for name in methods if name.startswith("r2f-")},
        }
    for path in write(report, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: methods built elsewhere return the
    # imported module's MethodOutput, which a __main__-defined class would not recognise.
    from rarecli.backbones.toy import evaluate as _module

    raise SystemExit(_module.main())
