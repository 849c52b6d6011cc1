"""`rare bench rarebench` and `rare bench report` end to end, offline on the CPU: tiny-sd, 64x64,
2 denoising steps, the clipscore judge on tiny-clip, and our own 2-category, 3-prompt set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rarecli.cli.app import run
from tests.bench_helpers import OWN_PROMPTS, ChatServer, ok, write_prompts
from tests.conftest import rare_cmd

CATEGORIES = ["S-property", "M-and"]


def bench_args(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "rarebench",
        "--out",
        str(out),
        "--method",
        "sd",
        "--model",
        "tiny-sd",
        "--steps",
        "2",
        "--judge",
        "clipscore",
        "--judge-model",
        "tiny-clip",
        "--data",
        str(data),
        "-c",
        ",".join(CATEGORIES),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """One uninterrupted single-process run that the other tests compare with."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    assert run(bench_args(out, data, "--quiet")) == 0
    return out


def items(run_dir: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(run_dir)): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((run_dir / "items").glob("*/*.json"))
    }


def images(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in (run_dir / "images").glob("*/*.png"))


def without_provenance(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("provenance", "score", "judge")}


def assert_same_results(a: Path, b: Path) -> None:
    """Same item files and images; same content except where it records who/when (provenance)."""
    ia, ib = items(a), items(b)
    assert sorted(ia) == sorted(ib)
    assert images(a) == images(b)
    for name in ia:
        assert without_provenance(ia[name]) == without_provenance(ib[name]), name
        assert ia[name]["score"] == pytest.approx(ib[name]["score"], abs=1e-4), name
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    for cat in CATEGORIES:
        assert sa["categories"][cat]["score"] == pytest.approx(sb["categories"][cat]["score"], abs=1e-4)
        assert {k: v for k, v in sa["categories"][cat].items() if k != "score"} == {
            k: v for k, v in sb["categories"][cat].items() if k != "score"
        }
    assert sa["overall"]["score"] == pytest.approx(sb["overall"]["score"], abs=1e-4)


def test_offline_run_completes(reference):
    from rarecli.io.images import read_metadata

    summary = json.loads((reference / "summary.json").read_text())
    got = items(reference)
    assert sorted(got) == sorted(f"items/{c}/p{p:03d}_i00.json" for c in CATEGORIES for p in range(3))
    assert all(r["status"] == "ok" and 0.0 <= r["score"] <= 100.0 for r in got.values())
    assert summary["complete"] and summary["overall"]["ok"] == 6 and summary["overall"]["failed"] == 0
    for cat in CATEGORIES:
        scores = [r["score"] for r in got.values() if r["category"] == cat]
        assert summary["categories"][cat]["score"] == pytest.approx(sum(scores) / 3)
        assert summary["categories"][cat]["expected"] == 3 and summary["categories"][cat]["missing"] == 0
    means = [summary["categories"][c]["score"] for c in CATEGORIES]
    assert summary["overall"]["score"] == pytest.approx(sum(means) / 2)
    # Prompts and seeds follow the item: prompt p of the category, seed = base + image index.
    record = got["items/M-and/p001_i00.json"]
    assert record["prompt"] == OWN_PROMPTS["rarebench_multi_1and.txt"][1] and record["seed"] == 0
    meta = read_metadata(reference / record["image"])["rare"]
    assert meta["category"] == "M-and" and meta["prompt_index"] == 1 and meta["hyper"]["steps"] == 2
    config = json.loads((reference / "config.json").read_text())["identity"]
    assert config["judge"] == {
        "name": "clipscore",
        "model": "tiny-clip",
        "per_image": "100 * min(2.5 * max(cos, 0), 1)",
    }
    assert config["categories"] == CATEGORIES and config["images_per_prompt"] == 1
    assert config["seed_policy"]["base"] == 0 and config["method"]["model"] == "tiny-sd"


