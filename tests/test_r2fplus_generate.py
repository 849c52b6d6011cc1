"""R2F+ sampling on the embedded tiny SD3 (issue 14): what each step received, that box guidance moves
attention into the box, that fusion pastes exactly the objects' latents inside their masks, and the
command end to end (an R2F+ plan from a real tiny GGUF, then `rare r2f generate`)."""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.methods.r2f_plus.schema import PlusObject, PlusPlan
from tests.conftest import rare_cmd

LION = PlusObject("#1", "a spotted lion", "#1 lounging", ("a spotted animal", "a spotted cat"), (1, 2),
                  (0.05, 0.3, 0.5, 0.85))  # fmt: skip
BED = PlusObject("#2", "an ax shaped bed", "#2 in a room", ("an ax shaped furniture",), (3,), (0.55, 0.4, 0.95, 0.8))
PLAN = PlusPlan("A spotted lion is lounging on an ax shaped bed", "#1 lounging on #2", (LION, BED))


@pytest.fixture(scope="module")
def sd3():
    from rarecli.backbones.loading import load_pipeline
    from rarecli.runtime.device import DeviceManager

    return load_pipeline("tiny-sd3", DeviceManager("cpu", "fp32"))


def _run(sd3, steps, **trace_kw):
    from rarecli.backbones.loading import latent_shape
    from rarecli.methods.r2f_plus.masks import BoxMasker
    from rarecli.methods.r2f_plus.sampler import PlusSettings, Trace, sample_plus

    trace = Trace(**trace_kw)
    made = sample_plus(sd3, PLAN, 0, latent_shape(sd3.ref), PlusSettings.for_steps(steps, 7.0), BoxMasker(), trace)
    return made, trace


def test_each_step_receives_the_phrases_worked_out_by_hand(sd3):
    made, trace = _run(sd3, 20)
    # By hand, SD3's level table (levels 1, 2, 3 stop at 5, 10, 20 of 50) scaled to 20 steps and rounded
    # half up: stops 2, 4, 8. The lion (levels 1, 2): "a spotted animal" at step 0, "a spotted cat" at
    # step 2 (its first stand-in has expired, its second has not), the rare phrase on every other step.
    # The bed (level 3): its stand-in on the even steps before 8.
    A, C, L = "a spotted animal", "a spotted cat", "a spotted lion"
    F, B = "an ax shaped furniture", "an ax shaped bed"
    lion = [A, L, C] + [L] * 17
    bed = [F, B, F, B, F, B, F, B] + [B] * 12
    # What the transformer's sampling calls were given (identified by their embeddings), per generation.
    assert trace.received["base"] == [f"{lion[i]} lounging on {bed[i]}" for i in range(20)]
    assert trace.received["#1"] == [f"{p} lounging" for p in lion]
    assert trace.received["#2"] == [f"{p} in a room" for p in bed]
    assert [row["#1"] for row in trace.phrases["base"]] == lion
    assert made.image.size == (64, 64) and [o.key for o in made.objects] == ["#1", "#2"]
    # Forward passes: 3 generations x 20 steps, plus 4 guided steps (10 of 50 scaled) x 5 updates each,
    # every update one forward and one backward pass.
    assert (trace.forward, trace.backward) == (3 * 20 + 3 * 4 * 5, 3 * 4 * 5)


def test_box_guidance_moves_each_objects_attention_into_its_box(sd3):
    import torch

    from rarecli.methods.r2f.sampler import encode
    from rarecli.methods.r2f_plus.attention import (
        attention_share,
        guide,
        object_maps,
        probing,
        run_probe,
        slot_tokens,
        token_grid,
    )
    from rarecli.methods.r2f_plus.sampler import PlusSettings
    from rarecli.seeds.noise import noise_from_seed

    pipe = sd3.pipe
    settings = PlusSettings.for_steps(10, 7.0)
    received = {"#1": LION.phrase, "#2": BED.phrase}
    text = "a spotted lion lounging on an ax shaped bed"
    with torch.no_grad():
        cond = encode(sd3, text, None, True, settings.max_sequence_length)
    spans = slot_tokens(sd3, PLAN.base_prompt, received, settings.max_sequence_length)
    # The slots' tokens: "a spotted lion" and "an ax shaped bed" in CLIP's positions and again in T5's.
    assert all(any(i < 77 for i in s) and any(i >= 77 for i in s) for s in spans.values())
    boxes = {"#1": LION.box, "#2": BED.box}
    pipe.scheduler.set_timesteps(10)
    t, sigma = pipe.scheduler.timesteps[0], float(pipe.scheduler.sigmas[0])
    shares = []
    for seed in range(3):
        x = noise_from_seed(seed, (16, 8, 8)).unsqueeze(0)
        grid = token_grid(sd3, x)
        with probing(pipe.transformer), torch.no_grad():
            before = attention_share(object_maps(run_probe(sd3, x, t, cond), spans), boxes, grid)
            guided = guide(sd3, x, t, sigma, cond, spans, boxes, settings.box_iterations, settings.box_scale)
            after = attention_share(object_maps(run_probe(sd3, guided, t, cond), spans), boxes, grid)
        shares.append((before, after))
    for before, after in shares:
        assert all(after[k] > before[k] for k in boxes), shares
    # The processors are back as they were: the next plain sampling is unaffected.
    assert all(type(p).__name__ == "JointAttnProcessor2_0" for p in pipe.transformer.attn_processors.values())


