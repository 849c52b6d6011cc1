"""Exit codes and error lines follow docs/architecture.md: 0 ok, 1 handled, 2 usage, 130 interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from rarecli.cli.app import run
from tests.conftest import interruptible, rare_cmd


def test_usage_error_exits_2(capsys):
    assert run(["seedselect", "frog", "--method", "nonsense"]) == 2
    assert run(["no-such-command"]) == 2


def test_handled_error_is_one_line_with_hint(tmp_path):
    out = subprocess.run(
        rare_cmd() + ["seedselect", "frog", "--method", "sd", "--model", str(tmp_path / "nope"), "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("Error: model folder not found"), out.stderr
    assert lines[1].startswith("Hint: ")
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_unavailable_device_is_a_handled_error():
    out = subprocess.run(
        rare_cmd() + ["seedselect", "frog", "--method", "sd", "--model", "tiny-sd", "--device", "cuda:3"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "Error: --device cuda:3" in out.stderr


def test_unknown_bench_method_is_a_handled_error(tmp_path, capsys):
    assert run(["bench", "rarebench", "--out", str(tmp_path / "run"), "--method", "dreambooth"]) == 1
    assert "Error: unknown method 'dreambooth'" in capsys.readouterr().err


def test_rare_debug_shows_traceback(tmp_path):
    env = {**os.environ, "RARE_DEBUG": "1"}
    out = subprocess.run(
        rare_cmd() + ["seedselect", "frog", "--method", "sd", "--model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr


def test_ctrl_c_exits_130_and_leaves_no_partial_file(tmp_path):
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        rare_cmd()
        + [
            "seedselect",
            "frog",
            "--method",
            "sd",
            "--model",
            "tiny-sd",
            "--device",
            "cpu",
            "--num-images",
            "500",
            "--inner-steps",
            "2",
            "--out",
            str(out_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    # Interrupt once images are being written, i.e. in the middle of real work.
    deadline = time.time() + 120
    while time.time() < deadline and not (out_dir.exists() and len(list(out_dir.glob("*.png"))) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not list(out_dir.glob("*.part")) and not list(out_dir.glob(".rare-*"))
    pngs = sorted(out_dir.glob("*.png"))
    assert 2 <= len(pngs) < 500
    from rarecli.io.images import open_image

    for p in pngs:  # everything that was written is complete
        open_image(p)
