"""Measure the toy world: per digit, how often a method draws the digit a prompt names, and whether it
draws a new one or copies a training image (`world` says what novelty is measured against, `scoring`
how a method's images are scored).

Methods plug in as callables `method(prompt, refs, seed) -> PIL image`, or a `MethodOutput` that also
carries the iterations run and, optionally, the image at chosen iterations (`checkpoints`). A method
object with `run_seeds(prompt, refs_folder, seeds) -> list[MethodOutput]` is called once per digit with
every seed (so it can batch). Plain sampling is built in ("sd" at the configured guidance, 7.5 as in SD
and SeedSelect, and "sd-cfg1" at guidance 1 as NAO-SeedSelect samples); SeedSelect, NAO-SeedSelect and
R2F come from `adapters` (`main` wires them in). Methods that need references run on the rare digits
only (their reference folders).

    python -m rarecli.toyworld evaluate --out DIR      (make eval-toy)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rarecli.io.atomic import write_text_replace
from rarecli.methods import registry
from rarecli.runtime.device import DeviceManager
from rarecli.toyworld import DIGIT_WORDS, prompt_for
from rarecli.toyworld.adapters import R2FMethod, SeedSelectMethod, ToyPlainSampling, clip_stand_ins
from rarecli.toyworld.plot import plot
from rarecli.toyworld.scoring import iterations_to_reach, score_images, score_trajectory, summarise_groups
from rarecli.toyworld.types import MethodOutput, ToyMethod
from rarecli.toyworld.world import COPY_PERCENTILE, ToyWorld, load_world

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["EvalConfig", "EvalRun", "MethodOutput", "evaluate", "load_world", "run_evaluation", "write"]


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


def evaluate(
    world: ToyWorld,
    methods: dict[str, ToyMethod] | None = None,
    config: EvalConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run plain sampling on every digit and each extra method on the rare digits; return the report.

    `methods` maps a name to `method(prompt, refs, seed)`; the result is timed per image and, when it
    is a `MethodOutput` with `iterations`, the iterations are averaged.
    """

    config = config or EvalConfig()
    digits = list(config.digits) if config.digits is not None else list(range(10))
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    plain = registry.PLAIN.name
    all_methods: dict[str, ToyMethod] = {plain: ToyPlainSampling(world.loaded, config.steps, config.guidance)}
    for g in config.extra_guidances:
        all_methods[f"{plain}-cfg{g:g}"] = ToyPlainSampling(world.loaded, config.steps, g)
    all_methods.update(methods or {})
    results: dict[str, dict[str, Any]] = {}
    grids: dict[str, dict[int, list[Image.Image]]] = {}
    for name, method in all_methods.items():
        per_digit: dict[str, Any] = {}
        grids[name] = {}
        for digit in digits:
            rare = digit in world.rare
            plain = isinstance(method, ToyPlainSampling)
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
            row = score_images(world, digit, images, with_refs=not plain and rare)
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
                row.update(score_trajectory(world, digit, checkpoints))
            per_digit[DIGIT_WORDS[digit]] = row
            grids[name][digit] = images[: config.grid_seeds]
            if progress is not None:
                progress(f"{name} {DIGIT_WORDS[digit]}: accuracy {row['accuracy']:.2f} copies {row['copy_rate']:.2f}")
        results[name] = {"per_digit": per_digit, **summarise_groups(world, per_digit)}
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


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`<out>/toy-eval.json` and `<out>/toy-eval.png` (replaced: an evaluation is a state, not an output)."""

    out.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    json_path = write_text_replace(out / "toy-eval.json", json.dumps(clean, indent=1) + "\n")
    png_path = plot(report, out / "toy-eval.png")
    return json_path, png_path


OPTIMISERS = (registry.SEEDSELECT.name, registry.NAO_SEEDSELECT.name)


@dataclass
class EvalRun:
    """What `make eval-toy` runs (python -m rarecli.toyworld evaluate)."""

    out: Path = Path("out/toy-eval")
    world: Path | None = None  # a folder written by the build (default: the packaged world)
    seeds: int = 20
    steps: int = 20  # denoising steps, also SeedSelect's inner steps
    guidance: float = 7.5
    methods: tuple[str, ...] = OPTIMISERS
    digits: tuple[int, ...] | None = None
    seedselect_iters: int | None = None  # None: the CLI's (30)
    nao_iters: int | None = None  # None: the CLI's (5)
    r2f_levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    threads: int = 1


def run_evaluation(run: EvalRun) -> tuple[Path, Path]:
    """Evaluate plain sampling and the chosen methods, and write `<out>/toy-eval.json` and its picture."""
    import torch

    unknown = sorted(set(run.methods) - set(OPTIMISERS))
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(OPTIMISERS)}")
    if any(not 0 <= level <= 5 for level in run.r2f_levels):
        raise ValueError("R2F levels are 0..5")
    torch.set_num_threads(run.threads)
    world = load_world(DeviceManager("cpu", "fp32"), run.world)
    iters = dict(zip(OPTIMISERS, (run.seedselect_iters, run.nao_iters), strict=True))
    methods: dict[str, ToyMethod] = {
        name: SeedSelectMethod(world, name, inner_steps=run.steps, iters=iters[name]) for name in run.methods
    }
    levels = list(run.r2f_levels)
    stand_ins = clip_stand_ins(world) if levels else {}
    for level in levels:
        methods[f"r2f-l{level}"] = R2FMethod(world, level, stand_ins, run.steps, run.guidance)
    config = EvalConfig(seeds=run.seeds, steps=run.steps, guidance=run.guidance, digits=run.digits)
    report = evaluate(world, methods, config, progress=lambda m: print(m, file=sys.stderr, flush=True))
    if len(levels) > 1:  # one picture row for R2F: its best level on the rare digits
        ranked = sorted(levels, key=lambda lv: report["methods"][f"r2f-l{lv}"].get("rare", {}).get("accuracy", 0))
        for level in ranked[:-1]:
            report["_grids"].pop(f"r2f-l{level}", None)
    if levels:
        report[registry.R2F.name] = {
            "stand_ins": {DIGIT_WORDS[r]: DIGIT_WORDS[f] for r, f in stand_ins.items()},
            "chosen_by": "nearest toy-clip text embedding among the frequent digits' prompts",
            "schedules": {name: methods[name].schedules for name in methods if name.startswith("r2f-")},
        }
    return write(report, run.out)