def test_fusion_pastes_each_objects_latent_inside_its_mask_and_nothing_outside(sd3):
    import torch

    made, trace = _run(sd3, 10, keep_fusion=True)
    assert [r.step for r in trace.fusion] == [0, 1, 2, 3]  # 20 of 50 steps, scaled to 10
    for record in trace.fusion:
        union = torch.zeros_like(record.after[0, 0])
        for key, (mask, latent) in zip(("#1", "#2"), record.pasted, strict=True):
            assert torch.equal(latent, trace.object_latents[key][record.step])  # that object's, that step's
            inside = mask.bool()
            assert inside.any()
            assert torch.equal(record.after[..., inside], latent[..., inside].to(record.after))
            union = torch.maximum(union, mask)
        outside = union == 0
        assert outside.any()
        assert torch.equal(record.after[..., outside], record.before[..., outside])
        assert not torch.equal(record.after, record.before)
    # The lion's mask: its centred box (0.275, 0.225, 0.725, 0.775) on the 8x8 latent grid is rows 2..5 and
    # cols 2..5; moved by its centre's offset, rounded to cells (down 1, left 2), with its latents.
    cells = trace.fusion[0].pasted[0][0].nonzero()
    assert cells.min(0).values.tolist() == [3, 0] and cells.max(0).values.tolist() == [6, 3]


# -- masks from the tiny detector and segmenter ------------------------------------------------------


@pytest.fixture(scope="module")
def masker():
    from rarecli.methods.r2f_plus.detect import DetectorMasker
    from rarecli.runtime.device import DeviceManager

    return DetectorMasker("tiny-grounding-dino", "tiny-sam", DeviceManager("cpu", "fp32"), 0.3)


def _images():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(4)]


def test_the_detector_masks_an_object_and_a_weak_detection_falls_back_to_the_box(masker):
    import torch

    box = (0.25, 0.25, 0.75, 0.75)
    scored = [(image, masker.best_box(image, LION.phrase)[1]) for image in _images()]
    image, score = min(scored, key=lambda p: p[1])
    assert score < 1.0
    masker.min_score = score  # at the threshold: the detector's own mask
    made = masker.mask(image, LION, box, (8, 8))
    assert made.source == f"detector (score {score:.2f})"
    assert made.image.shape == (64, 64) and made.latent.shape == (8, 8)
    expected = masker.outline(image, masker.best_box(image, LION.phrase)[0]).float()
    assert torch.equal(made.image, expected) and 0 < float(made.latent.max()) <= 1
    masker.min_score = min(1.0, score + 1e-4)  # just above it: weak, so the box
    weak = masker.mask(image, LION, box, (8, 8))
    assert weak.source.startswith("box (weak detection: best score")
    assert weak.latent.sum() == 16 and weak.image.sum() == 32 * 32
    masker.min_score = 0.3


