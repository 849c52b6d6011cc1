"""What rare costs at the real models' sizes: SeedSelect, NAO-SeedSelect and R2F on the architecture twins.

The twins (`rare models`) are the public configs of SD2.1-base, CLIP ViT-H-14 and SD3-medium with random
weights: the costs are those of the real models, the images are noise. Every configuration runs in a
fresh subprocess, so each peak is its own: on CUDA `torch.cuda.max_memory_allocated`, on the CPU the
process's peak resident set size over the measured iterations (Linux: the counter is reset just before
them, models included in the figure). Configurations are interleaved (one of each, then the next step
count) so machine load affects all alike.

SeedSelect, per image size and inner-step count:
- `rare_checkpointing`: ours, each denoising step and each semantic pass one checkpoint segment;
- `rare_no_checkpointing`: ours, nothing recomputed;
- `authors_style`: a loop in the authors' style: the prompt re-encoded at every iteration, diffusers'
  per-block UNet gradient checkpointing, nothing else recomputed; the same losses.
`vae_blocks` (ours plus diffusers' per-block checkpointing inside the VAE decoder) is an experiment run
by hand through `--child`; it did not lower the peak (docs/realsize.md). A configuration that
`--checkpointing auto`'s measurement (one step under saved-tensor hooks) says
cannot fit in this machine's free memory is not started; the JSON says what it would need.

NAO-SeedSelect: DDIM inversion seconds per step and per reference, and one refinement iteration
(guidance 1). R2F on the SD3 twin: seconds per step and peak memory against plain sampling.

    python benchmarks/perf_realsize.py --out out/bench/perf_realsize.json           # CPU: 128 and 256 px
    python benchmarks/perf_realsize.py --sizes 512 --steps 10 20 --dtypes fp32 fp16  # a GPU: the papers'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _procfs import reset_peak_rss, status_kib  # beside this script (its folder is sys.path[0])

PROMPT = "a tiger cat"
MODEL = "twin:sd21-base"
CLIP = "twin:vit-h-14"
SD3 = "twin:sd3-medium"
VARIANTS = ("rare_checkpointing", "rare_no_checkpointing", "authors_style")


class Peak:
    """This process's peak memory from now on: CUDA allocator peak, else peak RSS (reset if Linux allows)."""

    def __init__(self, manager) -> None:
        self.manager = manager
        manager.reset_peak_memory()
        self.reset = reset_peak_rss()

    def read(self) -> dict:
        cuda = self.manager.peak_memory_bytes()
        if cuda is not None:
            return {"kind": "cuda_max_allocated", "bytes": cuda}
        peak = status_kib("VmHWM")
        return {"kind": "process_peak_rss", "bytes": peak * 1024 if peak else None, "reset": self.reset}


