"""Faults, second round (issue 25), classes 4, 5 and 6: built backbones checked and repaired, caches
that cannot be written, and inversion cache entries used as they were. Each test failed on the commit
before the fix. Every test here has its own RARE_CACHE_DIR."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from rarecli.toyworld import REFS_DIR
from tests.conftest import rare_cmd

SEVEN = REFS_DIR / "seven"


def _rare(args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(rare_cmd() + args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RARE_CACHE_DIR": str(cache), **env})  # fmt: skip


def _plain(out: Path) -> list[str]:
    return ["seedselect", "a frog", "--method", "sd", "--model", "tiny-sd", "--inner-steps", "2", "--out", str(out)]


# -- 4: built backbones are verified, repaired, and their dead builds cleaned -----------------------


def test_a_half_built_backbone_is_built_again(tmp_path):
    cache = tmp_path / "cache"
    (cache / "backbones" / "tiny-sd-r1" / "unet").mkdir(parents=True)  # an old build cut short
    done = _rare(_plain(tmp_path / "out"), cache)
    assert done.returncode == 0, done.stderr
    assert "is damaged (incomplete: no model_index.json" in done.stderr and "building tiny-sd again" in done.stderr
    assert (cache / "backbones" / "tiny-sd-r1" / "rare_build.json").is_file()


def test_truncated_weights_are_found_by_the_marker_and_built_again(tmp_path):
    cache = tmp_path / "cache"
    assert _rare(_plain(tmp_path / "a"), cache).returncode == 0
    (weights,) = (cache / "backbones" / "tiny-sd-r1" / "unet").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    done = _rare(_plain(tmp_path / "b"), cache)
    assert done.returncode == 0, done.stderr
    assert "truncated or changed" in done.stderr and weights.stat().st_size > 1000


def test_a_damaged_copy_without_a_marker_names_the_folder_to_delete(tmp_path):
    cache = tmp_path / "cache"
    assert _rare(_plain(tmp_path / "a"), cache).returncode == 0
    folder = cache / "backbones" / "tiny-sd-r1"
    (folder / "rare_build.json").unlink()  # as built before markers existed
    (weights,) = (folder / "unet").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    done = _rare(_plain(tmp_path / "b"), cache)
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert "its built copy at" in done.stderr and f"delete {folder}" in done.stderr


def test_temporary_folders_of_dead_builds_are_removed(tmp_path):
    cache = tmp_path / "cache"
    dead = cache / "backbones" / ".twin-sd21-base-999999-abcd1234"  # a killed twin build: no such process
    (dead / "unet").mkdir(parents=True)
    (dead / "unet" / "big.safetensors").write_bytes(b"0" * 1000)
    mine = cache / "backbones" / f".tiny-sdxl-{os.getpid()}-live"  # a build in progress (this process)
    mine.mkdir()
    done = _rare(_plain(tmp_path / "out"), cache)
    assert done.returncode == 0 and not dead.exists() and mine.exists()
    assert "a build whose process is gone" in done.stderr


def test_a_full_disk_is_refused_before_a_tiny_build(tmp_path, monkeypatch, capsys):
    import shutil

    from rarecli.backbones import registry
    from rarecli.errors import RareError

    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    real = shutil.disk_usage
    monkeypatch.setattr(registry.shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    with pytest.raises(RareError, match="GB free"):
        registry.ensure_built(registry.EMBEDDED["tiny-sd"])
    assert not list((tmp_path / "cache" / "backbones").glob("*"))


def test_a_file_as_the_cache_folder_is_named(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    done = _rare(_plain(tmp_path / "out"), cache)
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert f"the rare cache folder {cache / 'backbones'} cannot be used" in done.stderr


# -- 5: a cache that cannot be written loses nothing ------------------------------------------------


@pytest.fixture
def gguf(tmp_path_factory):
    from tests.tiny_gguf import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_llm_cache_still_prints_the_plan(tmp_path, gguf):
    cache = tmp_path / "cache"
    (cache / "llm").mkdir(parents=True)
    os.chmod(cache / "llm", stat.S_IRUSR | stat.S_IXUSR)
    done = _rare(["r2f", "plan", "A hairy frog", "--backend", "llama", "--llm-model", str(gguf)], cache)
    assert done.returncode == 0 and json.loads(done.stdout)["prompt"] == "A hairy frog"
    assert "cannot store the LLM answer in the rare cache" in done.stderr and "--out" not in done.stderr


def test_an_unwritable_llm_cache_still_prints_the_plan(tmp_path, gguf):
    """A file where the cache's llm/ folder should be: the same for root and for users."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "llm").write_text("in the way")
    done = _rare(["r2f", "plan", "A hairy frog", "--backend", "llama", "--llm-model", str(gguf)], cache)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prompt"] == "A hairy frog"
    assert "cannot store the LLM answer in the rare cache" in done.stderr and "--out" not in done.stderr


