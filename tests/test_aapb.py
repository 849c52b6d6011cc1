"""AAPB (issue 24) on the embedded backbones: gamma* is Eq. 13 of the three predictions the denoiser
made, in one call of batch 3 per step; the clamp and the degenerate fallback; fixed gamma 0 and an anchor
that is the target give plain CFG; a batch of 2 is two batches of 1; the CLI end to end."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from rarecli.llm.schema import Concept, Plan
from tests.conftest import rare_cmd
from tests.tiny_gguf import write_tiny_llama

PLAN = Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 3),))
STEPS = 4


def eq13(u: np.ndarray, t: np.ndarray, f: np.ndarray, w: float) -> float:
    """Eq. 13 computed independently, in float64: gamma* = clamp(-<C, D> / ||D||^2, 0.01, 0.99)."""
    c = (1 - w) * (u.astype(np.float64) - t)
    d = w * (f.astype(np.float64) - t)
    return float(np.clip(-(c * d).sum() / (d * d).sum(), 0.01, 0.99))


@pytest.fixture(scope="module")
def sd3():
    from rarecli.backbones.loading import load_pipeline
    from rarecli.runtime.device import DeviceManager

    return load_pipeline("tiny-sd3", DeviceManager("cpu", "fp32"))


def _sample(loaded, plan=PLAN, seeds=(0,), gamma=None, guidance=7.0, watch=None):
    import torch

    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.aapb.method import anchor_and_target, encode_pair, sample_aapb
    from rarecli.methods.r2f.sampler import uses_cfg
    from rarecli.seeds.noise import noise_from_seed

    anchor, target = anchor_and_target(plan)
    target_cond, anchor_inputs = encode_pair(loaded, anchor, target, None, uses_cfg(loaded, guidance))
    noise = torch.stack([noise_from_seed(s, latent_shape(loaded.ref)) for s in seeds])
    denoiser = getattr(loaded.pipe, "transformer", None) or loaded.pipe.unet
    handle = denoiser.register_forward_hook(watch) if watch is not None else None  # before AAPB's own hook
    try:
        images, trace = sample_aapb(loaded, target_cond, anchor_inputs, noise, STEPS, guidance, gamma)
    finally:
        if handle is not None:
            handle.remove()
    return [np.asarray(im, dtype=np.int16) for im in images], trace


def test_gamma_is_eq13_of_the_three_predictions_made_in_one_batch_of_three(sd3):
    raw = []

    def watch(module, args, output):
        raw.append(output[0].detach().float().numpy().copy())

    _, trace = _sample(sd3, watch=watch)
    assert len(raw) == STEPS and all(out.shape[0] == 3 for out in raw)  # one call per step, batch 3
    expected = [eq13(out[0], out[1], out[2], 7.0) for out in raw]
    got = trace.per_image()[0]
    assert got == pytest.approx(expected, abs=1e-4)
    assert any(0.01 < g < 0.99 for g in got)  # not every step clamped: the formula itself is checked


def test_the_clamp_and_the_degenerate_fallback():
    import torch

    from rarecli.methods.aapb.guidance import adaptive_gamma, blended_target

    t = torch.randn(2, 4, 8, 8)
    f = t + torch.randn(2, 4, 8, 8)
    d = f - t
    # With U - T = k (F - T), Eq. 13 gives gamma* = -(1 - w) k / w: pick k for an unclamped gamma* of 5
    # (image 0) and -3 (image 1), which the clamp brings to 0.99 and 0.01.
    w = 3.0
    k = [-g * w / (1 - w) for g in (5.0, -3.0)]
    u = torch.stack([t[0] + k[0] * d[0], t[1] + k[1] * d[1]])
    gamma, degenerate = adaptive_gamma(u, t, f, w)
    assert gamma.tolist() == pytest.approx([0.99, 0.01]) and not degenerate.any()
    # The anchor predicts the target: plain CFG's target, exactly.
    s, g = blended_target(u, t, t.clone(), w, None)
    assert torch.equal(s, t) and g.tolist() == [0.0, 0.0]
    s, _ = blended_target(u, t, f, w, 0.0)
    assert torch.equal(s, t)


def test_an_anchor_that_is_the_target_is_plain_cfg_bit_for_bit(sd3):
    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f
    from rarecli.methods.r2f.schedule import build_schedule
    from rarecli.seeds.noise import noise_from_seed

    plain_plan = Plan("a hairy frog", ())
    (aapb,), trace = _sample(sd3, plan=plain_plan)
    schedule = build_schedule(plain_plan, sd3.family, STEPS)
    conds = encode_schedule(sd3, schedule, 7.0)
    plain = np.asarray(sample_r2f(sd3, schedule, conds, noise_from_seed(0, latent_shape(sd3.ref)), 7.0), dtype=np.int16)
    assert np.array_equal(aapb, plain) and trace.steps == []


def test_fixed_gamma_zero_is_plain_cfg_and_a_fixed_gamma_moves_the_image(sd3):
    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f
    from rarecli.methods.r2f.schedule import build_schedule
    from rarecli.seeds.noise import noise_from_seed

    plain_plan = Plan("a hairy frog", ())
    schedule = build_schedule(plain_plan, sd3.family, STEPS)
    plain = np.asarray(
        sample_r2f(sd3, schedule, encode_schedule(sd3, schedule, 7.0), noise_from_seed(0, latent_shape(sd3.ref)), 7.0),
        dtype=np.int16,
    )
    (zero,), trace = _sample(sd3, gamma=0.0)
    assert np.abs(zero - plain).max() <= 1  # the anchor's row ran in the batch, and weighed nothing
    assert trace.per_image() == [[0.0] * STEPS]
    (half,), _ = _sample(sd3, gamma=0.5)
    assert np.abs(half - plain).max() > 1


def test_a_batch_of_two_is_two_batches_of_one_and_gamma_is_per_image(sd3):
    raw = []

    def watch(module, args, output):
        raw.append(output[0].detach().float().numpy().copy())

    pair, trace2 = _sample(sd3, seeds=(0, 1), watch=watch)
    (one,), trace_a = _sample(sd3, seeds=(0,))
    (two,), trace_b = _sample(sd3, seeds=(1,))
    assert np.abs(pair[0] - one).max() <= 1 and np.abs(pair[1] - two).max() <= 1
    per_image = trace2.per_image()
    assert per_image[0] == pytest.approx(trace_a.per_image()[0], abs=1e-4)
    assert per_image[1] == pytest.approx(trace_b.per_image()[0], abs=1e-4)
    # The authors sum over the batch: one gamma for both images, which equals neither image's own here,
    # and equals the per-image gamma when the batch holds one image (the previous assertions).
    out = raw[0]  # (3 * 2, ...): [U0, U1, T0, T1, F0, F1]
    summed = eq13(out[0:2], out[2:4], out[4:6], 7.0)
    assert summed != pytest.approx(per_image[0][0], abs=1e-3) or summed != pytest.approx(per_image[1][0], abs=1e-3)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-sdxl", "tiny-sd"])
def test_plan_then_generate_with_aapb_records_the_gamma_trace(gguf, tmp_path, model):
    from rarecli.io.images import read_metadata

    planned = subprocess.run(
        rare_cmd() + ["r2f", "plan", "A hairy frog", "--backend", "llama", "--llm-model", str(gguf)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    done = subprocess.run(
        rare_cmd() + ["r2f", "generate", "-", "--method", "aapb", "--model", model, "--steps", "3",
                      "--out", str(tmp_path), "--json"],
        input=planned.stdout, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])
    meta = read_metadata(result["images"][0])
    rare = meta["rare"]
    assert rare["method"] == "aapb" and rare["aapb"]["target"] == "A hairy frog"
    plan = json.loads(planned.stdout)
    if rare["aapb"]["anchor"] != rare["aapb"]["target"]:
        assert len(rare["aapb"]["gamma_trace"]) == 3 and all(0.01 <= g <= 0.99 for g in rare["aapb"]["gamma_trace"])
    assert rare["plan"] == plan and "AAPB gamma:" in meta["parameters"]


def test_flux_is_refused_in_one_line_before_anything_loads(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN.to_json()))
    done = subprocess.run(
        rare_cmd() + ["r2f", "generate", str(plan), "--method", "aapb", "--model", "tiny-flux", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Error: AAPB needs classifier-free guidance" in done.stderr and "guidance-distilled" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--gamma", "0.5"], "--gamma is AAPB's anchor weight"),
        (["--method", "aapb", "--schedule", "authors"], "AAPB has none"),
    ],
)
def test_option_mistakes_are_named(tmp_path, extra, says):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN.to_json()))
    done = subprocess.run(
        rare_cmd() + ["r2f", "generate", str(plan), "--model", "tiny-sd3", *extra, "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and says in done.stderr


def test_rarebench_aapb_replays_aapbs_own_plans_from_their_repository(tmp_path, monkeypatch, capsys):
    """`--method aapb --plans authors` reads AAPB's frozen plans (their M-and stand-ins differ from R2F's),
    at AAPB's pinned commit, verified; served here by a mirror on 127.0.0.1."""
    import hashlib

    from rarecli.cli.app import run
    from rarecli.io.images import read_metadata
    from tests.bench_helpers import OWN_PROMPTS, FileServer, own_definition, write_prompts

    prompts = OWN_PROMPTS["rarebench_multi_1and.txt"]

    def plans_file(anchor_word):  # their stored format: {prompt: {"r2f_prompt": [[anchor, ..., target]], ...}}
        return json.dumps({p: {"visual_detail_level": ["3"], "r2f_prompt": [[f"{anchor_word} {p}", p]]} for p in prompts})

    r2f_raw, aapb_raw = plans_file("R2F's stand-in for"), plans_file("AAPB's stand-in for")
    r2f_name = "test/r2f_prompt/rarebench/rarebench_multi_1and_gpt4.txt"
    aapb_name = "dataset/r2f_prompt/rarebench/rarebench_multi_1and_gpt4.txt"
    for root, name, raw in ((tmp_path / "mirror" / "c0ffee", r2f_name, r2f_raw), (tmp_path / "mirror" / "aapb" / "d78cb2a", aapb_name, aapb_raw)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(raw)
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in (("r2f", r2f_raw), ("aapb", aapb_raw))}
    definition = own_definition(
        tmp_path, {},
        authors_plans={"rarebench_multi_1and.txt": {"file": r2f_name, "sha256": digest["r2f"]}},
        aapb_plans={"rarebench_multi_1and.txt": {"file": aapb_name, "sha256": digest["aapb"]}},
        aapb_source={"repository": "https://github.com/mobled37/AAPB", "commit": "d78cb2a",
                     "base_url": "https://unused.invalid/{commit}", "judge_model": "gpt-4o-2024-05-13"},
    )  # fmt: skip
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(definition))
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    data = write_prompts(tmp_path / "data")
    out = tmp_path / "run"
    args = ["bench", "rarebench", "--out", str(out), "--method", "aapb", "--plans", "authors", "--model", "tiny-sd3",
            "--steps", "2", "--judge", "clipscore", "--judge-model", "tiny-clip", "--data", str(data), "-c", "M-and",
            "--limit", "2", "--device", "cpu", "--dtype", "fp32", "--json"]  # fmt: skip
    with FileServer(tmp_path / "mirror").running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}")
        monkeypatch.setenv("RARE_AAPB_URL", url + "/aapb/{commit}")
        assert run(args) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["categories"]["M-and"]["ok"] == 2
    for record in (json.loads(p.read_text()) for p in (out / "items").rglob("*.json")):
        meta = read_metadata(out / record["image"])["rare"]
        assert meta["method"] == "aapb"
        assert meta["hyper"]["aapb"]["anchor"] == f"AAPB's stand-in for {record['prompt']}"
        assert len(meta["hyper"]["aapb"]["gamma_trace"]) == 2
    identity = json.loads((out / "config.json").read_text())["identity"]["method"]
    assert identity["authors_plans_sha256"] == {"M-and": digest["aapb"]}
    assert identity["aapb_plans_source"] == "https://github.com/mobled37/AAPB@d78cb2a"
    assert identity["aapb_judge_model"] == "gpt-4o-2024-05-13"
    # The published rows of AAPB and ADAPT come beside the paper's, each with its source.
    assert run(["bench", "report", str(out), "--anchors", "--json"]) == 0
    captured = capsys.readouterr()
    later = json.loads(captured.out)["later_anchors"]
    assert later["AAPB-SD3"]["overall"] == pytest.approx(84.06, abs=0.01) and "CVPR 2026" in later["AAPB-SD3"]["source"]
    assert later["ADAPT-SD3"]["M-relation"] == 75.0 and "no public code" in later["ADAPT-SD3"]["source"]
    assert run(["bench", "report", str(out), "--anchors"]) == 0
    printed = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "(1) AAPB-SD3: Lee et al." in printed and "(2) ADAPT-SD3: ADAPT, CVPR 2026" in printed
