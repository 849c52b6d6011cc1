"""R2F on FLUX (issue 14) with the embedded tiny-flux: the blend weight each step's text inputs actually
received, sequence and pooled, against the authors' table; and the command end to end."""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.llm.schema import Chain, Concept, Plan
from tests.conftest import rare_cmd

PROMPT = "a hairy frog next to a cube-shaped melon"


@pytest.fixture(scope="module")
def flux():
    from rarecli.backbones.loading import load_pipeline
    from rarecli.runtime.device import DeviceManager

    return load_pipeline("tiny-flux", DeviceManager("cpu", "fp32"))


def _received(flux, plan, steps=4):
    """Run the real sampler; per transformer call, (stand-in index, weight) solved from the sequence
    embeddings and from the pooled embedding it was given (None, 0.0 when it is the rare prompt's)."""
    import torch

    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.r2f.flux import build_blend, encode_blend, sample_r2f_flux
    from rarecli.seeds.noise import noise_from_seed

    blend = build_blend(plan, steps)
    encoded = encode_blend(flux, blend)
    rare_e, rare_p = encoded[-1]
    seen = []

    def solve(given, rare, others):
        if torch.allclose(given, rare):
            return (None, 0.0)
        for j, other in others.items():  # given = a * other + (1 - a) * rare, for one stand-in
            d = other - rare
            a = float(((given - rare) * d).sum() / (d * d).sum())
            if torch.allclose(given, a * other + (1 - a) * rare, atol=1e-6):
                return (j, round(a, 6))
        return ("?", 0.0)

    def record(module, args, kwargs):
        others_e = {j: e for j, (e, _) in encoded.items() if j >= 0}
        others_p = {j: p for j, (_, p) in encoded.items() if j >= 0}
        seen.append(
            (solve(kwargs["encoder_hidden_states"], rare_e, others_e), solve(kwargs["pooled_projections"], rare_p, others_p))
        )

    hook = flux.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)  # the blend is prepended
    try:
        sample_r2f_flux(flux, blend, encoded, noise_from_seed(0, latent_shape(flux.ref)), 3.5)
    finally:
        hook.remove()
    return seen, blend


@pytest.mark.parametrize(
    ("concepts", "table"),
    [
        # The authors' table: one stand-in of level 1..3 blends at step 0 (0.3); of level 4..5 at steps 0
        # and 1 (0.3, 0.15); level 0 never; then the rare prompt alone.
        ([Concept("cube-shaped melon", "cube-shaped box", 2)], [(0, 0.3), (None, 0.0), (None, 0.0), (None, 0.0)]),
        ([Concept("hairy frog", "hairy dog", 5)], [(0, 0.3), (0, 0.15), (None, 0.0), (None, 0.0)]),
        ([Concept("hairy frog", "hairy dog", 0)], [(None, 0.0)] * 4),
    ],
)
def test_each_step_receives_the_authors_blend_weight_in_sequence_and_pooled(flux, concepts, table):
    seen, _ = _received(flux, Plan(PROMPT, tuple(concepts)))
    assert seen == [(row, row) for row in table]


def test_two_stand_ins_blend_lower_level_first_and_steps_2_3_run_the_rare_prompt(flux):
    # Levels (4, 2) in the chain's order: the second (lower level) at step 0, the first at step 1; the
    # authors' code reuses step 1's prediction for steps 2-3, here they are real rare-prompt passes.
    chain = Chain(("a hairy dog next to a melon", "a frog next to a cube-shaped box", PROMPT), (4, 2))
    seen, blend = _received(flux, Plan(PROMPT, chain=chain))
    assert seen == [((1, 0.3), (1, 0.3)), ((0, 0.15), (0, 0.15)), ((None, 0.0),) * 2, ((None, 0.0),) * 2]
    assert blend.to_json()["blend"][0] == {"prompt": 1, "weight": 0.3}


def test_r2f_generate_on_tiny_flux_writes_the_image_with_its_blend(tmp_path):
    from pathlib import Path

    from rarecli.io.images import read_metadata

    plan = Plan(PROMPT, (Concept("hairy frog", "hairy dog", 5),))
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json()))
    run = subprocess.run(
        rare_cmd() + ["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-flux", "-n", "2",
                      "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["seeds"] == [0, 1] and len(result["images"]) == 2
    meta = read_metadata(Path(result["images"][0]))
    assert meta["rare"]["hyper"]["steps"] == 4 and meta["rare"]["hyper"]["guidance"] is None
    assert [b["weight"] for b in meta["rare"]["schedule"]["blend"]] == [0.3, 0.15, 0.0, 0.0]
    assert "R2F blend: 0.3/0.15/0/0" in meta["parameters"]


def test_plain_sampling_on_tiny_flux_takes_the_seed_shape_and_is_deterministic(flux):
    import numpy as np

    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.sample import sample_batch
    from rarecli.seeds.noise import noise_from_seed

    shape = latent_shape(flux.ref)
    assert shape == (16, 8, 8)
    a, b = (np.asarray(sample_batch(flux, PROMPT, noise_from_seed(s, shape), 2)[0]) for s in (0, 0))
    c = np.asarray(sample_batch(flux, PROMPT, noise_from_seed(1, shape), 2)[0])
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(Exception, match="multiples of 16"):
        latent_shape(flux.ref, 72, 64)
