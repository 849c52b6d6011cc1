"""`make check-gpu`: every command at its defaults, on every family it supports, and under each dtype,
`--offload` and `--attention-slicing`, on the architecture twins at their real sizes, on a CUDA machine.

Writes one JSON report (rewritten after every cell, so a run cut short keeps what it did): the machine,
the twin builds, and for each cell the command, pass/fail, seconds, peak GPU memory and what was checked:
the command exits 0; it wrote its images; their pixels vary (a NaN decode is written as a black image);
their metadata names the CUDA device, the dtype the family's policy resolves the run's `--dtype` to and,
under fp16, the components kept in fp32. Cells run in priority order and are skipped, and marked so, when
the time budget (`--budget`, seconds) would not cover their estimate.

    python tools/check_gpu.py --out out/check-gpu.json                  # CUDA: the twins, ~7 min on an H200
    python tools/check_gpu.py --out out/check-gpu.json --with-flux      # + FLUX.1-schnell (34 GB twin)
    RARE_TEST_CPU_HALF=1 python tools/check_gpu.py --tiny --out out/check-tiny.json   # the script, on a CPU

Commands run in this process (`rarecli.cli.app.run`), so models load once per group of cells that share
them; a cell's seconds are its command's, models included when it is the first of its group. Peak memory
is `torch.cuda.max_memory_allocated` over the cell, the group's resident models included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

TWIN_MODELS = {
    "SD": "twin:sd21-base",
    "CLIP": "twin:vit-h-14",
    "SD3": "twin:sd3-medium",
    "SD3T5": "twin:sd3-medium-t5",
    "SDXL": "twin:sdxl-base",
    "FLUX": "twin:flux-schnell",
}
TINY_MODELS = {
    "SD": "tiny-sd",
    "CLIP": "tiny-clip",
    "SD3": "tiny-sd3",
    "SD3T5": "tiny-sd3",
    "SDXL": "tiny-sdxl",
    "FLUX": "tiny-flux",
}
FAMILY_OF = {"SD": "sd", "SD3": "sd3", "SD3T5": "sd3", "SDXL": "sdxl", "FLUX": "flux"}

R2F_PLAN = {
    "schema": "rare.r2f.plan",
    "version": 1,
    "prompt": "a hairy frog",
    "concepts": [{"rare": "hairy frog", "frequent": "hairy dog", "level": 3}],
}
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


@dataclass
class Cell:
    name: str
    family: str  # key of the model the images come from: SD, SD3, SD3T5, SDXL, FLUX
    args: list[str]  # with {SD}, {CLIP}, ... and {refs}, {plan}, {plus}, {data}, {root}, {out} placeholders
    dtype: str = "auto"
    flags: tuple[str, ...] = ()  # --offload, --attention-slicing
    estimate: float = 10.0  # seconds on an H200, models loaded
    outputs: str = "stdout"  # where the images are: stdout paths, or a folder: bench, augment
    flag: str | None = None  # needs --with-<flag>
    extra: dict[str, Any] = field(default_factory=dict)

    def twins(self) -> set[str]:
        keys = {self.family} | {k for k in TWIN_MODELS if "{" + k + "}" in " ".join(self.args)}
        return {TWIN_MODELS[k] for k in keys}


SEEDSELECT = ["seedselect", "a tiger cat", "--refs", "{refs}", "--model", "{SD}", "--clip-model", "{CLIP}"]


def cells() -> list[Cell]:
    """The matrix, in priority order: defaults first (R2F and R2F+ on SD3 at 1024² were the crash)."""
    plain = ["seedselect", "a tiger cat", "--method", "sd", "--inner-steps", "8"]
    r2f = ["r2f", "generate", "{plan}", "--steps", "8"]
    plus = ["r2f", "generate", "{plus}", "--steps", "8"]
    bench = ["bench", "rarebench", "--method", "sd", "--steps", "4", "--judge", "clipscore", "--judge-model", "{CLIP}",
             "--data", "{data}", "-c", "S-property", "--limit", "1"]
    out: list[Cell] = [
        # Defaults, every command: SD3 at 1024² in its default dtype was the crash.
        Cell("sd3/r2f/auto", "SD3", [*r2f, "--model", "{SD3}"], estimate=15),
        Cell("sd3/r2f-plus/auto", "SD3", [*plus, "--model", "{SD3}"], estimate=15),
        Cell("sd3/aapb/auto", "SD3", [*r2f, "--method", "aapb", "--model", "{SD3}"], estimate=6),
        Cell("sd3/sd/auto", "SD3", [*plain, "--model", "{SD3}"], estimate=4),
        Cell("sd3/bench-sd/auto", "SD3", [*bench, "--model", "{SD3}"], estimate=8, outputs="bench"),
        Cell("sd21/sd/auto", "SD", [*plain, "--model", "{SD}"], estimate=8),
        Cell("sd21/seedselect/auto", "SD", [*SEEDSELECT, "--iters", "2", "--inner-steps", "8"], estimate=12),
        Cell("sd21/nao-seedselect/auto", "SD", [*SEEDSELECT, "--method", "nao-seedselect", "--iters", "2",
             "--inner-steps", "8", "--inversion-steps", "10"], estimate=8),
        Cell("sd21/interpolate-render/auto", "SD", ["interpolate", "1", "2", "--method", "nao", "--steps", "3",
             "--model", "{SD}", "--render", "a tiger cat", "--render-steps", "8"], estimate=4),
        Cell("sd21/augment/auto", "SD", ["augment", "{root}", "--model", "{SD}", "--clip-model", "{CLIP}",
             "--prompt-template", "a {}", "--per-class", "1", "--iters", "1", "--steps", "8"],
             estimate=6, outputs="augment"),
        Cell("sd21/bench-sd/auto", "SD", [*bench, "--model", "{SD}"], estimate=5, outputs="bench"),
        Cell("sd21/aapb/auto", "SD", [*r2f, "--method", "aapb", "--model", "{SD}"], estimate=4),
        # Issue 21's must-show: auto's probe no longer raises the peak above checkpointing on (fp32, 20 steps).
        Cell("sd21/seedselect/fp32/checkpointing-on", "SD", [*SEEDSELECT, "--iters", "1", "--inner-steps", "20",
             "--checkpointing", "on"], dtype="fp32", estimate=15),
        Cell("sd21/seedselect/fp32/checkpointing-auto", "SD", [*SEEDSELECT, "--iters", "1", "--inner-steps", "20",
             "--checkpointing", "auto"], dtype="fp32", estimate=8),
        Cell("sd21/sd/fp32", "SD", [*plain, "--model", "{SD}"], dtype="fp32", estimate=3),
        # Each dtype: fp16 puts the VAE in fp32 (the seam), bf16 is auto's choice on this GPU for SD.
        Cell("sd21/sd/fp16", "SD", [*plain, "--model", "{SD}"], dtype="fp16", estimate=8),
        Cell("sd21/seedselect/fp16", "SD", [*SEEDSELECT, "--iters", "2", "--inner-steps", "8"], dtype="fp16",
             estimate=6),
        Cell("sd21/sd/bf16", "SD", [*plain, "--model", "{SD}"], dtype="bf16", estimate=3),
        Cell("sd3/r2f/bf16", "SD3", [*r2f, "--model", "{SD3}"], dtype="bf16", estimate=12),
        Cell("sd3/r2f-plus/bf16", "SD3", [*plus, "--model", "{SD3}"], dtype="bf16", estimate=10),
        Cell("sd3/r2f/fp32", "SD3", [*r2f, "--model", "{SD3}"], dtype="fp32", estimate=15),
        Cell("sd3/aapb/fp32", "SD3", [*r2f, "--method", "aapb", "--model", "{SD3}"], dtype="fp32", estimate=5),
        Cell("sdxl/sd/auto", "SDXL", [*plain, "--model", "{SDXL}"], estimate=12),
        Cell("sdxl/r2f/auto", "SDXL", [*r2f, "--model", "{SDXL}"], estimate=4),
        Cell("sdxl/aapb/auto", "SDXL", [*r2f, "--method", "aapb", "--model", "{SDXL}"], estimate=4),
        Cell("sdxl/r2f/fp16", "SDXL", [*r2f, "--model", "{SDXL}"], dtype="fp16", estimate=12),
        Cell("sd3-t5/r2f/auto", "SD3T5", [*r2f, "--model", "{SD3T5}", "--t5"], estimate=20),
        Cell("sd3/r2f/offload", "SD3", [*r2f, "--model", "{SD3}"], flags=("--offload",), estimate=20),
        Cell("sd21/sd/offload", "SD", [*plain, "--model", "{SD}"], flags=("--offload",), estimate=10),
        Cell("sd21/seedselect/offload", "SD", [*SEEDSELECT, "--iters", "1", "--inner-steps", "4"],
             flags=("--offload",), estimate=8),
        Cell("sd3/r2f/attention-slicing", "SD3", [*r2f, "--model", "{SD3}"], flags=("--attention-slicing",),
             estimate=15),
        Cell("sd21/sd/attention-slicing", "SD", [*plain, "--model", "{SD}"], flags=("--attention-slicing",),
             estimate=8),
        Cell("sd21/seedselect/attention-slicing", "SD", [*SEEDSELECT, "--iters", "1", "--inner-steps", "4"],
             flags=("--attention-slicing",), estimate=5),
        Cell("flux/r2f/auto", "FLUX", ["r2f", "generate", "{plan}", "--model", "{FLUX}"], estimate=60, flag="flux"),
        Cell("flux/sd/auto", "FLUX", ["seedselect", "a tiger cat", "--method", "sd", "--inner-steps", "4",
             "--model", "{FLUX}"], estimate=5, flag="flux"),
    ]  # fmt: skip
    return out


# -- inputs ----------------------------------------------------------------------------------------


def make_inputs(folder: Path, size: int) -> dict[str, str]:
    """Reference images (seeded noise: their content does not change what is checked), plans, prompts."""
    import numpy as np
    from PIL import Image

    refs = folder / "refs"
    root = folder / "root" / "tiger_cat"
    for d in (refs, root):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(refs / f"ref_{i}.png")
        if i < 3:
            Image.fromarray(pixels).save(root / f"ref_{i}.png")
    (folder / "plan.jsonl").write_text(json.dumps(R2F_PLAN) + "\n", encoding="utf-8")
    (folder / "plus.json").write_text(json.dumps(PLUS_PLAN), encoding="utf-8")
    data = folder / "prompts"
    data.mkdir(exist_ok=True)
    (data / "rarebench_single_1property.txt").write_text("a frog with fur\n", encoding="utf-8")
    return {
        "refs": str(refs),
        "root": str(folder / "root"),
        "plan": str(folder / "plan.jsonl"),
        "plus": str(folder / "plus.json"),
        "data": str(data),
    }


# -- twins -----------------------------------------------------------------------------------------


def build_twins(names: set[str], log: Path) -> dict[str, Any]:
    """Build the twins not yet built, in parallel processes; seconds per twin."""
    from rarecli.backbones.registry import EMBEDDED

    todo = sorted(n for n in names if n.startswith("twin:") and not EMBEDDED[n].built)
    started = time.perf_counter()
    procs = {}
    for name in todo:
        code = f"from rarecli.backbones.registry import EMBEDDED, ensure_built; ensure_built(EMBEDDED[{name!r}])"
        with open(log.with_suffix(f".{name.split(':')[1]}.log"), "w") as fh:
            procs[name] = (subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT), time.perf_counter())
    out: dict[str, Any] = {}
    for name, (proc, t0) in procs.items():
        rc = proc.wait()
        out[name] = {"returncode": rc, "seconds": round(time.perf_counter() - t0, 1)}
    for name in [n for n, r in out.items() if r["returncode"] != 0]:
        # A build that failed on the GPU is tried once more on the CPU (slower, the same code otherwise).
        t0 = time.perf_counter()
        code = f"from rarecli.backbones.registry import EMBEDDED, ensure_built; ensure_built(EMBEDDED[{name!r}])"
        with open(log.with_suffix(f".{name.split(':')[1]}.cpu.log"), "w") as fh:
            rc = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}).returncode  # fmt: skip
        out[name]["retried_on_cpu"] = {"returncode": rc, "seconds": round(time.perf_counter() - t0, 1)}
    return {"built": out, "already_built": sorted(names - set(todo)), "seconds": round(time.perf_counter() - started, 1)}


# -- one cell --------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_stderr(path: Path):
    """The process's stderr (fd 2: rich, warnings, C libraries) into `path` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def expected_dtype(cell: Cell, device: str) -> str:
    from rarecli.backbones.families import find_family
    from rarecli.runtime.device import resolve_dtype

    return resolve_dtype(cell.dtype, device, find_family(FAMILY_OF[cell.family]).dtype.auto)


