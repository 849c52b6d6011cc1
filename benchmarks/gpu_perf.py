"""Where SeedSelect's time and memory go on a GPU, and what R2F costs beside diffusers' own pipeline.

On the SD2.1-base + ViT-H-14 twins at 512², 20 inner steps, CFG 7.5 (the authors' setting), in this
process, models loaded once per dtype; each variant's peak is `torch.cuda.max_memory_allocated` over its
iterations, models included; variants are interleaved round by round, so load on the machine affects
all alike:

- `authors_style`: fp32, diffusers' per-block UNet gradient checkpointing, the prompt re-encoded at
  every iteration (their loop; our losses and DDIM update);
- `rare_<dtype>_<checkpointing>`: `optimise()` itself (what `rare seedselect` runs), batch 1 and 4;
- `breakdown`: one iteration taken apart (UNet steps forward, the checkpointed trajectory, backward with
  its recompute, one semantic pass, the optimiser step);
- set-up: `prepare()`'s per-phase seconds, first with nothing loaded, then with the models cached;
- NAO-SeedSelect's first image: 5 references, inversion and centroid, 5 iterations (cache off, then on);
- SD3 at 1024², 28 steps: diffusers' `StableDiffusion3Pipeline` called directly, rare's plain sampling,
  R2F, AAPB and R2F+, seconds per image and peak.

    python benchmarks/gpu_perf.py --out out/bench/perf_gpu.json [--budget 240] [--tiny]

`--tiny` runs the same code on tiny-sd / tiny-clip / tiny-sd3 (any machine) to try the script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "a tiger cat"
MODELS = {"sd": "twin:sd21-base", "clip": "twin:vit-h-14", "sd3": "twin:sd3-medium"}
TINY = {"sd": "tiny-sd", "clip": "tiny-clip", "sd3": "tiny-sd3"}
PLUS_PLAN = {
    "schema": "rare.r2fplus.plan",
    "version": 1,
    "prompt": "A spotted lion is lounging on an ax shaped bed",
    "base_prompt": "#1 lounging on #2",
    "objects": [
        {"key": "#1", "phrase": "a spotted lion", "prompt": "#1 lounging", "frequent": ["a spotted animal"],
         "levels": [2], "box": [0.05, 0.3, 0.5, 0.85]},
        {"key": "#2", "phrase": "an ax shaped bed", "prompt": "#2 in a room", "frequent": ["an ax shaped furniture"],
         "levels": [3], "box": [0.55, 0.4, 0.95, 0.8]},
    ],
}  # fmt: skip


def refs(folder: Path, size: int, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"ref_{i}.png")
    return folder


class Clock:
    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def __call__(self, fn: Any, *args: Any) -> tuple[Any, float]:
        self.manager.synchronize()
        t0 = time.perf_counter()
        out = fn(*args)
        self.manager.synchronize()
        return out, time.perf_counter() - t0


def session_for(models: dict, dtype: str, device: str, folder: Path, steps: int, size: int, n: int = 1, **kw):
    from rarecli.methods.seedselect.config import SeedSelectConfig
    from rarecli.methods.seedselect.session import prepare
    from rarecli.runtime.device import DeviceManager

    config = SeedSelectConfig(
        PROMPT, folder, model=models["sd"], clip_model=models["clip"], inner_steps=steps, guidance=7.5,
        height=size, width=size, iters=3, patience=None, num_images=n, **kw,
    )  # fmt: skip
    return prepare(config, DeviceManager(device, dtype))


def objective_for(session: Any, batch: int, checkpoint: bool) -> tuple[Any, Any]:
    import torch

    from rarecli.methods.seedselect.objective import Objective

    device = session.loaded.manager.device
    plans = [session.plans[i % len(session.plans)] for i in range(batch)]
    objective = Objective(
        session.loaded, session.clip, session.text, session.schedule,
        torch.stack([session.targets.clip_centroid(p.subset) for p in plans]).to(device),
        torch.stack([session.targets.latent_mean(p.subset) for p in plans]).to(device),
        checkpoint=checkpoint,
    )  # fmt: skip
    return objective, torch.stack([p.start for p in plans])


@contextlib.contextmanager
def experiment(session: Any, toggles: dict) -> Any:
    """Levers tried before they become options: each set for the variant, then put back."""
    import torch

    pipe, clip = session.loaded.pipe, session.clip
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if toggles.get("channels_last"):
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if toggles.get("clip_dtype"):
            clip.model.to(dtype=getattr(torch, toggles["clip_dtype"]))
        if toggles.get("tf32"):
            torch.backends.cuda.matmul.allow_tf32 = True
        if toggles.get("compile"):  # the first iteration pays the compilation: read it off iteration_seconds[0]
            saved_forward = pipe.unet.forward
            pipe.unet.forward = torch.compile(pipe.unet.forward, dynamic=False)
        yield
    finally:
        if toggles.get("compile"):
            pipe.unet.forward = saved_forward
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
        if toggles.get("clip_dtype"):
            clip.model.to(dtype=torch.float32)
        if toggles.get("channels_last"):
            pipe.unet.to(memory_format=torch.contiguous_format)
            pipe.vae.to(memory_format=torch.contiguous_format)


def seedselect_variant(
    session: Any, name: str, batch: int, checkpointing: str, iters: int, toggles: dict | None = None
) -> dict:
    """One variant's iterations: `optimise()` itself, or the authors' loop."""
    with experiment(session, toggles or {}):
        row = _seedselect_variant(session, name, batch, checkpointing, iters, (toggles or {}).get("keep_last", 0))
    row["experiment"] = toggles or {}
    return row


def _seedselect_variant(session: Any, name: str, batch: int, checkpointing: str, iters: int, keep_last: int) -> dict:
    import torch

    from rarecli.methods.ddim import encode_text
    from rarecli.methods.seedselect.memory import choose
    from rarecli.methods.seedselect.objective import optimise

    manager = session.loaded.manager
    torch.cuda.empty_cache() if manager.is_cuda else None
    if name == "authors_style":
        objective, starts = objective_for(session, batch, checkpoint=False)
        unet = session.loaded.pipe.unet
        unet.enable_gradient_checkpointing()
        unet.train()  # diffusers checkpoints its blocks only in training mode (no dropout in SD's UNet)
        seed = torch.nn.Parameter(starts.to(manager.device, torch.float32).clone())
        opt = torch.optim.AdamW([seed], lr=0.1, weight_decay=0.01)
        manager.reset_peak_memory()
        seconds, losses = [], []
        try:
            for _ in range(iters):
                with manager.timed() as timing:
                    objective.text = encode_text(session.loaded, PROMPT, 7.5)
                    opt.zero_grad(set_to_none=True)
                    terms = objective(seed)
                    terms.total.sum().backward()
                    opt.step()
                    losses.append(float(terms.total.sum()))
                seconds.append(timing["seconds"])
        finally:
            unet.disable_gradient_checkpointing()
            unet.eval()
        peak = manager.peak_memory_bytes()
        choice = None
    else:
        objective, starts = objective_for(session, batch, checkpoint=True)
        choice = choose(checkpointing, objective, starts.to(manager.device))
        objective.checkpoint = choice.enabled
        objective.keep_last = keep_last
        result = optimise(objective, starts, iters=iters, lr=0.1)
        seconds, losses = result.iteration_seconds, [sum(r["total"] for r in c) for c in zip(*result.curve, strict=True)]
        peak = result.peak_memory.get("bytes")
    after_first = seconds[1:] or seconds
    return {
        "variant": name, "dtype": manager.dtype, "batch": batch, "checkpointing": choice.to_json() if choice else
        "diffusers per-block UNet checkpointing", "iteration_seconds": [round(s, 3) for s in seconds],
        "seconds_per_iteration_after_first": round(sorted(after_first)[len(after_first) // 2], 3),
        "seconds_per_image_iteration": round(sorted(after_first)[len(after_first) // 2] / batch, 3),
        "peak_gib": round(peak / 2**30, 2) if peak else None, "losses": [round(x, 5) for x in losses],
    }  # fmt: skip


def breakdown(session: Any) -> dict:
    """One batch-1 iteration taken apart, checkpointing on: each piece timed alone, synchronised."""
    import torch

    from rarecli.methods.ddim import denoise_step

    manager = session.loaded.manager
    clock = Clock(manager)
    objective, starts = objective_for(session, 1, checkpoint=True)
    seed = starts.to(manager.device).clone().requires_grad_(True)
    n = len(session.schedule)
    out: dict[str, float] = {}
    with torch.no_grad():
        x = seed.detach().float()
        clock(lambda: denoise_step(session.loaded, x, 0, session.text, session.schedule))  # warm
        _, t = clock(lambda: [denoise_step(session.loaded, x, i, session.text, session.schedule) for i in range(n)])
        out["unet_forward_all_steps_no_grad"] = t
        latent = x
        _, t = clock(lambda: objective.semantic(latent, objective.clip_targets))
        out["semantic_pass_forward_no_grad"] = t
    lat = seed.detach().clone().requires_grad_(True)
    _, t = clock(lambda: objective.semantic(lat, objective.clip_targets).sum().backward())
    out["semantic_pass_forward_backward"] = t
    terms, t = clock(lambda: objective(seed))
    out["trajectory_forward_checkpointed_with_3_semantic"] = t
    _, t = clock(lambda: terms.total.sum().backward())
    out["backward_with_recompute"] = t
    opt = torch.optim.AdamW([torch.nn.Parameter(seed.detach().clone())], lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.zeros_like(seed)
    _, t = clock(opt.step)
    out["optimizer_step"] = t
    _, t = clock(lambda: terms.total.detach().cpu())
    out["loss_read_host_sync"] = t
    return {k: round(v, 4) for k, v in out.items()}


def sd3_costs(models: dict, device: str, dtype: str, size: int, steps: int, rounds: int) -> dict:
    """diffusers' SD3 pipeline called directly, against rare's plain sampling, R2F and R2F+."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    from rarecli.backbones.loading import resolve
    from rarecli.llm.schema import Concept, Plan
    from rarecli.methods import registry
    from rarecli.methods.protocol import MethodContext, Request
    from rarecli.methods.r2f_plus.schema import PlusPlan
    from rarecli.runtime.device import DeviceManager, torch_dtype

    manager = DeviceManager(device, dtype)

    folder = resolve(models["sd3"]).location
    direct = StableDiffusion3Pipeline.from_pretrained(folder, torch_dtype=torch_dtype(manager.for_family(("fp16",)).dtype))
    direct.to(device)
    direct.set_progress_bar_config(disable=True)
    context = MethodContext(models["sd3"], None, manager, steps, None, {}, command="bench", height=size, width=size)
    plan = Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 3),))
    plus = PlusPlan.from_json(PLUS_PLAN)
    prepared = {m: registry.get(m).prepare(context) for m in ("sd", "r2f", "aapb", "r2f-plus")}
    requests = {
        "sd": Request(plan.prompt, [0]), "r2f": Request(plan.prompt, [0], plan=plan),
        "aapb": Request(plan.prompt, [0], plan=plan), "r2f-plus": Request(plus.prompt, [0], plan=plus),
    }  # fmt: skip
    rows: dict[str, list] = {"diffusers": [], "sd": [], "r2f": [], "aapb": [], "r2f-plus": []}
    peaks: dict[str, float] = {}

    def call_direct() -> None:
        gen = torch.Generator("cpu").manual_seed(0)
        direct(plan.prompt, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
               max_sequence_length=77, generator=gen)  # fmt: skip

    for _ in range(rounds):
        for name in rows:
            manager.reset_peak_memory()
            with manager.timed() as timing:
                if name == "diffusers":
                    call_direct()
                else:
                    list(prepared[name].generate(requests[name]))
            rows[name].append(round(timing["seconds"], 3))
            peak = manager.peak_memory_bytes()
            peaks[name] = max(peaks.get(name, 0), round(peak / 2**30, 2) if peak else 0)
    best = {k: min(v) for k, v in rows.items()}
    return {
        "size": size, "steps": steps, "dtype": manager.for_family(("fp16",)).dtype, "seconds": rows,
        "peak_gib_with_both_pipelines_resident": peaks,
        "ratio_to_diffusers": {k: round(v / best["diffusers"], 3) for k, v in best.items()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sd3-size", type=int, default=1024)
    parser.add_argument("--sd3-steps", type=int, default=28)
    parser.add_argument("--parts", nargs="*", default=["setup", "seedselect", "breakdown", "nao", "sd3"])
    args = parser.parse_args(argv)

    import torch

    from rarecli.runtime.cache import MODEL_CACHE

    deadline = time.perf_counter() + args.budget
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    models = TINY if args.tiny else MODELS
    size = 64 if args.tiny else args.size
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "cpu",
                              "torch": torch.__version__, "models": models, "size": size, "inner_steps": args.steps}  # fmt: skip

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def left() -> float:
        return deadline - time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="rare-perf-gpu-"))
    three = refs(tmp / "refs3", size, 3)
    five = refs(tmp / "refs5", size, 5)
    half = "auto"
    try:
        if "setup" in args.parts:
            MODEL_CACHE.clear()
            s = session_for(models, half, device, three, args.steps, size)
            cold = s.setup_phases
            s = session_for(models, half, device, three, args.steps, size)
            report["setup"] = {"models_not_loaded": cold, "models_cached": s.setup_phases, "dtype": s.loaded.manager.dtype}
            save()
            print(f"setup {report['setup']}", file=sys.stderr, flush=True)
        if "seedselect" in args.parts:
            rows = report.setdefault("seedselect", [])
            variants = [  # (name, dtype, batch, checkpointing, experiment toggles)
                ("rare_default", "auto", 1, "auto", {}),
                ("rare_bf16_on", "bf16", 1, "on", {}),
                ("rare_bf16_off", "bf16", 1, "off", {}),
                ("exp_bf16_on_keep5", "bf16", 1, "on", {"keep_last": 5}),
                ("exp_bf16_on_keep10", "bf16", 1, "on", {"keep_last": 10}),
                ("exp_bf16_on_channels_last", "bf16", 1, "on", {"channels_last": True}),
                ("exp_bf16_on_clip_bf16", "bf16", 1, "on", {"clip_dtype": "bfloat16"}),
                ("rare_default_batch4", "auto", 4, "auto", {}),
                ("rare_bf16_on_batch4", "bf16", 4, "on", {}),
                ("rare_fp16_on", "fp16", 1, "on", {}),
                ("authors_style", "fp32", 1, "authors", {}),
                ("rare_fp32_on", "fp32", 1, "on", {}),
                ("exp_fp32_on_tf32", "fp32", 1, "on", {"tf32": True}),
                # Last: compiling the UNet's forward and backward takes minutes; worth it only if it pays
                # within a 30-iteration run (the first iteration holds the compilation).
                ("exp_bf16_on_compile", "bf16", 1, "on", {"compile": True}),
            ]
            for name, dtype, batch, mode, toggles in variants:
                if left() < (150 if toggles.get("compile") else 30):
                    rows.append({"variant": name, "skipped": "time budget"})
                    continue
                session = session_for(models, dtype, device, three, args.steps, size, n=batch)
                try:
                    rows.append(seedselect_variant(session, name, batch, mode, args.iters, toggles))
                except Exception as exc:  # noqa: BLE001 - a variant that fails (out of memory) is a result
                    rows.append({"variant": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                    if device != "cpu":
                        torch.cuda.empty_cache()
                print(f"seedselect {rows[-1]}", file=sys.stderr, flush=True)
                save()
            MODEL_CACHE.clear()
        if "sd3" in args.parts and left() > 30:
            report["sd3"] = sd3_costs(models, device, "auto", 64 if args.tiny else args.sd3_size,
                                      4 if args.tiny else args.sd3_steps, rounds=2)  # fmt: skip
            save()
            print(f"sd3 {report['sd3']}", file=sys.stderr, flush=True)
        if "nao" in args.parts and left() > 40:
            nao = {}
            from rarecli.methods.seedselect.memory import choose
            from rarecli.methods.seedselect.objective import optimise

            session_for(models, half, device, three, 2, size)  # models loaded, as the issue measures
            # The inversion cache (keyed by image, prompt, model and settings) starts empty on a fresh machine:
            # the first run inverts and stores, the second reads.
            for run_name in ("first_run", "second_run_cached_inversions"):
                started = time.perf_counter()
                s = session_for(models, half, device, five, args.steps, size, method="nao-seedselect")
                objective, starts = objective_for(s, 1, checkpoint=True)
                objective.checkpoint = choose("auto", objective, starts.to(s.loaded.manager.device)).enabled
                result = optimise(objective, starts, iters=5, lr=0.01)
                s.loaded.manager.synchronize()
                nao[run_name] = {
                    "first_image_seconds": round(time.perf_counter() - started, 2),
                    "setup_phases": s.setup_phases, "iteration_seconds": [round(x, 3) for x in result.iteration_seconds],
                }  # fmt: skip
            report["nao_first_image"] = nao
            save()
            print(f"nao {nao}", file=sys.stderr, flush=True)
            MODEL_CACHE.clear()
        if "breakdown" in args.parts and left() > 30:
            report["breakdown"] = {}
            for dtype in ("auto", "fp32"):
                session = session_for(models, dtype, device, three, args.steps, size)
                report["breakdown"][session.loaded.manager.dtype] = breakdown(session)
                MODEL_CACHE.clear()
            save()
            print(f"breakdown {report['breakdown']}", file=sys.stderr, flush=True)
    finally:
        report["seconds_left"] = round(left(), 1)
        save()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