def _refs(folder: Path, size: int, n: int = 3) -> Path:
    """Reference images: their content does not change the cost, so seeded noise pictures."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"ref_{i}.png")
    return folder


def _session(size: int, steps: int, guidance: float, device: str, dtype: str, refs: Path):
    from rarecli.methods.seedselect.config import SeedSelectConfig
    from rarecli.methods.seedselect.session import prepare
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype)
    config = SeedSelectConfig(
        PROMPT, refs, model=MODEL, clip_model=CLIP, inner_steps=steps, guidance=guidance, height=size, width=size,
        iters=1, patience=None,
    )  # fmt: skip
    started = time.perf_counter()
    session = prepare(config, manager)
    return session, time.perf_counter() - started


def child_seedselect(variant: str, size: int, steps: int, iters: int, device: str, dtype: str) -> dict:
    import torch

    from rarecli.methods.ddim import encode_text
    from rarecli.methods.seedselect.memory import choose
    from rarecli.methods.seedselect.objective import Objective

    guidance = 1.0 if variant == "nao_refinement" else 7.5
    with tempfile.TemporaryDirectory() as tmp:
        session, setup = _session(size, steps, guidance, device, dtype, _refs(Path(tmp), size))
    manager = session.loaded.manager
    plan = session.plans[0]
    objective = Objective(
        session.loaded, session.clip, session.text, session.schedule,
        session.targets.clip_centroid(plan.subset)[None].to(manager.device),
        session.targets.latent_mean(plan.subset)[None].to(manager.device),
        checkpoint=variant in ("rare_checkpointing", "nao_refinement", "vae_blocks"),
    )  # fmt: skip
    estimate = choose("auto", objective, plan.start[None].to(manager.device)).to_json()
    unet = session.loaded.pipe.unet
    if variant == "authors_style":
        unet.enable_gradient_checkpointing()
    if variant == "vae_blocks":  # an experiment: diffusers' per-block checkpointing inside the VAE decoder
        session.loaded.pipe.vae.enable_gradient_checkpointing()
    seed = torch.nn.Parameter(plan.start[None].to(manager.device, torch.float32).clone())
    opt = torch.optim.AdamW([seed], lr=0.1, weight_decay=0.0)
    peak = Peak(manager)
    seconds, losses = [], []
    for _ in range(iters):
        with manager.timed() as timing:
            if variant == "authors_style":  # their loop encodes the prompt again at every iteration
                objective.text = encode_text(session.loaded, session.prompt, guidance)
            opt.zero_grad(set_to_none=True)
            terms = objective(seed)
            terms.total.sum().backward()
            opt.step()
        seconds.append(timing["seconds"])
        losses.append(float(terms.total.detach()))
    if variant == "authors_style":
        unet.disable_gradient_checkpointing()
    return {
        "variant": variant, "image_size": size, "inner_steps": steps, "guidance": guidance, "dtype": manager.dtype,
        "setup_seconds": setup, "iteration_seconds": seconds, "losses": losses, "peak_memory": peak.read(),
        "activation_estimate": estimate,
    }  # fmt: skip


def child_inversion(size: int, inversion_steps: int, device: str, dtype: str) -> dict:
    from rarecli.methods.inversion import InversionSettings, invert_references

    with tempfile.TemporaryDirectory() as tmp:
        session, setup = _session(size, 2, 1.0, device, dtype, _refs(Path(tmp), size, n=1))
    manager = session.loaded.manager
    shape = session.plans[0].start.shape
    with manager.timed() as timing:
        invert_references(
            session.loaded, session.refs[:1], session.prompt, shape[1:], InversionSettings(inversion_steps, 1.0), False
        )
    return {
        "image_size": size, "inversion_steps": inversion_steps, "dtype": manager.dtype,
        "seconds_per_reference": timing["seconds"], "seconds_per_step": timing["seconds"] / inversion_steps,
        "seconds_per_reference_at_50_steps": 50 * timing["seconds"] / inversion_steps,
    }  # fmt: skip


def child_r2f(method: str, size: int, steps: int, device: str, dtype: str) -> dict:
    from rarecli.llm.schema import Concept, Plan
    from rarecli.methods import registry
    from rarecli.methods.protocol import MethodContext, Request
    from rarecli.runtime.device import DeviceManager

    manager = DeviceManager(device, dtype)
    context = MethodContext(SD3, None, manager, steps, None, {}, command="bench", height=size, width=size)
    started = time.perf_counter()
    prepared = registry.get(method).prepare(context)
    setup = time.perf_counter() - started
    plan = Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 3),))
    request = Request(plan.prompt, [0], plan=plan if method == "r2f" else None)
    peak = Peak(manager)
    with manager.timed() as timing:
        (made,) = prepared.generate(request)
    return {
        "method": method, "image_size": size, "steps": steps, "dtype": manager.dtype, "setup_seconds": setup,
        "seconds": timing["seconds"], "seconds_per_step": timing["seconds"] / steps, "peak_memory": peak.read(),
        "t5": made.provenance.hyper.get("t5"),
    }  # fmt: skip


def _child(args: list, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([[MODEL, CLIP, SD3], *args])]
    print("  " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "args": args}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        killed = done.returncode in (-9, 137)
        return {"error": "killed (out of memory?)" if killed else " | ".join(tail), "args": args}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fits(estimate: dict | None, variant: str) -> tuple[bool, str]:
    """Whether an unchecked variant can run here, from the checkpointed run's measured estimate."""
    if estimate is None or variant == "rare_checkpointing":
        return True, ""
    need, free = estimate["unchecked_bytes"], estimate["free_bytes"]
    if free is not None and need > 0.9 * free:
        return False, f"needs about {need / 2**30:.1f} GiB of activations; {free / 2**30:.1f} GiB was free"
    return True, ""