def test_generate_with_the_tiny_detector_and_segmenter_writes_their_masks(tmp_path):
    from pathlib import Path

    from rarecli.io.images import read_metadata

    (tmp_path / "plan.json").write_text(json.dumps(PLAN.to_json()))
    out = tmp_path / "out"
    run = subprocess.run(
        rare_cmd() + ["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sd3", "--steps", "4",
                      "--masks", "detector", "--detector", "tiny-grounding-dino", "--segmenter", "tiny-sam",
                      "--min-detection-score", "0", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    meta = read_metadata(Path(result["images"][0]))["rare"]
    assert all(source.startswith("detector (score") for source in meta["masks"].values())
    assert meta["hyper"]["detector"]["model"] == "tiny-grounding-dino" and meta["hyper"]["segmenter"]["model"] == "tiny-sam"
    assert meta["plan"] == PLAN.to_json()
    assert sorted(Path(p).name.split(".")[-2] for p in result["parts"]) == [
        "boxes", "mask-1", "mask-2", "object-1", "object-2"]  # fmt: skip


def test_rare_models_lists_the_tiny_detector_and_segmenter():
    run = subprocess.run(rare_cmd() + ["models", "--json"], capture_output=True, text=True, timeout=120)
    embedded = {e["name"]: e for e in json.loads(run.stdout)["embedded"]}
    assert embedded["tiny-grounding-dino"]["class"] == "GroundingDinoForObjectDetection"
    assert embedded["tiny-sam"]["class"] == "SamModel"


def test_detection_options_need_detector_masks_and_known_models(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(PLAN.to_json()))
    base = rare_cmd() + ["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sd3", "--out", str(tmp_path / "o")]
    run = subprocess.run(base + ["--detector", "tiny-grounding-dino"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "--detector needs --masks detector" in run.stderr
    run = subprocess.run(base + ["--masks", "detector", "--detector", "tiny-sam"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "tiny-sam is a segmenter model, not a detector" in run.stderr
    assert not (tmp_path / "o").exists()


# -- RareBench --method r2f-plus -----------------------------------------------------------------------


def test_rarebench_r2f_plus_replays_the_authors_plans_and_counts_the_refused_and_missing(tmp_path, monkeypatch, capsys):
    import hashlib

    from rarecli.cli.app import run
    from rarecli.io.images import read_metadata
    from tests.bench_helpers import OWN_PROMPTS, FileServer, own_definition, write_prompts

    first, second, _third = OWN_PROMPTS["rarebench_multi_1and.txt"]

    def authors(prompt, bbox):  # their stored format: one plan per prompt
        return {"original_prompt": prompt, "base_prompt": "#1 and #2", "objects": {
            "#1": {"prompt": "#1", "object": "a hairy frog", "r2f": ["a hairy animal"], "visual_detail_levels": [3],
                   "bbox": bbox},
            "#2": {"prompt": "#2", "object": "a bald lion", "r2f": [], "visual_detail_levels": [], "bbox": [0.5, 0.2, 0.9, 0.8]},
        }}  # fmt: skip

    raw = json.dumps({first: authors(first, [0.1, 0.2, 0.45, 0.8]), second: authors(second, [0.25, 0.4, 0.3, 0.4])})
    name = "test/r2fplus_prompt/rarebench/rarebench_multi_1and_gpt4o.txt"
    (tmp_path / "mirror" / "c0ffee" / name).parent.mkdir(parents=True)
    (tmp_path / "mirror" / "c0ffee" / name).write_text(raw)
    pins = {"rarebench_multi_1and.txt": {"file": name, "sha256": hashlib.sha256(raw.encode()).hexdigest()}}
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(own_definition(tmp_path, {}, authors_plus_plans=pins)))
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    data = write_prompts(tmp_path / "data")
    out = tmp_path / "run"
    args = ["bench", "rarebench", "--out", str(out), "--method", "r2f-plus", "--plans", "authors", "--model",
            "tiny-sd3", "--steps", "2", "--judge", "clipscore", "--judge-model", "tiny-clip", "--data", str(data),
            "-c", "M-and", "--device", "cpu", "--dtype", "fp32", "--json"]  # fmt: skip
    with FileServer(tmp_path / "mirror").running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}")
        assert run(args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["categories"]["M-and"]["ok"] == 1 and summary["categories"]["M-and"]["failed"] == 2
    assert "refused by our checks" in captured.err
    records = {json.loads(p.read_text())["prompt"]: json.loads(p.read_text()) for p in (out / "items").rglob("*.json")}
    assert records[first]["status"] == "ok"
    assert "refused by our checks" in records[second]["reason"] and "no plan for this prompt" in records[_third]["reason"]
    hyper = read_metadata(out / records[first]["image"])["rare"]["hyper"]
    assert hyper["plan"]["objects"][0]["box"] == [0.1, 0.2, 0.45, 0.8] and len(hyper["parts"]) == 5
    config = json.loads((out / "config.json").read_text())["identity"]["method"]
    assert config["name"] == "r2f-plus" and config["authors_plans_sha256"] == {"M-and": pins["rarebench_multi_1and.txt"]["sha256"]}
