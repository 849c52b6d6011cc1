"""SeedSelect / NAO-SeedSelect cost on the embedded tiny-sd: seconds per iteration, and memory vs inner steps.

Two parts, in one run:

1. Speed (one process, after loading; methods interleaved so machine load affects both alike):
   seconds per optimisation iteration of SeedSelect (guidance 7.5: the UNet sees a doubled batch)
   and NAO-SeedSelect (guidance 1), at `--inner-steps`, plus NAO's one-off set-up (DDIM inversion of
   the references and the NAO centroid) and the losses each method reaches with its paper defaults
   (SeedSelect 30 iterations from a random seed; NAO-SeedSelect 5 iterations from the centroid).
2. Memory (CPU: each configuration in a fresh subprocess): the peak resident set size during ONE
   iteration, with 2 and with 10 inner steps, with per-step checkpointing on and off. Before the
   iteration the process's peak-RSS counter is reset (Linux: `/proc/self/clear_refs` <- 5), so the
   figure is the iteration's own peak; `extra` is that peak minus the RSS just before the iteration
   (models, references and the Python heap excluded). The image is `--memory-size` pixels square
   (latent size/8) so that activations, not the 20 MB of weights, dominate. Each configuration runs
   under glibc's default allocator and with a fixed mmap threshold (see ALLOCATORS for why).

    python benchmarks/perf_seedselect.py --out out/bench/perf_seedselect.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _procfs import reset_peak_rss, status_kib  # beside this script (its folder is sys.path[0])

PROMPT = "a hairy frog"


def _make_refs(loaded, folder: Path, size: int, n: int = 3) -> None:
    """Reference images rendered by the model itself from fixed seeds."""
    from rarecli.methods.sample import sample
    from rarecli.seeds.noise import noise_from_seed

    folder.mkdir(parents=True, exist_ok=True)
    f = loaded.pipe.vae_scale_factor
    for s in range(n):
        noise = noise_from_seed(100 + s, (4, size // f, size // f))
        sample(loaded, PROMPT, noise, steps=4, guidance=1.0).save(folder / f"ref_{s}.png")


def _objective(loaded, clip, refs, size: int, steps: int, guidance: float, checkpoint: bool, n: int = 1):
    from rarecli.methods.ddim import DdimSchedule, encode_text
    from rarecli.methods.seedselect.objective import Objective
    from rarecli.methods.seedselect.references import compute_targets

    f = loaded.pipe.vae_scale_factor
    targets = compute_targets(loaded, clip, refs, (size // f, size // f), seed=0)
    every = list(range(len(refs)))
    return Objective(
        loaded,
        clip,
        encode_text(loaded, PROMPT, guidance),
        DdimSchedule.from_pipeline(loaded.pipe, steps),
        targets.clip_centroid(every).expand(n, -1),
        targets.latent_mean(every).expand(n, *targets.latents.shape[1:]),
        checkpoint=checkpoint,
    )


def child_memory(size: int, steps: int, checkpoint: bool) -> dict:
    """One iteration's peak RSS in this (fresh) process."""
    import torch

    from rarecli.backbones.clip import load_clip
    from rarecli.backbones.loading import load_pipeline
    from rarecli.methods.seedselect.references import load_references
    from rarecli.runtime.device import DeviceManager
    from rarecli.seeds.noise import noise_from_seed

    manager = DeviceManager("cpu", "fp32")
    loaded = load_pipeline("tiny-sd", manager)
    clip = load_clip("tiny-clip", manager)
    with tempfile.TemporaryDirectory() as tmp:
        _make_refs(loaded, Path(tmp), size)
        refs = load_references(Path(tmp))
    objective = _objective(loaded, clip, refs, size, steps, 7.5, checkpoint)
    seed = noise_from_seed(0, (4, size // 8, size // 8))[None].requires_grad_(True)
    import gc

    gc.collect()
    reset = reset_peak_rss()
    before = status_kib("VmRSS")
    start = time.perf_counter()
    objective(seed).total.sum().backward()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    assert seed.grad is not None and torch.isfinite(seed.grad).all()
    return {
        "inner_steps": steps,
        "checkpointing": checkpoint,
        "image_size": size,
        "peak_reset": reset,
        "rss_before_mib": before / 1024 if before else None,
        "peak_rss_mib": peak / 1024 if peak else None,
        "extra_mib": (peak - before) / 1024 if peak and before and reset else None,
        "iteration_seconds": seconds,
    }


ALLOCATORS = {
    # glibc's default raises its mmap threshold after large frees, so memory freed by one denoising
    # step's recompute stays in the heap as fragments and RSS creeps up with the step count although
    # no tensor is kept; a fixed threshold returns freed large blocks, so RSS tracks live tensors.
    "glibc_default": {},
    "glibc_mmap_threshold_64k": {"MALLOC_MMAP_THRESHOLD_": "65536"},
}


def memory(size: int, steps: tuple[int, ...]) -> dict:
    rows = []
    for allocator, extra_env in ALLOCATORS.items():
        for checkpoint in (True, False):
            for n in steps:
                cmd = [sys.executable, __file__, "--child-memory", str(n), "--memory-size", str(size)]
                if not checkpoint:
                    cmd.append("--no-checkpointing")
                env = {**os.environ, **extra_env}
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                rows.append({"allocator": allocator, **json.loads(out.stdout.strip().splitlines()[-1])})
    result: dict = {"rows": rows}
    for allocator in ALLOCATORS:
        for checkpoint, label in ((True, "checkpointing"), (False, "no_checkpointing")):
            lo, hi = (
                next(
                    r
                    for r in rows
                    if r["allocator"] == allocator and r["checkpointing"] == checkpoint and r["inner_steps"] == n
                )
                for n in steps
            )
            for key in ("peak_rss_mib", "extra_mib"):
                if lo[key] and hi[key]:
                    result[f"{allocator}_{label}_{key}_ratio_{steps[1]}_over_{steps[0]}"] = hi[key] / lo[key]
    return result


def speed(steps: int, reps: int) -> dict:
    import torch

    from rarecli.backbones.clip import load_clip
    from rarecli.backbones.loading import load_pipeline
    from rarecli.methods.inversion import InversionSettings, invert_references
    from rarecli.methods.seedselect.config import DEFAULTS
    from rarecli.methods.seedselect.objective import optimise
    from rarecli.methods.seedselect.references import load_references
    from rarecli.runtime.device import DeviceManager
    from rarecli.seeds.noise import noise_from_seed
    from rarecli.seeds.starts import nao_centroid_and_paths

    manager = DeviceManager("auto", "auto")
    loaded = load_pipeline("tiny-sd", manager)
    clip = load_clip("tiny-clip", manager)
    size = 64
    with tempfile.TemporaryDirectory() as tmp:
        _make_refs(loaded, Path(tmp), size)
        refs = load_references(Path(tmp))
    shape = (4, size // 8, size // 8)
    with manager.timed() as inv_t:
        inverted = invert_references(loaded, refs, PROMPT, shape[1:], InversionSettings(), use_cache=False)
    with manager.timed() as cen_t:
        centroid, _ = nao_centroid_and_paths(inverted)
    objectives = {
        "seedselect": _objective(loaded, clip, refs, size, steps, DEFAULTS["seedselect"][2], True),
        "nao-seedselect": _objective(loaded, clip, refs, size, steps, DEFAULTS["nao-seedselect"][2], True),
        # what per-step checkpointing costs in time (it recomputes each step's forward once)
        "seedselect_no_checkpointing": _objective(loaded, clip, refs, size, steps, DEFAULTS["seedselect"][2], False),
    }
    noise = noise_from_seed(0, shape)[None]
    starts = {"seedselect": noise, "nao-seedselect": centroid[None], "seedselect_no_checkpointing": noise}
    per_iter: dict[str, list[float]] = {k: [] for k in objectives}
    for _ in range(reps + 1):  # the first round warms up and is dropped
        for name, objective in objectives.items():
            out = optimise(objective, starts[name], iters=1, lr=0.1)
            per_iter[name].append(out.iteration_seconds[0])
    runs = {}
    for name in DEFAULTS:
        objective = objectives[name]
        iters, lr, _ = DEFAULTS[name]
        out = optimise(objective, starts[name], iters=iters, lr=lr, patience=None)
        runs[name] = {
            "iters": iters,
            "initial_loss": out.initial[0]["total"],
            "best_loss": out.best[0]["total"],
            "loss_curve": [r["total"] for r in out.curve[0]],
            "optimisation_seconds": sum(out.iteration_seconds),
        }
    runs["nao-seedselect"]["setup_seconds"] = inv_t["seconds"] + cen_t["seconds"]
    return {
        "device": manager.device,
        "torch_threads": torch.get_num_threads(),
        "inner_steps": steps,
        "reps": reps,
        "seconds_per_iteration_median": {k: statistics.median(v[1:]) for k, v in per_iter.items()},
        "seconds_per_iteration_all": per_iter,
        "inversion_seconds_3_refs_50_steps": inv_t["seconds"],
        "nao_centroid_seconds": cen_t["seconds"],
        "paper_default_runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench/perf_seedselect.json"))
    parser.add_argument("--inner-steps", type=int, default=20, help="inner steps for the speed part")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--memory-size", type=int, default=256, help="image size (pixels) for the memory part")
    parser.add_argument("--memory-steps", default="2,10")
    parser.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory is not None:
        print(json.dumps(child_memory(args.memory_size, args.child_memory, not args.no_checkpointing)))
        return
    steps = tuple(int(s) for s in args.memory_steps.split(","))
    started = time.perf_counter()
    result = {
        "benchmark": "seedselect",
        "model": "tiny-sd",
        "clip": "tiny-clip",
        "memory": memory(args.memory_size, steps),
        "speed": speed(args.inner_steps, args.reps),
    }
    result["wall_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "speed"}
            | {"speed": result["speed"]["seconds_per_iteration_median"]}
        )
    )


if __name__ == "__main__":
    main()
