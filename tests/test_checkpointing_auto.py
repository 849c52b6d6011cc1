"""`--checkpointing auto|on|off`: the activations are measured, the rule is the documented one, and the
choice is recorded where the run's figures are."""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.methods.seedselect.config import SeedSelectConfig
from rarecli.methods.seedselect.memory import FREE_SHARE, choose, decide, resident_storages, saved_bytes
from rarecli.methods.seedselect.session import prepare
from rarecli.toyworld import REFS_DIR
from tests.conftest import rare_cmd


def _objective(session, n):
    import torch

    from rarecli.methods.seedselect.objective import Objective

    plans = session.plans[:n]
    return Objective(
        session.loaded, session.clip, session.text, session.schedule,
        torch.stack([session.targets.clip_centroid(p.subset) for p in plans]),
        torch.stack([session.targets.latent_mean(p.subset) for p in plans]),
    ), torch.stack([p.start for p in plans])  # fmt: skip


@pytest.fixture(scope="module")
def session():
    from rarecli.runtime.device import DeviceManager

    config = SeedSelectConfig(
        "a handwritten digit seven", REFS_DIR / "seven", model="toy-digits", num_images=4, inner_steps=3
    )
    return prepare(config, DeviceManager("cpu", "fp32"))


def test_the_measured_activations_grow_with_the_batch_and_match_what_backward_keeps(session):
    import torch

    one, seeds1 = _objective(session, 1)
    four, seeds4 = _objective(session, 4)
    x1 = seeds1.clone().requires_grad_(True)
    x4 = seeds4.clone().requires_grad_(True)
    weights = resident_storages(*(c for c in session.loaded.pipe.components.values() if hasattr(c, "parameters")))
    step1, step4 = saved_bytes(one.step, x1, 0, resident=weights), saved_bytes(four.step, x4, 0, resident=weights)
    assert step1 > 0 and 3.5 < step4 / step1 <= 4.0  # activations scale with the batch; the weights are left out
    assert saved_bytes(one.step, x1, 0) > step1  # ... which backward does hold references to
    # Nothing is saved where no gradient is asked for: the hooks see what backward would read, no more.
    with torch.no_grad():
        assert saved_bytes(one.step, x1, 0) == 0


def test_the_probe_keeps_nothing_it_measures_and_counts_each_storage_once():
    """Issue 21: auto's probe held every activation it measured, so at 512² in fp32 it raised the run's
    peak by 9 GB over checkpointing on. Now each saved tensor is freed as soon as the forward moves on
    (freed addresses get reused, and are still counted as new storages)."""
    import weakref

    import torch

    kept = []
    refs: list = []

    def fn(x):
        for _ in range(8):
            y = x * 1.5  # a fresh 1 MiB tensor, which sin() saves for backward
            kept.append(sum(r() is not None for r in refs))  # earlier ones still alive?
            refs.append(weakref.ref(y))
            # ... and a view of it, saved again by pow: the same storage, counted once
            x = y.sin() + (y.view(-1)[:10] ** 2).sum()
        return x

    x = torch.randn(256, 1024, requires_grad=True)
    got = saved_bytes(fn, x)
    assert kept == [0] * 8  # nothing the probe saw outlived the next operation
    assert got == 8 * 256 * 1024 * 4  # eight storages of 1 MiB: the views add nothing


def test_auto_decides_by_the_rule_and_records_its_figures(session):
    objective, seeds = _objective(session, 2)
    choice = choose("auto", objective, seeds)
    n = len(session.schedule)
    assert choice.unchecked_bytes == n * choice.step_bytes + 3 * choice.semantic_bytes  # 3 semantic steps
    assert choice.enabled == decide(choice.unchecked_bytes, choice.free_bytes)
    assert not choice.enabled  # toy-digits' activations are a few MB: they fit anywhere this runs
    assert "fits in 50%" in choice.reason
    forced = choose("on", objective, seeds)
    assert forced.enabled and forced.step_bytes is None and forced.reason == "--checkpointing on"
    assert not choose("off", objective, seeds).enabled


def test_the_rule_turns_checkpointing_on_when_the_activations_would_not_fit_comfortably():
    need = 10 * 2**30
    assert decide(need, free=int(need / FREE_SHARE) + 1) is False
    assert decide(need, free=int(need / FREE_SHARE) - 2) is True
    assert decide(need, free=need) is True  # it would fit, but not with room for backward's buffers
    assert decide(need, free=None) is True  # no figure for free memory: the safe choice


@pytest.mark.parametrize("mode, enabled", [("auto", False), ("on", True), ("off", False)])
def test_the_run_record_says_what_checkpointing_ran(tmp_path, mode, enabled):
    out = tmp_path / mode
    done = subprocess.run(
        [*rare_cmd(), "seedselect", "a handwritten digit seven", "--refs", str(REFS_DIR / "seven"),
         "--model", "toy-digits", "--iters", "1", "--inner-steps", "2", "--checkpointing", mode, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = out.glob("*.run.json")
    choice = json.loads(record.read_text())["checkpointing"]
    assert choice["mode"] == mode and choice["enabled"] is enabled
    assert ("checkpointing off (auto:" in done.stderr) is (mode == "auto")


def test_an_unknown_checkpointing_mode_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [*rare_cmd(), "seedselect", "x", "--refs", str(REFS_DIR / "seven"), "--model", "toy-digits",
         "--checkpointing", "sometimes", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "sometimes" in done.stderr
