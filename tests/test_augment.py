"""`rare augment`: class folders in, the same layout out, resumable, one class failing alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rarecli.augment.classes import read_root, select
from rarecli.cli.app import run
from rarecli.errors import InputError
from rarecli.toyworld import REFS_DIR
from tests.conftest import rare_cmd

TOY = ["--model", "toy-digits", "--prompt-template", "a handwritten digit {}", "--steps", "2"]
RARE_DIGITS = ["eight", "five", "nine", "seven", "six"]


def _pngs(dataset: Path) -> list[Path]:
    return sorted(dataset.glob("*/*.png"))


def _state(dataset: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(dataset)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in _pngs(dataset)}


def test_the_rare_digits_are_augmented_and_a_killed_run_resumes_without_redoing_anything(tmp_path):
    dataset = tmp_path / "dataset"
    args = ["augment", str(REFS_DIR), *TOY, "--per-class", "4", "--iters", "2", "--batch-size", "1", "--out", str(dataset)]
    proc = subprocess.Popen(rare_cmd() + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(_pngs(dataset)) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = _state(dataset)
    assert 3 <= len(before) < 20, "the run must be killed part-way"
    # What a write cut by SIGKILL leaves: its temporary file (never a finished name).
    (_pngs(dataset)[0].parent / ".rare-killed.png.part").write_bytes(b"\x89PNG half")

    done = subprocess.run(rare_cmd() + [*args, "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["skipped"] == len(before) and len(report["written"]) == 20 - len(before)
    after = _state(dataset)
    assert {k: after[k] for k in before} == before  # nothing finished was made again
    assert sorted({Path(p).parent.name for p in after}) == RARE_DIGITS
    assert all(len(list((dataset / d).glob("*.png"))) == 4 for d in RARE_DIGITS)
    assert not list(dataset.rglob(".rare-*"))  # the leftover is removed, and no new one is left

    lines = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 20
    for line in lines:
        png = dataset / line["path"]
        assert png.parent.name == line["class"] and line["method"] == "seedselect"
        assert line["seed"] == line["index"] and 0 <= line["index"] < 4
        assert isinstance(line["loss"], float) and line["loss"] <= line["initial_loss"]
        sources = {r["file"]: r["sha256"] for r in line["refs"]}
        real = {p.name for p in (REFS_DIR / line["class"]).iterdir()}
        assert sources and set(sources) <= real and all(len(h) == 64 for h in sources.values())
        assert (dataset / line["seed_file"]).is_file() and (dataset / line["run"]).is_file()
    # Nothing but class folders at the top: an ImageFolder loader reads the dataset as it is.
    assert sorted(p.name for p in dataset.iterdir() if p.is_dir()) == RARE_DIGITS

    again = subprocess.run(rare_cmd() + [*args, "--json"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout)["written"] == [] and _state(dataset) == after


def _copy_images(src: Path, dest: Path, n: int) -> None:
    dest.mkdir(parents=True)
    for path in sorted(src.iterdir())[:n]:
        shutil.copy(path, dest / path.name)


def test_a_class_that_cannot_be_done_fails_alone(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "empty").mkdir(parents=True)
    (root / "unreadable").mkdir()
    (root / "unreadable" / "a.png").write_bytes(b"not a png")
    (root / "unreadable" / "b.jpg").write_text("nor a jpeg")
    _copy_images(REFS_DIR / "seven", root / "seven with spaces", 3)
    _copy_images(REFS_DIR / "nine", root / "neuf_été", 3)
    out = tmp_path / "dataset"
    code = run(["augment", str(root), *TOY, "--per-class", "2", "--iters", "1", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    reasons = {f["class"]: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {"empty", "unreadable"}
    assert "empty" in reasons["empty"] and "no readable image" in reasons["unreadable"]
    assert "class 'empty' failed" in captured.err and "class 'unreadable' failed" in captured.err
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted((line["class"], line["prompt"]) for line in lines) == [
        ("neuf_été", "a handwritten digit neuf été"),
        ("neuf_été", "a handwritten digit neuf été"),
        ("seven with spaces", "a handwritten digit seven with spaces"),
        ("seven with spaces", "a handwritten digit seven with spaces"),
    ]
    assert all((out / line["path"]).is_file() for line in lines)
    assert not (out / "empty").exists()  # no empty class folder for a loader to trip on


def test_every_class_failing_is_a_failure(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "empty").mkdir(parents=True)
    code = run(["augment", str(root), *TOY, "--per-class", "1", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and "every class failed" in err and "Hint:" in err


def test_class_names_come_from_a_mapping_and_classes_are_selected(tmp_path):
    root = tmp_path / "root"
    for name, n in (("n02123159", 3), ("n01440764", 30), ("n09999999", 2)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i}.JPEG").write_bytes(b"")
    (root / "n01440764" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    (root / "classes.txt").write_text("# LOC_synset_mapping.txt\nn02123159 tiger cat\nn01440764 tench, Tinca tinca\n")
    found = read_root(root)
    assert [(c.folder, c.name, c.real_images) for c in found.classes] == [
        ("n01440764", "tench", 30),
        ("n02123159", "tiger cat", 3),
        ("n09999999", None, 2),
    ]
    assert found.names_from["source"] == "classes.txt" and len(found.names_from["sha256"]) == 64
    chosen, left_out = select(found, None, only_below=20)
    assert [c.folder for c in chosen] == ["n02123159", "n09999999"] and "n01440764: 30 real images" in left_out[0]
    assert [c.folder for c in select(found, ["tiger cat", "n01440764"], None)[0]] == ["n01440764", "n02123159"]
    with pytest.raises(InputError, match="no class 'tiger kat'") as err:
        select(found, ["tiger kat"], None)
    assert "tiger cat" in err.value.hint
    with pytest.raises(InputError, match="no class name for folder 'n09999999'"):
        found.classes[2].prompt("a photo of a {}")

    (root / "classes.txt").unlink()
    (root / "classes.json").write_text(json.dumps({"281": ["n02123159", "tiger_cat"], "0": ["n01440764", "tench"]}))
    assert [c.name for c in read_root(root).classes] == ["tench", "tiger cat", None]
    (root / "classes.txt").write_text("n02123159 tiger cat\n")
    with pytest.raises(InputError, match="both classes.json and classes.txt"):
        read_root(root)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt-template", "a photo"], "must hold {} exactly once"),
        (["--classes", "sevn"], "no class 'sevn'"),
    ],
)
def test_bad_arguments_are_refused_before_any_model_loads(tmp_path, capsys, extra, message):
    out = tmp_path / "d"
    code = run(["augment", str(REFS_DIR), "--model", "toy-digits", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and not out.exists()


def test_out_inside_root_is_refused(tmp_path, capsys):
    root = tmp_path / "root"
    _copy_images(REFS_DIR / "seven", root / "seven", 2)
    code = run(["augment", str(root), "--model", "toy-digits", "--out", str(root / "generated")])
    assert code == 1 and "must not be inside ROOT" in capsys.readouterr().err


def test_another_configuration_is_refused_and_force_moves_the_old_dataset_aside(tmp_path, capsys):
    root = tmp_path / "root"
    _copy_images(REFS_DIR / "seven", root / "seven", 2)
    out = tmp_path / "d"
    base = ["augment", str(root), *TOY, "--method", "sd", "--per-class", "1", "--out", str(out)]
    assert run(base) == 0
    first = _pngs(out)
    capsys.readouterr()
    assert run([*base, "--seed", "5"]) == 1
    err = capsys.readouterr().err
    assert "another configuration" in err and "seed_policy.base: 0 -> 5" in err and _pngs(out) == first
    assert run([*base, "--per-class", "2"]) == 0  # more images of the same dataset: not another configuration
    assert len(_pngs(out)) == 2
    assert run([*base, "--seed", "5", "--force"]) == 0
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("d.superseded-")]
    assert [p.name for p in _pngs(moved)] == [
        "00000_0_sd_a-handwritten-digit-seven.png",
        "00001_1_sd_a-handwritten-digit-seven.png",
    ]
    assert [p.name for p in _pngs(out)] == ["00000_5_sd_a-handwritten-digit-seven.png"]


def test_part_of_a_request_is_the_image_the_whole_request_gives(cpu):
    import numpy as np

    from rarecli.methods import registry
    from rarecli.methods.protocol import MethodContext, Request

    for name in ("seedselect", "nao-seedselect"):
        method = registry.get(name)
        prepared = method.prepare(MethodContext("toy-digits", None, cpu, 2, None, {"iters": 1, "batch_size": 1}))
        request = Request("a handwritten digit seven", range(3, 6), refs=REFS_DIR / "seven")
        whole = list(prepared.generate(request))
        request.only = [2, 1]
        part = list(prepared.generate(request))
        assert [m.index for m in part] == [1, 2]
        for made in part:
            same = whole[made.index]
            assert made.seed == same.seed and made.provenance.extra["refs"] == same.provenance.extra["refs"]
            assert made.provenance.extra["start"] == same.provenance.extra["start"]
            diff = np.abs(np.asarray(made.image, float) - np.asarray(same.image, float)).max()
            assert diff <= 1, (name, made.index, diff)


def test_whole_path_starts_spread_past_the_half_but_never_start_at_a_reference():
    import torch

    from rarecli.seeds.starts import nao_start_points

    centroid = torch.zeros(4)
    paths = [torch.linspace(1, 0, 11)[:, None] * torch.eye(4)[j] * 10 + 0 for j in range(2)]
    half = nao_start_points(centroid, paths, 12, ["a", "b"], spread="half")
    whole = nao_start_points(centroid, paths, 12, ["a", "b"], spread="whole")
    fractions = [m["fraction_from_centroid"] for _, m in whole[1:]]
    assert max(m["fraction_from_centroid"] for _, m in half[1:9]) <= 0.5 < max(fractions)
    assert all(m["point"] != 0 for _, m in whole[1:])  # point 0 of a path is the reference's own seed
    assert [m for _, m in whole[:5]] == [m for _, m in nao_start_points(centroid, paths, 5, ["a", "b"], spread="whole")]
    with pytest.raises(InputError, match="at most"):
        nao_start_points(centroid, paths, 20, ["a", "b"], spread="whole")


def test_the_toy_augmentation_evaluation_reports_every_row(tmp_path):
    from rarecli.toyworld.augment_eval import AugmentEval, run_augment_eval

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    paths = run_augment_eval(
        AugmentEval(tmp_path, ks=(2,), classifier_seeds=2, steps=2, nao_iters=1, train_steps=30, rows=("sd", "nao-seedselect-half"))
    )
    result = json.loads(paths[0].read_text())
    rows = {(r["row"], r["k"]): r for r in result["rows"]}
    assert set(rows) == {("none", 0), ("oversample", 2), ("simple-aug", 2), ("sd", 2), ("nao-seedselect-half", 2)}
    assert rows[("none", 0)]["rare_training_images_per_digit"] == {"5": 5, "6": 5, "7": 5, "8": 5, "9": 5}
    assert all(r["rare_training_images_per_digit"] == {str(d): 7 for d in range(5, 10)} for k, r in rows.items() if k[1])
    for r in rows.values():
        a = r["rare_accuracy"]
        assert len(a["values"]) == 2 and a["low"] <= a["mean"] <= a["high"] and 0 <= a["mean"] <= 1
    assert rows[("sd", 2)]["generation_seconds_per_rare_digit"] > 0
    assert rows[("oversample", 2)]["generation_seconds_per_rare_digit"] is None
    table = paths[1].read_text().splitlines()
    assert len(table) == 2 + len(rows) and table[2].startswith("| none | 0 |")
