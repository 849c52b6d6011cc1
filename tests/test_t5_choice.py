"""SD3 without T5 (`--no-t5`) and SD3 folders saved without it: they load, sample, and say so."""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.llm.schema import Concept, Plan
from tests.conftest import rare_cmd

PLAN = Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 3),))


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(json.dumps(PLAN.to_json()))
    return path


@pytest.fixture(scope="module")
def saved_without_t5(tmp_path_factory):
    """tiny-sd3 saved the way diffusers documents for dropping T5: model_index.json holds [null, null]."""
    from diffusers import DiffusionPipeline

    from rarecli.backbones.registry import EMBEDDED, ensure_built

    folder = tmp_path_factory.mktemp("sd3") / "no-t5"
    pipe = DiffusionPipeline.from_pretrained(ensure_built(EMBEDDED["tiny-sd3"]), text_encoder_3=None, tokenizer_3=None)
    pipe.save_pretrained(folder)
    assert json.loads((folder / "model_index.json").read_text())["text_encoder_3"] == [None, None]
    return folder


def _generate(plan_file, out, *args):
    return subprocess.run(
        [*rare_cmd(), "r2f", "generate", str(plan_file), "--steps", "3", "--out", str(out), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _meta(stdout):
    from PIL import Image

    return json.loads(Image.open(stdout.split()[0]).info["rare"])


def test_a_folder_saved_without_t5_loads_and_its_images_say_so(plan_file, saved_without_t5, tmp_path):
    done = _generate(plan_file, tmp_path / "o", "--model", str(saved_without_t5))
    assert done.returncode == 0, done.stderr
    assert _meta(done.stdout)["hyper"]["t5"] is False


def test_no_t5_drops_the_encoder_and_changes_the_conditioning(plan_file, tmp_path):
    with_t5 = _generate(plan_file, tmp_path / "a", "--model", "tiny-sd3")
    without = _generate(plan_file, tmp_path / "b", "--model", "tiny-sd3", "--no-t5")
    assert with_t5.returncode == 0 and without.returncode == 0, without.stderr
    assert _meta(with_t5.stdout)["hyper"]["t5"] is True and _meta(without.stdout)["hyper"]["t5"] is False
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(with_t5.stdout.split()[0]))
    b = np.asarray(Image.open(without.stdout.split()[0]))
    assert a.shape == b.shape and (a != b).any()  # zeros in place of T5's tokens: another conditioning


def test_t5_on_a_folder_without_it_and_no_t5_on_a_model_without_the_choice_are_refused(
    plan_file, saved_without_t5, tmp_path
):
    asked = _generate(plan_file, tmp_path / "c", "--model", str(saved_without_t5), "--t5")
    assert asked.returncode == 1 and "saved without its T5 encoder" in asked.stderr
    wrong = _generate(plan_file, tmp_path / "d", "--model", "tiny-sd", "--no-t5")
    assert wrong.returncode == 1 and "optional T5 encoder (SD3)" in wrong.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_the_library_loads_without_t5(cpu):
    from rarecli.backbones.loading import load_pipeline

    loaded = load_pipeline("tiny-sd3", cpu, t5=False)
    assert loaded.pipe.text_encoder_3 is None and loaded.has_t5 is False
    assert load_pipeline("tiny-sd3", cpu).has_t5 is True
    assert load_pipeline("tiny-sd", cpu).has_t5 is None
