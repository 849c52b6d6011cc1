"""Faults, second round (issue 25), classes 7, 8, 9 and 12: non-finite numbers, edited run folders,
special files, and --force moving folders that are not rare's. Each test failed on the commit before
the fix (the note of issue 25 lists them)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rarecli.cli.app import run
from rarecli.toyworld import REFS_DIR
from tests.bench_helpers import write_prompts
from tests.conftest import rare_cmd

SEVEN = REFS_DIR / "seven"
BENCH = ["--method", "sd", "--model", "tiny-sd", "--steps", "1", "--judge", "clipscore", "--judge-model", "tiny-clip",
         "-c", "S-property", "--device", "cpu", "--dtype", "fp32"]  # fmt: skip


# -- 7: non-finite numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["seedselect", "x", "--refs", str(SEVEN), "--guidance", "1e300"], "1e+300 is not in [0, 100]"),
        (["seedselect", "x", "--refs", str(SEVEN), "--lr", "1e300"], "is not in (0, 10]"),
        (["seedselect", "x", "--refs", str(SEVEN), "--lr", "nan"], "nan is not in (0, 10]"),
        (["r2f", "generate", "-", "--guidance", "inf"], "inf is not in [0, 100]"),
        (["interpolate", "1", "2", "--render", "x", "--guidance", "-1"], "-1.0 is not in [0, 100]"),
    ],
)
def test_numeric_options_are_finite_and_bounded(args, says, capsys):
    assert run(args) == 2
    assert says in capsys.readouterr().err


def _seedselect(**kw):
    from rarecli.methods.seedselect.config import SeedSelectConfig
    from rarecli.methods.seedselect.run import run as run_seedselect
    from rarecli.runtime.device import DeviceManager

    config = SeedSelectConfig("a handwritten digit seven", SEVEN, model="toy-digits", inner_steps=2, **kw)
    return run_seedselect(config, DeviceManager("cpu", "fp32"))


def test_a_loss_that_is_never_finite_is_an_error_not_a_key_error(tmp_path):
    """The library takes any number (the CLI bounds it): a guidance of 1e300 makes every loss NaN."""
    from rarecli.errors import RareError

    with pytest.raises(RareError, match="before any finite value: there is no seed to keep"):
        _seedselect(iters=3, guidance=1e300, out=tmp_path)
    assert not list(tmp_path.glob("*"))


def test_a_loss_that_turns_non_finite_stops_and_keeps_the_best_finite_seed(tmp_path, capsys):
    result = _seedselect(iters=4, lr=1e30, patience=None, out=tmp_path)  # the first step throws the seed far off
    (record_path,) = result.runs
    record = json.loads(Path(record_path).read_text())
    assert record["stopped_non_finite"] and record["stopped_non_finite"].startswith("non-finite loss at iteration")
    assert all(math.isfinite(row["total"]) for row in record["loss_curve"])
    assert math.isfinite(record["loss"]["total"]) and Path(result.images[0]).is_file()
    assert "turned non-finite" in capsys.readouterr().err


def test_an_image_that_decodes_to_nan_is_an_error_not_a_black_png(tmp_path):
    from rarecli.errors import RareError
    from rarecli.llm.schema import Plan
    from rarecli.methods.r2f.generate import R2FConfig
    from rarecli.methods.r2f.generate import run as run_r2f
    from rarecli.runtime.device import DeviceManager

    config = R2FConfig(plans=[Plan("a frog")], model="tiny-sd3", steps=2, guidance=1e300, out=tmp_path / "out")
    with pytest.raises(RareError, match="decoded non-finite pixels"):
        list(run_r2f(config, DeviceManager("cpu", "fp32")))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    data = write_prompts(base / "prompts")
    out = base / "run"
    assert run(["bench", "rarebench", "--out", str(out), "--data", str(data), "--limit", "2", "--quiet", *BENCH]) == 0
    return out, data


def _copy_run(bench_run, tmp_path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(bench_run[0], out)
    return out


def test_json_output_is_strict_even_for_a_nan_score(bench_run, tmp_path, capsys):
    from rarecli.cli._output import strict

    assert strict({"a": [float("nan"), 1.0, float("inf")]}) == {"a": [None, 1.0, None]}
    out = _copy_run(bench_run, tmp_path)
    config = json.loads((out / "config.json").read_text())
    config["prompts"]["count"]["S-property"] = 0  # no expected items: a category with no score
    (out / "config.json").write_text(json.dumps(config))
    assert run(["bench", "report", str(out), "--json"]) == 0
    text = capsys.readouterr().out

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    json.loads(text, parse_constant=refuse)


# -- 8: files inside run folders are validated -----------------------------------------------------


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"schema": 1}', "{not json"])
def test_a_damaged_config_is_named_and_never_moved_by_force(bench_run, tmp_path, content, capsys):
    out = _copy_run(bench_run, tmp_path)
    (out / "config.json").write_text(content)
    args = ["bench", "rarebench", "--out", str(out), "--data", str(bench_run[1]), "--limit", "2", *BENCH]
    for extra in ([], ["--force"]):
        assert run([*args, *extra]) == 1
        err = capsys.readouterr().err
        assert "config.json" in err and "unexpected" not in err
    assert (out / "config.json").read_text() == content
    assert run(["bench", "report", str(out)]) == 1
    assert "unexpected" not in capsys.readouterr().err


@pytest.mark.parametrize("content", ["[1, 2]", '{"status": "ok", "category": "S-property", "score": "high"}', '{"stat'])
def test_a_damaged_item_file_is_named_and_made_again(bench_run, tmp_path, content, capsys):
    out = _copy_run(bench_run, tmp_path)
    (item,) = sorted((out / "items").glob("*/p000_i00.json"))
    item.write_text(content)
    assert run(["bench", "report", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)["runs"][0]
    assert summary["categories"]["S-property"]["missing"] == 1 and "unexpected" not in captured.err
    assert "damaged item file" in captured.err and "makes them again" in captured.err
    args = ["bench", "rarebench", "--out", str(out), "--data", str(bench_run[1]), "--limit", "2", "--json", *BENCH]
    assert run(args) == 0
    captured = capsys.readouterr()
    assert "1 damaged item file(s) will be made again" in captured.err
    assert json.loads(captured.out)["categories"]["S-property"]["ok"] == 2
    assert json.loads(item.read_text())["status"] == "ok"


def _augment(root: Path, dataset: Path, *extra: str) -> list[str]:
    return ["augment", str(root), "--model", "toy-digits", "--prompt-template", "a handwritten digit {}", "--steps",
            "2", "--per-class", "2", "--iters", "1", "--classes", "seven", "--out", str(dataset), *extra]  # fmt: skip


def test_a_truncated_png_in_a_dataset_is_made_again(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    assert run(_augment(REFS_DIR, dataset, "--quiet")) == 0
    capsys.readouterr()
    first = sorted((dataset / "seven").glob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:-40])
    assert run(_augment(REFS_DIR, dataset, "--json")) == 0
    captured = capsys.readouterr()
    assert "is damaged" in captured.err and len(json.loads(captured.out)["written"]) == 1
    from rarecli.io.inputs import png_is_complete

    assert png_is_complete(first) and list((dataset / "seven").glob("*.damaged-*"))


# -- 9: special files never block ------------------------------------------------------------------


def _finishes(cmd: list[str], seconds: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds)


def test_a_fifo_named_png_in_a_dataset_does_not_hang_the_resume(tmp_path):
    dataset = tmp_path / "dataset"
    assert run(_augment(REFS_DIR, dataset, "--quiet")) == 0
    first = sorted((dataset / "seven").glob("*.png"))[0]
    first.unlink()
    os.mkfifo(first)
    done = _finishes(rare_cmd() + _augment(REFS_DIR, dataset, "--json"))
    assert done.returncode == 0, done.stderr
    assert "is damaged" in done.stderr and first.is_file()


def test_a_fifo_item_file_does_not_hang_the_report(bench_run, tmp_path):
    out = _copy_run(bench_run, tmp_path)
    (item,) = sorted((out / "items").glob("*/p001_i00.json"))
    item.unlink()
    os.mkfifo(item)
    done = _finishes(rare_cmd() + ["bench", "report", str(out), "--json"], seconds=60)
    assert done.returncode == 0 and "not a regular file" in done.stderr


def test_a_fifo_given_as_a_plan_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "plans.jsonl"
    os.mkfifo(fifo)
    done = _finishes(rare_cmd() + ["r2f", "generate", str(fifo), "--model", "tiny-sd3"], seconds=60)
    assert done.returncode == 1 and "not a regular file" in done.stderr


# -- 12: --force moves only what rare wrote --------------------------------------------------------


def test_force_never_moves_a_folder_that_holds_the_input(tmp_path, capsys):
    parent = tmp_path / "parent"
    root = parent / "root"
    (root / "seven").mkdir(parents=True)
    for ref in sorted(SEVEN.iterdir())[:2]:
        (root / "seven" / ref.name).write_bytes(ref.read_bytes())
    (parent / "notes.txt").write_text("mine")
    assert run(_augment(root, parent, "--force")) == 1
    err = capsys.readouterr().err
    assert "--out must not contain ROOT" in err
    assert root.is_dir() and (parent / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("*.superseded-*"))


def test_force_never_moves_a_folder_rare_did_not_make(tmp_path, capsys, monkeypatch):
    other = tmp_path / "work"
    (other / "photos").mkdir(parents=True)
    (other / "photos" / "a.txt").write_text("mine")
    monkeypatch.chdir(other)
    assert run(_augment(REFS_DIR, Path("."), "--force")) == 1
    err = capsys.readouterr().err
    assert "not an augmented dataset rare made" in err and "unexpected" not in err
    assert (other / "photos" / "a.txt").read_text() == "mine" and not list(tmp_path.glob("*.superseded-*"))


def test_force_still_sets_aside_a_dataset_rare_made(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    assert run(_augment(REFS_DIR, dataset, "--quiet")) == 0
    args = [a if a != "2" or i < 10 else a for i, a in enumerate(_augment(REFS_DIR, dataset, "--force", "--quiet"))]
    args[args.index("--iters") + 1] = "2"  # another configuration
    assert run(args) == 0
    assert len(list(tmp_path.glob("dataset.superseded-*"))) == 1


def test_a_dangling_symlink_as_out_is_refused_before_any_work(tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere" / "deeper")
    started = time.monotonic()
    assert run(["seedselect", "x", "--method", "sd", "--model", "tiny-sd", "--out", str(link)]) == 1
    err = capsys.readouterr().err
    assert "unexpected" not in err and "symbolic link" in err and time.monotonic() - started < 30


_ = threading  # the FIFO tests run the command in a child: an open() on a FIFO blocks the whole thread
