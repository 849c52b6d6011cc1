"""Test-wide setup: offline, and one throwaway cache for the embedded backbones per session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub: tests must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
# One OpenMP thread (inherited by the CLI subprocesses): the tiny models gain nothing from more, and
# with two threads a run slows down ~15x whenever another process holds a core (measured: a 30-iteration
# seedselect took 18 s with one thread, 267 s with two, beside one busy process on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RARE_CACHE_DIR", tempfile.mkdtemp(prefix="rare-test-cache-"))
# An empty config of the tests' own, so a developer's ~/.config/rare/config.yaml never changes a test.
os.environ["RARE_CONFIG"] = os.path.join(os.environ["RARE_CACHE_DIR"], "config.yaml")
Path(os.environ["RARE_CONFIG"]).write_text("# empty: the tests' own config\n", encoding="utf-8")
os.environ.pop("RARE_DEBUG", None)

REPO = Path(__file__).resolve().parent.parent


def rare_cmd() -> list[str]:
    """The installed `rare` entry point of this interpreter's environment."""
    exe = Path(sys.executable).parent / "rare"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rarecli"]


def interruptible() -> None:
    """preexec_fn for a child that a test will Ctrl-C: a shell starts background jobs with SIGINT
    ignored, children inherit that, and Python then installs no KeyboardInterrupt handler, so the
    child would run to the end. Restore the default disposition so the child behaves as in a terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cpu():
    from rarecli.runtime.device import DeviceManager

    return DeviceManager("cpu", "fp32")


@pytest.fixture
def tiny_sd(cpu):
    from rarecli.backbones.loading import load_pipeline

    return load_pipeline("tiny-sd", cpu)