def test_unstorable_inversions_still_give_the_image(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "inversion").write_text("in the way")
    args = ["seedselect", "a handwritten digit seven", "--refs", str(SEVEN), "--model", "toy-digits",
            "--method", "nao-seedselect", "--iters", "1", "--inner-steps", "2", "--inversion-steps", "2",
            "--out", str(tmp_path / "out")]  # fmt: skip
    done = _rare(args, cache)
    assert done.returncode == 0, done.stderr
    assert "cannot store the inverted seeds in the rare cache" in done.stderr
    assert list((tmp_path / "out").glob("*.png"))


# -- 6: inversion cache entries are checked ---------------------------------------------------------


def _nao(tmp_path, cache, out):
    args = ["seedselect", "a handwritten digit seven", "--refs", str(SEVEN), "--model", "toy-digits",
            "--method", "nao-seedselect", "--iters", "1", "--inner-steps", "2", "--inversion-steps", "2",
            "--out", str(out), "--json"]  # fmt: skip
    return _rare(args, cache)


@pytest.mark.parametrize("damage", ["shape", "huge", "other-key"])
def test_a_wrong_inversion_cache_entry_is_inverted_again(tmp_path, damage):
    import torch

    from rarecli.seeds.files import load_seed, seed_bytes

    cache = tmp_path / "cache"
    first = _nao(tmp_path, cache, tmp_path / "a")
    assert first.returncode == 0, first.stderr
    entries = sorted((cache / "inversion").glob("*.safetensors"))
    victim = entries[0]
    seed = load_seed(victim)
    tensor, meta = seed.tensor, dict(seed.metadata)
    if damage == "shape":
        tensor = torch.zeros(2, 3)
    elif damage == "huge":
        tensor = tensor * 1e6
    else:
        meta["prompt"] = "another prompt"
    victim.write_bytes(seed_bytes(tensor, meta))
    again = _nao(tmp_path, cache, tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert f"inversion cache entry {victim.name} is unusable" in again.stderr
    losses = [[{k: v for k, v in row.items() if k != "image"} for row in json.loads(d.stdout)["losses"]]
              for d in (first, again)]  # fmt: skip
    assert losses[0] == losses[1]  # the same start point as before the damage
    assert load_seed(victim).tensor.shape == seed.tensor.shape and float(load_seed(victim).tensor.abs().max()) < 50


@pytest.mark.parametrize("dtype", ["int64", "bool", "complex64"])
def test_seed_files_of_non_float_tensors_are_refused(tmp_path, dtype):
    import torch
    from safetensors.torch import save_file

    from rarecli.errors import InputError
    from rarecli.seeds.files import load_seed

    path = tmp_path / "seed.safetensors"
    save_file({"seed": torch.zeros(4, 8, 8, dtype=getattr(torch, dtype))}, str(path))
    with pytest.raises(InputError, match="not floating-point noise"):
        load_seed(path)
