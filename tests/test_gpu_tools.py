"""`make check-gpu`'s script, tried where CI runs: on the tiny backbones it runs its cells and checks
their images; without CUDA and without --tiny it says so and runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "tools" / "check_gpu.py"


def test_check_gpu_on_the_tiny_backbones_checks_each_cells_images(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "RARE_TEST_CPU_HALF": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out), "--work", str(tmp_path / "work"),
         "--only", "sd3/r2f/auto", "sd21/sd/fp16", "sd21/sd/offload"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    cells = {c["cell"]: c for c in report["cells"]}
    assert cells["sd3/r2f/auto"]["passed"] and cells["sd21/sd/fp16"]["passed"]
    assert cells["sd21/sd/fp16"]["dtype"] == "fp16" and cells["sd3/r2f/auto"]["dtype"] == "fp32"  # auto on a CPU
    assert "--offload needs CUDA" in cells["sd21/sd/offload"]["skipped"]
    assert report["summary"] == {"cells": 3, "passed": 2, "failed": 0, "skipped": 1}
    assert report["machine"]["versions"]["rare"]


def test_check_gpu_without_a_gpu_runs_nothing_and_says_so(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    assert done.returncode == 1 and "no CUDA device: nothing was run" in report["note"]
    assert "cells" not in report
