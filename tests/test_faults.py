"""The faults `rare` survives: one test (or more) per class of fault found by trying it as a new user
would, then with faults and bad input. Each class is fixed at its root; the tests name the class.

 1. loops bounded by a numerical tolerance        8. images too large to decode
 2. degenerate geometry                            9. config mistakes
 3. SIGTERM and SIGHUP are Ctrl-C                 10. hand-written and hostile plan files
 4. files get the umask's mode                    11. options checked before any model loads
 5. write failures found early and reported       12. rare bench's exit code, labels and plots
 6. a closed stdout pipe                          13. help text, usage errors and hints
 7. Hub models offline
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rarecli.cli.app import run
from tests.conftest import interruptible, rare_cmd

TINY = ["--model", "tiny-sd", "--device", "cpu"]


def _rare(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(rare_cmd() + args, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    from tests.demo_refs import render_refs

    folder = tmp_path_factory.mktemp("refs")
    render_refs(folder, seeds=(1, 2))
    return folder


# -- 1. loops bounded by a numerical tolerance ---------------------------------------------------------

_GEOMETRY = """
import sys, torch
from rarecli.seeds.paths import interpolate
from rarecli.seeds.centroid import centroid
z = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0)); z = z / z.norm()
w = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1)); w = w / w.norm() * float(sys.argv[1])
path, _ = interpolate(z, w, 5, "nao")
c = centroid([z, w], "nao")
assert torch.isfinite(path).all() and torch.isfinite(c).all()
print(float(path[0].norm()), float(path[-1].norm()))
"""


@pytest.mark.parametrize("factor", [1e7, 1e12])
def test_nao_returns_when_seed_norms_differ_by_a_large_factor(factor):
    import sys

    out = subprocess.run([sys.executable, "-c", _GEOMETRY, str(factor)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    start, end = map(float, out.stdout.split())
    assert start == pytest.approx(1.0) and end == pytest.approx(factor)  # the ends are the seeds


# -- 2. degenerate geometry ----------------------------------------------------------------------------


def test_undefined_geometry_is_refused_with_what_to_do_instead():
    import torch

    from rarecli.errors import InputError
    from rarecli.seeds.centroid import centroid
    from rarecli.seeds.paths import interpolate, slerp

    z = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="opposite directions") as info:
        slerp(z, -z, [0.0, 0.5, 1.0])
    assert "--method nao" in info.value.hint
    for method in ("lerp", "lerp-norm", "slerp-norm"):  # LERP half-way between z and -z is the origin
        with pytest.raises(InputError, match="opposite directions") as info:
            interpolate(z, -z, 5, method)
        assert "--method nao" in info.value.hint
    assert torch.isfinite(interpolate(z, -z, 5, "nao")[0]).all()
    assert interpolate(z, -z, 4, "lerp")[0].shape == (4, 4, 8, 8)  # no point at the origin: a path
    for method in ("spherical", "rescaled", "euclidean"):
        with pytest.raises(InputError, match="cancel out") as info:
            centroid([z, -z], method)
        assert "--method nao" in info.value.hint
    assert torch.isfinite(centroid([z, -z], "nao")).all()  # NAO's centroid of opposite seeds is defined


@pytest.mark.parametrize(("command", "method"), [("interpolate", "slerp"), ("centroid", "spherical")])
def test_opposite_seeds_write_no_all_zero_seed(tmp_path, capsys, command, method):
    from rarecli.cli.app import run
    from rarecli.seeds.files import save_seed
    from rarecli.seeds.noise import noise_from_seed

    z = noise_from_seed(4, (4, 8, 8))
    a, b = save_seed(tmp_path / "a.safetensors", z), save_seed(tmp_path / "b.safetensors", -z)
    out = tmp_path / "out"
    code = run([command, str(a), str(b), "--method", method, "--model", "tiny-sd", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Hint: use --method nao" in captured.err and captured.out == ""
    assert not out.exists() or not any(out.iterdir())


# -- 3. SIGTERM and SIGHUP are Ctrl-C -------------------------------------------------------------------


def _start_then_signal(args: list[str], out: Path, sig: int, after: str) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        rare_cmd() + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while time.time() < deadline and not any(after in line for line in lines):
        time.sleep(0.05)
    assert any(after in line for line in lines), "".join(lines)
    proc.send_signal(sig)
    stdout = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    return proc.returncode, stdout, "".join(lines)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_keeps_the_best_seed_and_leaves_no_partial_file(tmp_path, refs, sig):
    out = tmp_path / "out"
    args = ["seedselect", "a hairy frog", "--refs", str(refs), *TINY, "--iters", "10000", "--patience", "10000"]
    code, stdout, stderr = _start_then_signal([*args, "--inner-steps", "2", "--out", str(out)], out, sig, "iteration 3/")
    assert code == 128 + sig, stderr
    assert "Interrupted" in stderr and "Traceback" not in stderr
    (png,) = [Path(p) for p in stdout.split()]
    run_doc = json.loads(png.with_name(png.stem + ".run.json").read_text())
    assert run_doc["interrupted"] and png.with_suffix(".safetensors").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".part"]


# -- 4. files get the umask's mode ---------------------------------------------------------------------


def test_outputs_get_the_mode_a_plain_open_would_give(tmp_path):
    out = tmp_path / "out"
    result = _rare(["seedselect", "a frog", "--method", "sd", *TINY, "--inner-steps", "1", "--out", str(out)],
                   preexec_fn=lambda: os.umask(0o022))  # fmt: skip
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_atomic_writes_follow_the_umask(tmp_path):
    from rarecli.io.atomic import write_text_new, write_text_replace

    old = os.umask(0o027)
    try:
        a = write_text_new(tmp_path / "a.txt", "a")
        b = write_text_replace(tmp_path / "b.txt", "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == stat.S_IMODE(b.stat().st_mode) == 0o640


# -- 5. write failures found early and reported -----------------------------------------------------------


def test_an_unwritable_out_is_refused_before_any_model_loads(tmp_path, refs):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (
        ["seedselect", "a frog", "--refs", str(refs), *TINY],
        ["r2f", "generate", "-", *TINY],
        ["interpolate", "1", "2", "--model", "tiny-sd", "--render", "a frog"],
    ):
        started = time.perf_counter()
        result = _rare([*args, "--out", str(blocker / "out")], input='{"prompt": "a frog", "concepts": []}')
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith(f"Error: cannot write to {blocker / 'out'}"), result.stderr
        assert "Hint:" in result.stderr and "Traceback" not in result.stderr
        assert time.perf_counter() - started < 20  # no model was loaded (tiny-sd takes longer than this here)


def _limit_file_size(limit: int):
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_write_that_fails_says_which_file_and_prints_what_was_written(tmp_path):
    out = tmp_path / "out"
    # Seed files are ~2 KB; the rendered strip of 4 images is far larger than the 16 KB this process may write.
    args = ["interpolate", "1", "2", "--steps", "4", "--model", "tiny-sd", "--render", "a frog", "--render-steps", "1"]
    result = _rare([*args, "--out", str(out)], preexec_fn=_limit_file_size(16_000))
    assert result.returncode == 1, result.stderr
    written = [Path(p) for p in result.stdout.split()]
    assert len(written) == 4 and all(p.suffix == ".safetensors" and p.is_file() for p in written)
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: cannot write ") and "strip" in error and error.endswith(": File too large")
    assert "Hint:" in result.stderr and "unexpected" not in result.stderr
    assert sorted(out.iterdir()) == sorted(written)  # no half-written strip, no temp file


# -- 6. a closed stdout pipe ---------------------------------------------------------------------------


def test_a_closed_pipe_is_a_quiet_exit(tmp_path):
    # Many lines on stdout into a reader that stops after the first (`rare ... | head -1`).
    seeds = [str(i) for i in range(2, 40)]
    proc = subprocess.Popen(
        rare_cmd() + ["centroid", "1", *seeds, "--method", "euclidean", "--model", "tiny-sd", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before rare writes
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert "unexpected" not in stderr and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode in (0, 141)


# -- 7. Hub models offline -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["interpolate", "1", "2"],  # the default model, a Hub id
        ["centroid", "1", "2", "--model", "stabilityai/stable-diffusion-2-1-base"],
        ["seedselect", "a frog", "--method", "sd", "--model", "stabilityai/stable-diffusion-2-1-base"],
    ],
    ids=["interpolate", "centroid", "seedselect"],
)
def test_a_hub_model_offline_is_one_clear_error(tmp_path, args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")}
    result = _rare([*args, "--out", str(tmp_path / "out")], env=env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "Error: stabilityai/stable-diffusion-2-1-base is not in the local Hugging Face cache and the Hub cannot be "
        "reached",
        "Hint: download it once while online (HF_HUB_OFFLINE unset), pass a local folder, or use an embedded "
        "model (`rare models`)",
    ], result.stderr


# -- 8. images too large to decode ---------------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims `width` x `height` pixels (what a decoder would have to allocate)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    path.write_bytes(bytes(data))
    return path


def test_references_too_large_to_decode_are_skipped_with_a_warning(tmp_path, capsys):
    from PIL import Image

    from rarecli.methods.seedselect.references import load_references

    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "a-small.png")
    _png_claiming(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP: Pillow itself refuses to open it
    _png_claiming(tmp_path / "huge.png", 9_000, 9_000)  # 81 MP: Pillow would decode it, 240 MB of RGB
    refs = load_references(tmp_path)
    assert [r.path.name for r in refs] == ["a-small.png"]
    err = " ".join(capsys.readouterr().err.split())
    assert "skipping reference bomb.png" in err and "skipping reference huge.png: 9000x9000 pixels" in err


def test_a_large_jpeg_is_decoded_at_a_reduced_size(tmp_path):
    from PIL import Image

    from rarecli.io.images import read_rgb

    Image.new("RGB", (4000, 3000), (10, 200, 10)).save(tmp_path / "big.jpg", quality=50)
    image = read_rgb(tmp_path / "big.jpg", max_side=512)
    assert min(image.size) >= 512 and max(image.size) < 4000  # JPEG's draft mode: decoded at 1/2, 1/4...


# -- 9. config mistakes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("itres: 3\n", "unknown setting `itres`"),
        ("seedselect:\n  inner_step: 4\n", "unknown setting `seedselect.inner_step`"),
        ("seedselect: 5\n", "`seedselect` must be a section"),
        ("seedselect:\n  iters: many\n", "`seedselect.iters`: Input should be a valid integer"),
        ("device: gpu\n", "`device`: 'gpu' is not one of auto, cpu, cuda"),
        ("r2f:\n  generate:\n    steps: [1, 2]\n", "`r2f.generate.steps`"),
    ],
)
def test_config_mistakes_are_named_with_the_file(tmp_path, monkeypatch, capsys, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("RARE_CONFIG", str(config))
    assert run(["interpolate", "1", "2", "--model", "tiny-sd", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: config file {config}: ") and expected in err, err
    assert "Invalid value for" not in err


def test_a_config_suggests_the_setting_meant(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("seedselect:\n  inner-step: 4\n", encoding="utf-8")
    monkeypatch.setenv("RARE_CONFIG", str(config))
    assert run(["models"]) == 1
    assert "Hint: did you mean inner-steps?" in capsys.readouterr().err


def test_a_missing_config_file_named_by_rare_config_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RARE_CONFIG", str(tmp_path / "nope.yaml"))
    assert run(["models"]) == 1
    err = capsys.readouterr().err
    assert f"RARE_CONFIG names {tmp_path / 'nope.yaml'}, which does not exist" in err


# -- 10. hand-written and hostile plan files -----------------------------------------------------------

HAND_PLAN = {"prompt": "a hairy frog", "concepts": [{"rare": "hairy frog", "frequent": "hairy dog", "level": 3}]}


def test_hand_written_plans_need_no_provenance_and_may_start_with_a_bom(tmp_path):
    from rarecli.methods.r2f.plans import read_plans

    bare = tmp_path / "bare.json"
    bare.write_bytes(b"\xef\xbb\xbf" + json.dumps(HAND_PLAN).encode())  # a BOM, as some editors write
    noted = tmp_path / "noted.jsonl"
    noted.write_text(json.dumps({**HAND_PLAN, "llm": {"backend": "written by hand"}}) + "\n", encoding="utf-8")
    for path in (bare, noted):
        (plan,) = read_plans(str(path))
        assert plan.prompt == "a hairy frog" and plan.concepts[0].frequent == "hairy dog"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        (json.dumps({**HAND_PLAN, "llm": {"raw": "r" * 100_000}}), "$.llm.raw: longer than 65536 characters"),
        (b"\xff\xfe not text", "is not UTF-8 text"),
    ],
    ids=["deep", "huge-record", "not-utf8"],
)
def test_hostile_plan_files_are_refused_with_one_line(tmp_path, content, expected):
    path = tmp_path / "plan.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = _rare(["r2f", "generate", str(path), *TINY, "--out", str(tmp_path / "out")])
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    assert "unexpected" not in result.stderr and not (tmp_path / "out").exists()


def test_an_oversized_plan_file_is_refused_before_reading_it_all(tmp_path):
    from rarecli.errors import InputError
    from rarecli.methods.r2f.plans import read_plans

    path = tmp_path / "big.jsonl"
    with open(path, "wb") as fh:
        fh.truncate(17 * 2**20)  # sparse: 17 MiB of nothing
    with pytest.raises(InputError, match="larger than 16 MiB"):
        read_plans(str(path))


# -- 11. options checked before any model loads --------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [["--seed", str(2**70)], ["--lr", "0"], ["--iters", "0"], ["--guidance", "-1"]],
    ids=["seed", "lr", "iters", "guidance"],
)
def test_out_of_range_options_are_usage_errors(tmp_path, option, capsys):
    args = ["seedselect", "a frog", "--refs", str(tmp_path), *TINY, "--out", str(tmp_path / "out"), *option]
    assert run(args) == 2
    assert "Invalid value" in capsys.readouterr().err


def test_a_model_a_method_cannot_use_is_refused_before_its_weights_load(tmp_path, refs, capsys):
    from rarecli.runtime.cache import MODEL_CACHE

    run(["models"])  # builds nothing, but makes the embedded backbones' folders known
    loaded_before = set(MODEL_CACHE._items)
    args = ["seedselect", "a frog", "--refs", str(refs), "--model", "tiny-sd3", "--device", "cpu"]
    assert run([*args, "--out", str(tmp_path / "out")]) == 1
    assert "is a StableDiffusion3Pipeline; seedselect needs" in capsys.readouterr().err
    assert set(MODEL_CACHE._items) == loaded_before  # nothing was loaded to find out


# -- 12. rare bench's exit code, labels and plots ------------------------------------------------------


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> Path:
    from tests.bench_helpers import write_prompts

    return write_prompts(tmp_path_factory.mktemp("prompts"))


def _bench_run(out: Path, data: Path, *extra: str) -> list[str]:
    return ["bench", "rarebench", "--out", str(out), "--model", "tiny-sd", "--steps", "1", "--judge", "clipscore",
            "--judge-model", "tiny-clip", "--data", str(data), "-c", "S-property", "--limit", "2", "--device", "cpu",
            *extra]  # fmt: skip


def test_a_run_in_which_every_item_failed_is_a_failure(tmp_path, bench_data, capsys):
    empty = tmp_path / "no-refs"
    empty.mkdir()
    assert run(_bench_run(tmp_path / "run", bench_data, "--method", "seedselect", "--refs-root", str(empty))) == 1
    err = capsys.readouterr().err
    assert "Error: every item failed (2 of 2)" in err and "no reference folder" in err
    assert (tmp_path / "run" / "summary.json").is_file()  # the record of what failed is kept


def test_runs_are_told_apart_and_a_plot_is_refused_before_any_work(tmp_path, bench_data, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(_bench_run(a, bench_data, "--quiet")) == 0 and run(_bench_run(b, bench_data, "--quiet")) == 0
    capsys.readouterr()
    assert run(["bench", "report", str(a), str(b)]) == 0
    header = " ".join(capsys.readouterr().err.replace("┃", " ").split())
    assert "[1] sd tiny-sd (tiny-clip) (a)" in header and "[2] sd tiny-sd (tiny-clip) (b)" in header
    existing = tmp_path / "plot.png"
    existing.write_bytes(b"mine")
    assert run(["bench", "report", str(a), "--plot", str(existing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "never overwrites" in err and "RareBench (score" not in err
    assert existing.read_bytes() == b"mine"


# -- 13. help text, usage errors and hints -------------------------------------------------------------


def test_help_text_keeps_its_brackets_and_every_command_shows_an_example(capsys):
    assert run(["bench", "rarebench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "[default: the pipeline's own]" in text and "Example" in text
    for command in (["seedselect"], ["interpolate"], ["centroid"], ["r2f", "plan"], ["r2f", "generate"],
                    ["bench", "report"], ["models"], ["env"]):  # fmt: skip
        assert run([*command, "--help"]) == 0
        assert "Example" in capsys.readouterr().out, command


def test_every_error_has_a_hint(capsys):
    assert run(["r2f", "plan", "a frog", "--file", __file__]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: give a PROMPT") and "\nHint: " in err


@pytest.mark.parametrize("option", [["--device", "gpu"], ["--device", "cuda:x"], ["--dtype", "fp8"]])
def test_a_malformed_device_or_dtype_is_a_usage_error(option, capsys):
    assert run(["interpolate", "1", "2", "--model", "tiny-sd", *option]) == 2
    assert "Invalid value" in capsys.readouterr().err


def test_seed_commands_read_seeds_from_stdin(tmp_path):
    made = _rare(["centroid", "1", "2", "--method", "euclidean", "--model", "tiny-sd", "--out", str(tmp_path)])
    assert made.returncode == 0, made.stderr
    seed_file = made.stdout.strip()
    centre = _rare(["centroid", "-", "--method", "euclidean", "--model", "tiny-sd", "--out", str(tmp_path / "c")],
                   input=f"3 4\n{seed_file}\n")  # fmt: skip
    assert centre.returncode == 0, centre.stderr
    path = _rare(["interpolate", "-", "5", "--method", "slerp", "--steps", "3", "--model", "tiny-sd",
                  "--out", str(tmp_path / "p")], input=seed_file + "\n")  # fmt: skip
    assert path.returncode == 0, path.stderr
    assert len(path.stdout.split()) == 3


def test_a_prompt_longer_than_the_text_encoder_reads_is_said(tmp_path):
    long_prompt = " ".join(["a hairy frog"] * 40)  # 120 words, well over 77 tokens
    result = _rare(["seedselect", long_prompt, "--method", "sd", *TINY, "--inner-steps", "1", "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "Warning: the prompt is " in result.stderr and "77" in result.stderr


def test_options_the_method_does_not_use_are_named(tmp_path, refs):
    result = _rare(["seedselect", "a frog", "--method", "sd", "--refs", str(refs), "--iters", "3", *TINY,
                    "--inner-steps", "1", "--out", str(tmp_path)])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning: --method sd does not use --refs, --iters" in result.stderr