def test_rerun_skips_what_is_done(reference, data, tmp_path, capsys):
    again = tmp_path / "again"
    shutil.copytree(reference, again)
    stamps = {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file() and p.name != "summary.json"}
    assert run(bench_args(again, data)) == 0
    out = capsys.readouterr()
    assert out.out == f"{again / 'summary.json'}\n"  # stdout is data: the summary's path
    assert "6 already done" in out.err and "overall" in out.err  # progress and table: stderr
    assert json.loads((again / "summary.json").read_text())["overall"]["ok"] == 6
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_summary(reference, data, tmp_path):
    out = tmp_path / "killed"
    log = open(tmp_path / "log.txt", "wb")  # noqa: SIM115 - the child writes to it until killed
    child = subprocess.Popen(rare_cmd() + bench_args(out, data), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("images/*/*.png"))) < 2:
            assert child.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    assert len(items(out)) < 6  # killed half-way: not every item has its result
    drawn = {p: p.stat().st_mtime_ns for p in out.glob("images/*/*.png")}
    assert run(bench_args(out, data, "--quiet")) == 0
    assert_same_results(out, reference)
    assert {p: p.stat().st_mtime_ns for p in drawn} == drawn  # images made before the kill were kept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(reference, data, tmp_path):
    out = tmp_path / "two"
    accelerate = Path(sys.executable).parent / "accelerate"
    # On a machine without GPUs, accelerate 1.15 runs several processes only through its multi-GPU
    # launcher (torchrun); `--cpu` alone starts one. rare picks the gloo backend on the CPU.
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "rarecli",
        *bench_args(out, data),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == [str(out / "summary.json")]  # only the main process prints
    assert_same_results(out, reference)
    ranks = {r["provenance"]["process_index"] for r in items(out).values()}
    assert ranks == {0, 1} and {r["provenance"]["num_processes"] for r in items(out).values()} == {2}
    # Item i belongs to rank i % 2 in the fixed (category, prompt, image) order.
    ordered = [items(out)[f"items/{c}/p{p:03d}_i00.json"] for c in CATEGORIES for p in range(3)]
    assert [r["provenance"]["process_index"] for r in ordered] == [i % 2 for i in range(6)]