def images_of(cell: Cell, stdout: str, out: Path) -> list[Path]:
    if cell.outputs == "bench":
        return sorted((out / "images").glob("*/*.png"))
    if cell.outputs == "augment":
        return sorted(out.glob("*/*.png"))
    return [Path(line) for line in stdout.splitlines() if line.endswith(".png")]


def check_images(cell: Cell, images: list[Path], device: str) -> list[str]:
    """What is wrong with the cell's images (empty: nothing)."""
    import numpy as np
    from PIL import Image

    from rarecli.backbones.families import find_family
    from rarecli.io.images import read_metadata

    problems = []
    if not images:
        return ["no image written"]
    want = expected_dtype(cell, device)
    fp32 = set(find_family(FAMILY_OF[cell.family]).dtype.fp32_under_fp16) if want == "fp16" else set()
    for path in images:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        name = path.name
        if ".mask-" in name or name.endswith(".boxes.png"):
            continue  # drawings of the plan, not decoded images
        if pixels.std() <= 1.0:
            problems.append(f"{name}: constant pixels (a non-finite decode)")
        meta = read_metadata(path).get("rare", {})
        if "strip" in name:
            continue  # interpolate's strip is a collage of the checked images
        if not str(meta.get("device", "")).startswith(device.split(":")[0]):
            problems.append(f"{name}: device {meta.get('device')!r}, expected {device}")
        if meta.get("dtype") != want:
            problems.append(f"{name}: dtype {meta.get('dtype')!r}, expected {want}")
        got32 = {k for k, v in (meta.get("component_dtypes") or {}).items() if v == "float32"}
        if want == "fp16" and got32 != fp32:
            problems.append(f"{name}: fp32 components {sorted(got32)}, policy says {sorted(fp32)}")
    return problems


