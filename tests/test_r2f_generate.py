"""R2F sampling on the embedded tiny SD3, SDXL and SD pipelines.

A forward pre-hook on the denoiser records the text embeddings each step actually received (after the
pipeline's own CFG stacking), and the test identifies them against each prompt's embeddings: the
sequence must equal the schedule computed by hand from the paper's rule.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from rarecli.llm.schema import Concept, Plan

PLAN = Plan(
    "a hairy frog next to a cube-shaped melon",
    (Concept("hairy frog", "hairy dog", 5), Concept("cube-shaped melon", "cube-shaped box", 1)),
)
CHAIN = (
    "a hairy dog next to a cube-shaped box",
    "a hairy dog next to a cube-shaped melon",
    "a hairy frog next to a cube-shaped melon",
)
STEPS = 8
# By hand, 8 steps. SD3: level 1 -> 5*8/50 = 0.8 -> 1; level 5 -> 40*8/50 = 6.4 -> 6.
# SDXL/SD: level 1 -> 3*8/50 = 0.48 -> at least 1; level 5 -> 30*8/50 = 4.8 -> 5.
EXPECTED = {
    "tiny-sd3": [0, 2, 1, 2, 1, 2, 2, 2],
    "tiny-sdxl": [0, 2, 1, 2, 1, 2, 2, 2],
    "tiny-sd": [0, 2, 1, 2, 1, 2, 2, 2],
}
EXPECTED_STOPS = {"tiny-sd3": (1, 6), "tiny-sdxl": (1, 5), "tiny-sd": (1, 5)}


def _observe(loaded, conds, guidance, schedule, seed=0):
    """Run the real sampler; return (image, indices seen per denoiser call, pooled indices seen)."""
    import torch

    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.r2f.sampler import sample_r2f
    from rarecli.seeds.noise import noise_from_seed

    pipe = loaded.pipe
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    seen, seen_pooled = [], []

    def identify(tensor, attr):
        hits = [i for i, c in enumerate(conds) if c is not None and torch.equal(getattr(c, attr), tensor)]
        return hits[0] if len(hits) == 1 else hits

    def hook(module, args, kwargs):
        seen.append(identify(kwargs["encoder_hidden_states"], "prompt_embeds"))
        pooled = kwargs.get("pooled_projections")
        if pooled is None and kwargs.get("added_cond_kwargs"):
            pooled = kwargs["added_cond_kwargs"].get("text_embeds")
        if pooled is not None:
            seen_pooled.append(identify(pooled, "pooled"))

    handle = denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        image = sample_r2f(loaded, schedule, conds, noise_from_seed(seed, latent_shape(loaded.ref)), guidance)
    finally:
        handle.remove()
    return image, seen, seen_pooled


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-sdxl", "tiny-sd"])
def test_each_step_gets_the_planned_embedding(model, cpu):
    from rarecli.backbones.families import family_of
    from rarecli.backbones.loading import load_pipeline
    from rarecli.methods.r2f.sampler import encode_schedule
    from rarecli.methods.r2f.schedule import build_schedule

    loaded = load_pipeline(model, cpu)
    schedule = build_schedule(PLAN, loaded.family, STEPS)
    assert schedule.prompts == CHAIN
    assert schedule.stops == EXPECTED_STOPS[model]
    guidance = family_of(loaded.family).guidance
    conds = encode_schedule(loaded, schedule, guidance)
    # Every prompt used is encoded, CFG-stacked with the negative (batch 2), and distinct from the others.
    assert all(c is not None and c.prompt_embeds.shape[0] == 2 for c in conds)
    image, seen, seen_pooled = _observe(loaded, conds, guidance, schedule)
    assert seen == EXPECTED[model]
    if model != "tiny-sd":
        assert seen_pooled == EXPECTED[model]
    assert image.size == (64, 64)
    if model == "tiny-sdxl":
        # The paper's DPM-Solver++ (Karras) was used for the call and the cached pipeline was restored.
        assert type(loaded.pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_without_cfg_the_positive_embedding_alone_is_switched(cpu):
    from rarecli.backbones.loading import load_pipeline
    from rarecli.methods.r2f.sampler import encode_schedule
    from rarecli.methods.r2f.schedule import build_schedule

    loaded = load_pipeline("tiny-sd3", cpu)
    schedule = build_schedule(PLAN, loaded.family, STEPS)
    conds = encode_schedule(loaded, schedule, 1.0)
    assert all(c.prompt_embeds.shape[0] == 1 for c in conds)
    _, seen, _ = _observe(loaded, conds, 1.0, schedule)
    assert seen == EXPECTED["tiny-sd3"]


def test_level_zero_prompt_is_neither_encoded_nor_used(cpu):
    from rarecli.backbones.loading import load_pipeline
    from rarecli.methods.r2f.sampler import encode_schedule
    from rarecli.methods.r2f.schedule import build_schedule

    plan = Plan(
        "a red cat and a furry snake", (Concept("red cat", "red fox", 0), Concept("furry snake", "furry dog", 4))
    )
    loaded = load_pipeline("tiny-sdxl", cpu)
    schedule = build_schedule(plan, loaded.family, 6)  # level 4 -> 20*6/50 = 2.4 -> 2
    assert schedule.stops == (0, 2)
    conds = encode_schedule(loaded, schedule, 5.0)
    assert conds[0] is None
    _, seen, _ = _observe(loaded, conds, 5.0, schedule)
    assert seen == [1, 2, 2, 2, 2, 2]


def _pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_cli_generate_is_deterministic_per_seed_and_embeds_the_plan(tmp_path, monkeypatch, capsys):
    import io
    import sys

    from rarecli.cli.app import run
    from rarecli.io.images import read_metadata

    plans = "\n".join(json.dumps(p.to_json()) for p in [PLAN, Plan("a dog on a sofa")]) + "\n"
    args = ["r2f", "generate", "-", "--model", "tiny-sd3", "--steps", "4", "--device", "cpu", "--json"]
    outputs = []
    for seed, folder in [(3, "a"), (3, "b"), (4, "c")]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(plans))
        assert run([*args, "--seed", str(seed), "-n", "1", "--out", str(tmp_path / folder)]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [entry["prompt"] for entry in lines] == [PLAN.prompt, "a dog on a sofa"]
        outputs.append([entry["images"][0] for entry in lines])
    (a1, a2), (b1, b2), (c1, _) = outputs
    assert np.array_equal(_pixels(a1), _pixels(b1)) and np.array_equal(_pixels(a2), _pixels(b2))
    assert not np.array_equal(_pixels(a1), _pixels(c1))
    # The R2F image differs from the plain prompt's only through the schedule: same seed, other plan.
    assert not np.array_equal(_pixels(a1), _pixels(a2))

    meta = read_metadata(a1)
    assert meta["rare"]["method"] == "r2f" and meta["rare"]["seed"] == 3
    assert meta["rare"]["plan"] == PLAN.to_json()
    assert meta["rare"]["schedule"]["steps"] == [0, 2, 1, 2]  # SD3, 4 steps: stops 1 (level 1) and 3 (level 5)
    assert "R2F stops: 1/3" in meta["parameters"] and "Sampler: FlowMatchEuler" in meta["parameters"]
    assert os.path.basename(a1).startswith("00000_3_r2f_a-hairy-frog")


@pytest.mark.slow
def test_shell_pipeline_plan_into_generate(tmp_path):
    """`cat prompts.txt | rare r2f plan - | rare r2f generate -`, with the tiny GGUF planner and tiny-sd."""
    from tests.conftest import rare_cmd
    from tests.tiny_gguf import write_tiny_llama

    gguf = write_tiny_llama(tmp_path / "tiny.gguf")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a hairy frog\na glass giraffe\n")
    rare = " ".join(rare_cmd())
    command = (
        f"cat {prompts} | {rare} r2f plan - --backend llama --llm-model {gguf} "
        f"| {rare} r2f generate - --model tiny-sd --steps 2 --device cpu --out {tmp_path / 'out'}"
    )
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    paths = out.stdout.split()
    assert len(paths) == 2 and all(os.path.isfile(p) for p in paths)
    from rarecli.io.images import read_metadata

    assert [read_metadata(p)["rare"]["plan"]["prompt"] for p in paths] == ["a hairy frog", "a glass giraffe"]
    assert read_metadata(paths[0])["rare"]["plan"]["llm"]["backend"] == "llama"


def test_generate_rejects_a_bad_plan_file(tmp_path):
    from rarecli.cli.app import run

    bad = tmp_path / "plan.jsonl"
    bad.write_text('{"prompt": "a frog", "concepts": [{"rare": "owl", "frequent": "bird", "level": 2}]}\n')
    assert run(["r2f", "generate", str(bad), "--model", "tiny-sd", "--out", str(tmp_path / "o")]) == 1
    assert run(["r2f", "generate", str(tmp_path / "missing.json"), "--model", "tiny-sd"]) == 1
    assert not (tmp_path / "o").exists()