def test_changed_configuration_is_refused_unless_force(reference, data, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    before = items(old)
    changed = bench_args(old, data)
    changed[changed.index("--steps") + 1] = "3"
    assert run(changed) == 1
    err = capsys.readouterr().err
    assert "holds a run with another configuration" in err and "method.steps: 2 -> 3" in err and "--force" in err
    assert items(old) == before
    one = [*changed[: changed.index("-c")], "-c", "S-property", "--limit", "1", "--device", "cpu", "--force"]
    assert run([*one, "--quiet"]) == 0
    moved = list(old.glob("superseded-*"))
    assert len(moved) == 1 and items(moved[0]) == before  # nothing deleted, only moved aside
    assert json.loads((old / "config.json").read_text())["identity"]["method"]["steps"] == 3
    assert sorted(items(old)) == ["items/S-property/p000_i00.json"]


def test_failed_item_is_recorded_and_the_run_goes_on(data, tmp_path):
    from rarecli.bench.run import RunConfig, run_benchmark
    from rarecli.methods import registry
    from rarecli.methods.sample import PlainSampling

    broken = {"on": True}

    class Flaky(PlainSampling):
        """Plain sampling that runs out of memory on one prompt while `broken` says so."""

        name = "flaky-for-test"

        def prepare(self, context):
            sd = super().prepare(context)

            class Prepared:
                def generate(self, request):
                    if broken["on"] and request.prompt == "a square orange":
                        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
                    return sd.generate(request)

            return Prepared()

    registry.register(Flaky())
    try:
        config = RunConfig(
            out=tmp_path / "run",
            method="flaky-for-test",
            model="tiny-sd",
            steps=2,
            judge="clipscore",
            judge_model="tiny-clip",
            data=data,
            categories=["S-property"],
            device="cpu",
        )
        result = run_benchmark(config)
        failed = items(config.out)["items/S-property/p001_i00.json"]
        assert failed["status"] == "failed" and failed["stage"] == "generate"
        assert "ran out of memory" in failed["reason"] and "score" not in failed
        assert result.summary["overall"]["failed"] == 1 and result.summary["overall"]["ok"] == 2
        assert result.summary["categories"]["S-property"]["score"] is not None
        assert result.summary["failures"][0]["item"] == "items/S-property/p001_i00.json"
        assert result.summary["complete"]  # every item has its result; one of them is a failure
        # A plain re-run keeps the recorded failure; --retry-failed runs it again.
        assert run_benchmark(config).skipped == 3
        broken["on"] = False
        config.retry_failed = True
        retried = run_benchmark(config)
        assert retried.generated == 1 and retried.summary["overall"]["ok"] == 3 and retried.summary["complete"]
    finally:
        registry.METHODS.pop("flaky-for-test", None)


def test_gpt4o_judge_end_to_end(data, tmp_path, monkeypatch, capsys):
    key = "sk-e2e-secret-key-987654"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def respond(request):
        if "cat made of glass" in request.prompt_text:
            return ok("Four out of five, I think.")  # never valid JSON: the item fails, the run goes on
        return ok(json.dumps({"score": 5, "explanation": "all there"}))

    server = ChatServer(respond=respond)
    with server.running() as url:
        args = [a for a in bench_args(tmp_path / "a", data) if a not in ("tiny-clip", "--judge-model")]
        args[args.index("clipscore")] = "gpt-4o"
        args[args.index("-c") + 1] = "S-property"
        assert run([*args, "--base-url", url, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        first_requests = len(server.requests)
        again = [tmp_path / "b" if a == str(tmp_path / "a") else a for a in args]
        assert run([*map(str, again), "--base-url", url, "--quiet"]) == 0
    assert summary["categories"]["S-property"] == {"score": 100.0, "ok": 2, "failed": 1, "expected": 3, "missing": 0}
    assert summary["failures"][0]["stage"] == "judge" and "malformed judge answer" in summary["failures"][0]["reason"]
    assert first_requests == 2 + 4  # two good answers; 1 + 3 retries for the malformed one
    # The second run's images are the same, so only the failed item asks again.
    assert len(server.requests) - first_requests == 4
    assert all(r.body["model"] == "gpt-4o-2024-05-13" for r in server.requests)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["identity"]["judge"]["model"] == "gpt-4o-2024-05-13"
    assert len(config["identity"]["judge"]["rubric_sha256"]) == 64
    assert config["judge_base_url"] == url
    cache = Path(os.environ["RARE_CACHE_DIR"]) / "judge-cache"
    for folder in (tmp_path / "a", tmp_path / "b", cache):
        for path in folder.rglob("*"):
            assert not path.is_file() or key.encode() not in path.read_bytes(), path


def test_gpt4o_without_a_key_fails_before_any_work(data, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = [a for a in bench_args(tmp_path / "nokey", data) if a not in ("tiny-clip", "--judge-model")]
    args[args.index("clipscore")] = "gpt-4o"
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "Error: the gpt-4o judge needs OPENAI_API_KEY" in err and "--judge clipscore" in err
    assert not (tmp_path / "nokey").exists()


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd3"])
def test_sd_method_draws_with_every_pipeline_family(model, cpu):
    from rarecli.bench.methods import Drawer

    # Plain sampling writes nothing besides the item's image, so the work folder stays unused.
    drawer = Drawer.prepare("sd", model, None, cpu, steps=1, guidance=None, options={}, work_dir=Path("unused"))
    made = drawer.draw("a frog with fur", 3)
    assert made.image.size == (64, 64)
    assert made.provenance.hyper["steps"] == 1 and made.provenance.hyper["family"].startswith("StableDiffusion")
    assert made.provenance.model["model"] == model


def test_seedselect_method_uses_per_prompt_references_and_records_missing_ones(data, tmp_path):
    """--method seedselect: references come from --refs-root/<prompt slug>; a prompt without a folder
    is recorded as failed with that reason, and the run goes on."""
    from rarecli.io.naming import slugify
    from tests.demo_refs import render_refs

    refs_root = tmp_path / "refs"
    render_refs(refs_root / slugify("a frog with fur"))  # S-property's first prompt; M-and's has none
    out = tmp_path / "ss"
    assert run(bench_args(out, data, "--method", "seedselect", "--refs-root", str(refs_root), "--limit", "1")) == 0
    records = items(out)
    by_category = {r["category"]: r for r in records.values()}
    assert by_category["S-property"]["status"] == "ok"
    assert by_category["M-and"]["status"] == "failed"
    assert "no reference folder" in by_category["M-and"]["reason"]
    # The method's own outputs (optimised seed, loss curve) are kept inside the run folder.
    assert list((out / "method" / "seedselect").rglob("*.safetensors"))
    assert list((out / "method" / "seedselect").rglob("*.run.json"))


def test_seedselect_without_references_fails_before_any_work(data, tmp_path, capsys):
    assert run(bench_args(tmp_path / "ss", data, "--method", "nao-seedselect")) == 1
    assert "--refs-root" in capsys.readouterr().err
    assert not (tmp_path / "ss").exists()


def test_r2f_method_plans_with_a_local_llm_and_records_the_plan(data, tmp_path, monkeypatch):
    """--method r2f end to end: a real llama.cpp planner (the test-built GGUF), the R2F sampler, the judge."""
    from tests.tiny_gguf import write_tiny_llama

    gguf = write_tiny_llama(tmp_path / "tiny.gguf")
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))  # a fresh LLM answer cache
    out = tmp_path / "r2f"
    args = bench_args(out, data, "--method", "r2f", "--llm-backend", "llama", "--llm-model", str(gguf), "--limit", "1")
    assert run(args) == 0
    records = items(out)
    assert len(records) == len(CATEGORIES)
    config = json.loads((out / "config.json").read_text())
    assert config["identity"]["method"]["options"]["llm_backend"] == "llama"
    from rarecli.io.images import read_metadata

    for record in records.values():
        assert record["status"] == "ok", record
        hyper = read_metadata(out / record["image"])["rare"]["hyper"]
        assert hyper["plan"]["prompt"] == record["prompt"]
        assert len(hyper["schedule"]["steps"]) == 2  # one prompt index per denoising step (--steps 2)
    # Every plan went through the on-disk LLM cache, so a resumed run asks the LLM nothing again.
    assert len(list((tmp_path / "cache" / "llm").rglob("*.json"))) == len(CATEGORIES)


def test_report_merges_compares_plots_and_shows_anchors(reference, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(reference, other)
    (other / "summary.json").unlink()
    (other / "items" / "M-and" / "p002_i00.json").unlink()  # a run with an item still missing
    plot = tmp_path / "compare.png"
    assert run(["bench", "report", str(reference), str(other), "--plot", str(plot), "--anchors", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["runs"]) == 2 and doc["plot"] == str(plot)
    merged = doc["runs"][1]
    assert merged["categories"]["M-and"]["missing"] == 1 and not merged["complete"]
    assert json.loads((other / "summary.json").read_text()) == merged  # written from the item files
    assert doc["anchors"]["SD3-medium"]["S-property"] == 49.38
    assert doc["anchors"]["R2F-SD3 (GPT-4 plans)"]["overall"] == pytest.approx(75.705)
    assert doc["anchors"]["SDXL"] == {"overall": 51.95} and "overall" not in doc["anchors"]["R2F+ (SD3)"]
    # These runs are judged by CLIPScore: the report says they are not on the paper's scale.
    assert [w.split(" was judged with ")[1].split(",")[0] for w in doc["anchor_warnings"]] == ["clipscore"] * 2
    from PIL import Image

    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size[0] > 300
    # Tables go to stderr, paths to stdout; a plot is never overwritten.
    assert run(["bench", "report", str(reference), "--anchors"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(reference / "summary.json")
    err = " ".join(out.err.replace("│", " ").split())  # table cells wrap at 80 columns
    assert "SD3-medium" in err and "49.4" in err and "S-property" in err and "overall" in err
    assert "paper, partial rows: SDXL: overall 52.0" in err and "judged with clipscore" in err
    assert run(["bench", "report", str(reference), "--plot", str(plot)]) == 1
    assert "never overwrites" in capsys.readouterr().err


def test_report_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert run(["bench", "report", str(tmp_path)]) == 1
    assert "not a RareBench run folder" in capsys.readouterr().err