def run_cell(cell: Cell, models: dict[str, str], inputs: dict[str, str], work: Path, device: str) -> dict[str, Any]:
    import torch

    from rarecli.cli.app import run

    out = work / cell.name.replace("/", "_")
    values = {**models, **inputs}
    args = []
    for a in cell.args:
        for key, value in values.items():
            a = a.replace("{" + key + "}", value)
        args.append(a)
    args += ["--dtype", cell.dtype, "--device", device, *cell.flags, "--out", str(out)]
    if cell.outputs == "stdout":
        args.append("--quiet")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stdout = io.StringIO()
    log = work / f"{cell.name.replace('/', '_')}.stderr"
    started = time.perf_counter()
    with captured_stderr(log), contextlib.redirect_stdout(stdout):
        code = run(args)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if cuda else None
    err = log.read_text(errors="replace").strip().splitlines()
    problems = [] if code == 0 else [f"exit {code}: " + next((e for e in reversed(err) if e.startswith("Error")), err[-1] if err else "")]
    if code == 0:
        problems += check_images(cell, images_of(cell, stdout.getvalue(), out), device)
    record: dict[str, Any] = {
        "cell": cell.name,
        "command": "rare " + " ".join(args),
        "dtype": expected_dtype(cell, device),
        "passed": not problems,
        "problems": problems,
        "seconds": round(seconds, 2),
        "peak_gib": round(peak / 2**30, 2) if peak is not None else None,
    }
    if cell.name.startswith("sd21/seedselect/fp32/checkpointing"):
        runs = sorted(out.glob("*.run.json"))
        if runs:
            rec = json.loads(runs[0].read_text())
            record["checkpointing"] = rec.get("checkpointing")
            record["run_peak_gib"] = round((rec.get("peak_memory") or {}).get("bytes", 0) / 2**30, 2)
            record["seconds_per_iteration"] = rec.get("seconds_per_iteration")
    return record