def _machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    global MODEL, CLIP, SD3
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", nargs="+", default=["auto"])
    parser.add_argument("--inversion-steps", type=int, default=10)
    parser.add_argument("--r2f-size", type=int, default=512)
    parser.add_argument("--r2f-steps", type=int, default=4)
    parser.add_argument("--skip-r2f", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--model", default=MODEL, help="SeedSelect's pipeline (default: the SD2.1-base twin)")
    parser.add_argument("--clip-model", default=CLIP)
    parser.add_argument("--r2f-model", default=SD3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (MODEL, CLIP, SD3), kind, *rest = json.loads(args.child)
        fn = {"seedselect": child_seedselect, "inversion": child_inversion, "r2f": child_r2f}[kind]
        print(json.dumps(fn(*rest)))
        return
    if args.out is None:
        parser.error("--out FILE.json is required")
    from rarecli.backbones.registry import EMBEDDED, ensure_built

    MODEL, CLIP, SD3 = args.model, args.clip_model, args.r2f_model
    for name in (MODEL, CLIP) + (() if args.skip_r2f else (SD3,)):
        if name in EMBEDDED:
            ensure_built(EMBEDDED[name])  # built once, outside the timings
    started = time.perf_counter()
    seedselect, skipped = [], []
    for dtype in args.dtypes:
        for size in args.sizes:
            for steps in args.steps:
                first = _child(["seedselect", "rare_checkpointing", size, steps, args.iters, args.device, dtype],
                               args.timeout)  # fmt: skip
                seedselect.append(first)
                for variant in VARIANTS[1:]:
                    ok, why = _fits(first.get("activation_estimate"), variant)
                    if not ok:
                        skipped.append({"variant": variant, "image_size": size, "inner_steps": steps, "dtype": dtype,
                                        "reason": why})  # fmt: skip
                        continue
                    seedselect.append(_child(["seedselect", variant, size, steps, args.iters, args.device, dtype],
                                             args.timeout))  # fmt: skip
            seedselect.append(_child(["seedselect", "nao_refinement", size, args.steps[0], args.iters, args.device,
                                      dtype], args.timeout))  # fmt: skip
    inversion = [_child(["inversion", s, args.inversion_steps, args.device, d], args.timeout)
                 for d in args.dtypes for s in args.sizes]  # fmt: skip
    r2f = []
    if not args.skip_r2f:
        for dtype in args.dtypes:
            for method in ("sd", "r2f"):
                r2f.append(_child(["r2f", method, args.r2f_size, args.r2f_steps, args.device, dtype], args.timeout))
    result = {
        "benchmark": "perf_realsize",
        "machine": _machine(),
        "models": {"seedselect": MODEL, "clip": CLIP, "r2f": SD3, "weights": "random (architecture twins)"},
        "seedselect": seedselect,
        "skipped": skipped,
        "summary": _summary(seedselect),
        "nao_inversion": inversion,
        "r2f": r2f,
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(args.out)
    failed = [r for r in seedselect + inversion + r2f if "error" in r]
    if failed:  # written anyway, so what did run is kept; the exit status says it is incomplete
        sys.exit(f"{len(failed)} configuration(s) failed: " + "; ".join(r["error"] for r in failed))


def _summary(rows: list[dict]) -> dict:
    """Per (dtype, size, variant): seconds per iteration (the last, after the first's warm-up) and peak
    memory at each step count, their ratios to ours-with-checkpointing, and the growth from the fewest
    to the most inner steps."""
    table: dict[str, dict] = {}
    for r in rows:
        if "error" in r:
            continue
        key = f"{r['dtype']} {r['image_size']}px {r['variant']}"
        table.setdefault(key, {})[str(r["inner_steps"])] = {
            "seconds_per_iteration": r["iteration_seconds"][-1],
            "peak_gib": (r["peak_memory"]["bytes"] or 0) / 2**30,
        }
    for key, by_steps in table.items():
        steps = sorted(by_steps, key=int)
        if len(steps) > 1:
            lo, hi = by_steps[steps[0]], by_steps[steps[-1]]
            by_steps["peak_growth"] = hi["peak_gib"] / lo["peak_gib"] if lo["peak_gib"] else None
            by_steps["time_growth"] = hi["seconds_per_iteration"] / lo["seconds_per_iteration"]
        base = table.get(key.rsplit(" ", 1)[0] + " rare_checkpointing", {})
        for s in steps:
            if s in base:
                by_steps[s]["time_vs_rare_checkpointing"] = (
                    by_steps[s]["seconds_per_iteration"] / base[s]["seconds_per_iteration"]
                )
                by_steps[s]["peak_vs_rare_checkpointing"] = by_steps[s]["peak_gib"] / base[s]["peak_gib"]
    return table


if __name__ == "__main__":
    main()
