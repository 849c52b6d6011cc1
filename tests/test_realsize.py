"""The real code on the architecture twins, at the real models' sizes (opt-in: `make test-realsize`).

Not in `make test`: the twins are GBs of random weights (built once into the rare cache: SD2.1-base
2.6 GB, ViT-H-14 2.0 GB, SD3-medium without T5 5.9 GB, in fp16) and each run takes minutes on a CPU.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.llm.schema import Concept, Plan
from rarecli.toyworld import REFS_DIR
from tests.conftest import rare_cmd

pytestmark = [pytest.mark.realsize, pytest.mark.slow]
TIMEOUT = 3600


def _run(*args):
    return subprocess.run([*rare_cmd(), *args], capture_output=True, text=True, timeout=TIMEOUT)


def _meta(path):
    from PIL import Image

    image = Image.open(path)
    return image, json.loads(image.info["rare"])


@pytest.mark.parametrize("method", ["seedselect", "nao-seedselect"])
def test_seedselect_runs_on_the_sd21_and_vit_h_twins(tmp_path, method):
    out = tmp_path / method
    done = _run(
        "seedselect", "tiger cat", "--refs", str(REFS_DIR / "seven"), "--method", method,
        "--model", "twin:sd21-base", "--clip-model", "twin:vit-h-14", "--iters", "2", "--inner-steps", "2",
        "--inversion-steps", "4", "--height", "256", "--width", "256", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    image, meta = _meta(done.stdout.split()[0])
    assert image.size == (256, 256)
    assert "architecture twin of stabilityai/stable-diffusion-2-1-base@" in meta["model_weights"]
    assert "laion/CLIP-ViT-H-14-laion2B-s32B-b79K@" in meta["hyper"]["clip_weights"]
    (record,) = out.glob("*.run.json")
    run = json.loads(record.read_text())
    assert len(run["loss_curve"]) == 2 and run["checkpointing"]["mode"] == "auto"
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".png", ".safetensors"]


def test_r2f_generate_runs_on_the_sd3_medium_twin_without_t5(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 3),)).to_json()))
    done = _run(
        "r2f", "generate", str(plan), "--model", "twin:sd3-medium", "--steps", "4", "--height", "512", "--width",
        "512", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    image, meta = _meta(done.stdout.split()[0])
    assert image.size == (512, 512) and meta["hyper"]["t5"] is False
    assert "stable-diffusion-3-medium-diffusers@" in meta["model_weights"]


def test_built_twins_hold_the_recorded_parameters(cpu):
    from rarecli.backbones.clip import load_clip
    from rarecli.backbones.loading import load_pipeline
    from rarecli.backbones.twins import TWINS

    pipe = load_pipeline("twin:sd21-base", cpu).pipe
    for name, n in TWINS["sd21-base"].expected_parameters().items():
        assert sum(p.numel() for p in getattr(pipe, name).parameters()) == n
    clip = load_clip("twin:vit-h-14", cpu)
    assert sum(p.numel() for p in clip.model.parameters()) == TWINS["vit-h-14"].parameters
    assert clip.image_size == 224
