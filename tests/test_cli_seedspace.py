"""`rare interpolate` and `rare centroid` on the embedded tiny-sd (seed shape 4 x 8 x 8), offline."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch

from rarecli.cli.app import run
from rarecli.io.images import open_image, read_metadata
from rarecli.seeds.files import load_seed, save_seed
from rarecli.seeds.noise import noise_from_seed
from rarecli.seeds.prior import seed_norms
from tests.conftest import rare_cmd

SHAPE = (4, 8, 8)
D = 256
PAD = 4  # io/grid.make_grid's default padding


def chi_interval(d: int) -> tuple[float, float]:
    stats = pytest.importorskip("scipy.stats")
    lo, hi = stats.chi.ppf([0.005, 0.995], d)
    return float(lo), float(hi)


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_interpolate_nao_renders_one_strip_of_the_written_seeds(tmp_path, capsys, tiny_sd):
    out = tmp_path / "interp"
    args = ["interpolate", "1", "2", "--method", "nao", "--steps", "4", "--model", "tiny-sd"]
    code, stdout, stderr = invoke([*args, "--render", "a frog", "--render-steps", "2", "--out", str(out)], capsys)
    assert code == 0, stderr
    paths = [line for line in stdout.splitlines() if line]
    seeds, strips = paths[:-1], paths[-1:]
    assert len(seeds) == 4 and all(p.endswith(".safetensors") for p in seeds)
    assert strips[0].endswith(".png") and "nao-strip" in strips[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.split("/")[-1] for p in paths)

    loaded = [load_seed(p) for p in seeds]
    assert torch.equal(loaded[0].tensor, noise_from_seed(1, SHAPE))
    assert torch.equal(loaded[-1].tensor, noise_from_seed(2, SHAPE))
    for i, f in enumerate(loaded):
        assert f.tensor.shape == SHAPE
        assert f.metadata["method"] == "nao"
        assert f.metadata["sources"] == [{"seed": 1}, {"seed": 2}]
        assert f.metadata["t"] == pytest.approx(i / 3)
    lo, hi = chi_interval(D)
    norms = seed_norms(torch.stack([f.tensor for f in loaded]), batch_dims=1)
    assert bool(((norms > lo) & (norms < hi)).all()), norms

    strip = open_image(strips[0])
    assert strip.width == 4 * 64 + 5 * PAD and strip.height > 64 + 2 * PAD
    meta = read_metadata(strips[0])
    assert meta["rare"]["command"] == "interpolate" and meta["rare"]["method"] == "nao"
    assert meta["rare"]["seed_files"] == seeds
    assert meta["rare"]["prompt"] == "a frog" and meta["parameters"].startswith("a frog\n")
    # The strip shows exactly those seeds, rendered in path order.
    from rarecli.methods.sample import sample

    i = 2
    tile = strip.crop((PAD + i * (64 + PAD), PAD, PAD + i * (64 + PAD) + 64, PAD + 64))
    assert tile.tobytes() == sample(tiny_sd, "a frog", loaded[i].tensor, steps=2).tobytes()

    # Running again never overwrites: new numbers, same content.
    code, stdout2, _ = invoke([*args, "--out", str(out)], capsys)
    assert code == 0
    again = stdout2.split()
    assert len(again) == 4 and not set(again) & set(paths)
    assert torch.equal(load_seed(again[2]).tensor, loaded[2].tensor)


def test_centroid_from_files_and_integers_json(tmp_path, capsys):
    f1 = save_seed(tmp_path / "a.safetensors", noise_from_seed(10, SHAPE), {"seed": 10})
    f2 = save_seed(tmp_path / "b.safetensors", noise_from_seed(11, SHAPE))
    out = tmp_path / "c"
    results = {}
    for method in ("nao", "euclidean"):
        code, stdout, stderr = invoke(
            ["centroid", str(f1), str(f2), "12", "--method", method, "--model", "tiny-sd", "--json", "--out", str(out)],
            capsys,
        )
        assert code == 0, stderr
        doc = json.loads(stdout)
        assert doc["command"] == "centroid" and doc["method"] == method and doc["grid"] is None
        assert doc["sources"] == [{"file": str(f1), "seed": 10}, {"file": str(f2)}, {"seed": 12}]
        (entry,) = doc["seeds"]
        seed = load_seed(entry["path"])
        assert seed.metadata["method"] == method and seed.metadata["sources"] == doc["sources"]
        results[method] = float(seed_norms(seed.tensor[None], 1)[0])
    lo, hi = chi_interval(D)
    assert lo < results["nao"] < hi
    assert results["euclidean"] == pytest.approx(math.sqrt(D / 3), rel=0.15)
    assert len(list(out.glob("*.safetensors"))) == 2


def test_seed_files_need_no_model(tmp_path, capsys):
    f1 = save_seed(tmp_path / "a.safetensors", noise_from_seed(1, (4, 6, 6)))
    f2 = save_seed(tmp_path / "b.safetensors", noise_from_seed(2, (4, 6, 6)))
    out = tmp_path / "o"
    # A model folder that does not exist: without integer seeds or --render it is never read.
    code, stdout, stderr = invoke(
        ["interpolate", str(f1), str(f2), "--method", "slerp", "--steps", "3", "--model", str(tmp_path / "none")]
        + ["--out", str(out)],
        capsys,
    )
    assert code == 0, stderr
    middle = load_seed(stdout.split()[1])
    assert middle.tensor.shape == (4, 6, 6) and middle.metadata["t"] == pytest.approx(0.5)


def _nan_seed_file(path):
    from safetensors.torch import save_file

    save_file({"seed": torch.full(SHAPE, float("nan"))}, str(path))
    return path


@pytest.mark.parametrize(
    "case",
    ["shape-vs-model", "shapes-between-files", "nan", "not-a-seed-file", "one-seed", "steps-1", "empty-prompt"],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(case, tmp_path, capsys):
    out = tmp_path / "out"
    other = save_seed(tmp_path / "other.safetensors", noise_from_seed(3, (4, 8, 9)))
    good = save_seed(tmp_path / "good.safetensors", noise_from_seed(4, SHAPE))
    text = tmp_path / "notes.safetensors"
    text.write_text("not a tensor")
    common = ["--model", "tiny-sd", "--out", str(out)]
    args, code_expected, message = {
        "shape-vs-model": (["interpolate", "1", str(other)], 1, "does not match"),
        "shapes-between-files": (["centroid", str(good), str(other)], 1, "different shapes"),
        "nan": (["interpolate", "1", str(_nan_seed_file(tmp_path / "nan.safetensors"))], 1, "NaN or Inf"),
        "not-a-seed-file": (["centroid", "1", "2", str(text)], 1, "not a seed file"),
        "one-seed": (["centroid", "1"], 1, "at least two seeds"),
        "steps-1": (["interpolate", "1", "2", "--steps", "1"], 2, "--steps"),
        "empty-prompt": (["interpolate", "1", "2", "--render", " "], 1, "prompt is empty"),
    }[case]
    code, stdout, stderr = invoke([*args, *common], capsys)
    assert code == code_expected, stderr
    assert message in stderr
    assert stdout == ""
    assert not out.exists() or not any(out.iterdir())
    if code == 1:
        assert stderr.lstrip().startswith("Error: ") and "Traceback" not in stderr


@pytest.mark.slow
def test_the_documented_offline_command(tmp_path):
    """The README's example (fewer steps, to stay quick) through the installed entry point, in a fresh process."""
    out = tmp_path / "x"
    proc = subprocess.run(
        rare_cmd()
        + ["interpolate", "1", "2", "--method", "nao", "--steps", "3", "--model", "tiny-sd"]
        + ["--render", "a frog", "--render-steps", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert len(lines) == 4 and lines[-1].endswith(".png")
    assert len(list(out.glob("*.safetensors"))) == 3


def test_make_grid_layout():
    from PIL import Image

    from rarecli.io.grid import make_grid

    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (10, 6), (0, 0, 255))
    strip = make_grid([red, blue, red])
    assert strip.size == (3 * 20 + 4 * PAD, 10 + 2 * PAD)
    # smaller images are centred in their cell
    assert strip.getpixel((PAD + 20 + PAD + 10, PAD + 5)) == (0, 0, 255)
    assert strip.getpixel((PAD + 20 + PAD + 1, PAD + 5)) == (255, 255, 255)
    grid = make_grid([red, blue, red], cols=2, labels=["a", "b", "a very long caption that cannot fit"])
    assert grid.width == 2 * 20 + 3 * PAD and grid.height > 2 * (10 + PAD) + PAD
    with pytest.raises(ValueError):
        make_grid([red], labels=["a", "b"])
    with pytest.raises(ValueError):
        make_grid([])