def machine() -> dict[str, Any]:
    import torch

    from rarecli.runtime.report import environment_report

    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host_python": platform.python_version()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                    bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda)  # fmt: skip
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)  # fmt: skip
            info["driver"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    info["versions"] = {k: v for k, v in environment_report().items() if k in (
        "rare", "python", "torch", "diffusers", "transformers", "accelerate", "huggingface-hub", "safetensors")}  # fmt: skip
    return info


def group_key(cell: Cell) -> tuple:
    return (cell.family, cell.dtype, cell.flags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for builds and cells together")
    parser.add_argument("--with-flux", action="store_true", help="also FLUX.1-schnell (a 34 GB twin)")
    parser.add_argument("--only", nargs="*", default=None, help="cell names (prefixes) to run")
    parser.add_argument("--tiny", action="store_true", help="the embedded tiny backbones instead of the twins")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from rarecli.runtime.cache import MODEL_CACHE

    deadline = time.perf_counter() + args.budget
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    models = TINY_MODELS if args.tiny else TWIN_MODELS
    wanted = [c for c in cells() if (c.flag is None or (c.flag == "flux" and args.with_flux))]
    if args.only:
        wanted = [c for c in wanted if any(c.name.startswith(p) for p in args.only)]
    if device == "cpu" and not args.tiny:
        report = {"machine": machine(), "note": "no CUDA device: nothing was run (use --tiny to try the script)"}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(args.out)
        return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="rare-check-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "models": models, "budget_seconds": args.budget, "cells": []}

    def save() -> None:
        passed = sum(c.get("passed", False) for c in report["cells"])
        report["summary"] = {
            "cells": len(wanted), "passed": passed,
            "failed": sum(c.get("passed") is False for c in report["cells"]),
            "skipped": sum("skipped" in c for c in report["cells"]),
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    if not args.tiny:
        needed = set().union(*(c.twins() for c in wanted))
        report["twin_builds"] = build_twins(needed, work / "build.log")
        save()
    inputs = make_inputs(work / "inputs", 512)
    current = None
    for cell in wanted:
        if "--offload" in cell.flags and device == "cpu":
            report["cells"].append({"cell": cell.name, "skipped": "--offload needs CUDA"})
            continue
        left = deadline - time.perf_counter()
        first_of_group = group_key(cell) != current
        if left < cell.estimate * (2 if first_of_group else 1):
            report["cells"].append({"cell": cell.name, "skipped": f"time budget: {left:.0f} s left"})
            save()
            continue
        if first_of_group:
            MODEL_CACHE.clear()
            current = group_key(cell)
        try:
            record = run_cell(cell, models, inputs, work, device)
        except Exception as exc:  # a check that crashed is a failed cell, not a lost report
            record = {"cell": cell.name, "passed": False, "problems": [f"{type(exc).__name__}: {exc}"]}
        record["first_of_group"] = first_of_group
        report["cells"].append(record)
        save()
        mark = "pass" if record.get("passed") else "FAIL"
        print(f"{mark} {cell.name} {record.get('seconds')} s, peak {record.get('peak_gib')} GiB "
              f"{'; '.join(record.get('problems', []))[:300]}", file=sys.stderr, flush=True)  # fmt: skip
    save()
    print(args.out)
    s = report["summary"]
    return 0 if s["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
