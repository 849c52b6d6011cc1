"""The packaged toy-digits world: it loads like a real model, its files are the ones the manifest lists,
its judge and CLIP know held-out digits, and a small evaluation still shows the long-tail phenomenon."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from rarecli.backbones.loading import latent_shape, load_pipeline, resolve
from rarecli.methods.sample import sample
from rarecli.toyworld import (
    CLIP_DIR,
    CLIP_PREPROCESS,
    DIGIT_WORDS,
    MANIFEST,
    REFS_DIR,
    WEIGHTS_DIR,
    digit_of_prompt,
    prompt_for,
)
from rarecli.toyworld import data as toy_data


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run many small ops: two OpenMP threads on a shared 2-core machine spin-wait on
    each other (measured 12x slower here), so this module runs single-threaded and restores after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def manifest():
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def digits():
    return toy_data.load()


@pytest.fixture(scope="module")
def world():
    from rarecli.runtime.device import DeviceManager
    from rarecli.toyworld.evaluate import load_world

    return load_world(DeviceManager("cpu", "fp32"))


def test_manifest_sha256_matches_every_file(manifest):
    listed = manifest["files"]
    on_disk = {
        str(p.relative_to(WEIGHTS_DIR)) for p in WEIGHTS_DIR.rglob("*") if p.is_file() and p.name != "manifest.json"
    }
    assert set(listed) == on_disk
    for name, entry in listed.items():
        blob = (WEIGHTS_DIR / name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"], name
        assert len(blob) == entry["bytes"], name


def test_registry_resolves_packaged_weights_with_a_content_revision(manifest):
    ref = resolve("toy-digits")
    assert ref.source == "embedded"
    assert ref.location == str(WEIGHTS_DIR / "toy-digits")
    assert ref.revision == "sha256:" + hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:12]
    assert resolve("toy-clip", kind="clip").location == str(CLIP_DIR)


def test_toy_digits_generates_deterministically(cpu):
    loaded = load_pipeline("toy-digits", cpu)
    assert loaded.family == "StableDiffusionPipeline"
    assert type(loaded.pipe.scheduler).__name__ == "DDIMScheduler"
    shape = latent_shape(loaded.ref)
    assert shape == (4, 4, 4)

    def render(seed):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        return np.asarray(sample(loaded, prompt_for(0), noise, steps=10))

    a, b, c = render(3), render(3), render(4)
    assert a.shape == (8, 8, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_roles_are_disjoint_and_rare_digits_are_rare(manifest, digits):
    _, labels = digits
    idx = manifest["split"]["indices_into_load_digits"]
    train = set(idx["diffusion_train"])
    refs = {i for v in idx["refs"].values() for i in v}
    held = set(idx["judge_train"]) | set(idx["judge_test"])
    assert not train & refs and not train & held and not refs & held
    assert not refs & set(idx["clip_train"]) and not held & set(idx["clip_train"])
    counts = np.bincount(labels[sorted(train)], minlength=10)
    for d in manifest["rare"]:
        assert 1 <= counts[d] <= 5
    for d in manifest["frequent"]:
        assert counts[d] >= 90


def test_reference_folders_hold_heldout_rare_digits(manifest, digits):
    images, _ = digits
    from PIL import Image

    for d in manifest["rare"]:
        folder = REFS_DIR / DIGIT_WORDS[d]
        files = sorted(folder.glob("*.png"))
        expected = manifest["split"]["indices_into_load_digits"]["refs"][str(d)]
        assert 1 <= len(files) <= 5 and len(files) == len(expected)
        for path in files:
            index = int(path.stem.split("_")[-1])
            assert index in expected
            pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
            assert np.abs(pixels - images[index]).max() < 1 / 255 + 1e-6


def test_judge_classifies_heldout_digits(manifest, digits):
    from rarecli.toyworld.data import to_pil
    from rarecli.toyworld.judge import load_judge

    images, labels = digits
    held = manifest["split"]["indices_into_load_digits"]["judge_test"]
    judge = load_judge()
    # Through PIL, as generated images arrive.
    pred = judge.predict([to_pil(images[i]) for i in held])
    assert np.mean(pred == labels[held]) >= 0.9


def test_toy_clip_loads_through_transformers_and_knows_every_digit(manifest, digits):
    """The shared CLIP loading path (CLIPModel.from_pretrained + the offline CLIP tokenizer + the
    rare_clip.json preprocessing) recognises held-out digits zero-shot, rare ones included."""
    from transformers import CLIPModel

    from rarecli.backbones.tokenizers import clip_tokenizer

    pre = json.loads((CLIP_DIR / CLIP_PREPROCESS).read_text(encoding="utf-8"))
    assert set(pre) >= {"image_size", "image_mean", "image_std"}
    model = CLIPModel.from_pretrained(CLIP_DIR).eval()
    tok = clip_tokenizer()
    images, labels = digits
    held = manifest["split"]["indices_into_load_digits"]["judge_test"]
    x = torch.from_numpy(images[held])[:, None].expand(-1, 3, -1, -1)
    mean = torch.tensor(pre["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["image_std"]).view(1, 3, 1, 1)
    assert x.shape[-1] == pre["image_size"]
    with torch.inference_mode():
        img = model.get_image_features(pixel_values=(x - mean) / std).pooler_output
        ids = tok([prompt_for(d) for d in range(10)], padding="max_length", max_length=77, return_tensors="pt")
        txt = model.get_text_features(input_ids=ids.input_ids).pooler_output
    pred = (torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T).argmax(-1)
    correct = pred.numpy() == labels[held]
    assert correct.mean() >= 0.85
    rare = np.isin(labels[held], manifest["rare"])
    assert correct[rare].mean() >= 0.8


def test_novelty_flags_copies_of_training_images_and_not_new_digits(world, manifest, digits):
    images, _ = digits
    train = manifest["split"]["indices_into_load_digits"]["diffusion_train"]
    refs = [i for v in manifest["split"]["indices_into_load_digits"]["refs"].values() for i in v]
    d_train, _ = world.nearest(images[train[:20]])
    d_refs, _ = world.nearest(images[refs])
    assert (d_train < world.copy_threshold).all()
    assert (d_refs >= world.copy_threshold).mean() >= 0.8


def test_small_evaluation_shows_the_long_tail_and_plugs_in_methods(world, manifest, digits, tmp_path):
    """A few seeds of plain sampling on one frequent and one rare digit, plus two plugged-in methods:
    one that returns a reference image (new and correct) and one that returns a training image of the
    digit (correct, but a copy): the report must tell them apart."""
    from rarecli.toyworld import evaluate as ev

    images, labels = digits
    frequent, rare = manifest["frequent"][0], manifest["rare"][0]
    train = np.asarray(manifest["split"]["indices_into_load_digits"]["diffusion_train"])

    def reference(prompt, refs, seed):
        return ev.MethodOutput(refs[seed % len(refs)], iterations=1)

    def memorise(prompt, refs, seed):
        d = digit_of_prompt(prompt)
        return toy_data.to_pil(images[train[labels[train] == d][0]])

    config = ev.EvalConfig(seeds=6, steps=20, digits=(frequent, rare), grid_seeds=3)
    report = ev.evaluate(world, {"reference": reference, "memorise": memorise}, config)
    sd = report["methods"]["sd"]["per_digit"]
    assert set(sd) == {DIGIT_WORDS[frequent], DIGIT_WORDS[rare]}
    assert sd[DIGIT_WORDS[frequent]]["accuracy"] >= 0.8
    assert sd[DIGIT_WORDS[rare]]["accuracy"] < sd[DIGIT_WORDS[frequent]]["accuracy"]
    ref_row = report["methods"]["reference"]["per_digit"][DIGIT_WORDS[rare]]
    assert DIGIT_WORDS[frequent] not in report["methods"]["reference"]["per_digit"]  # methods: rare digits only
    assert ref_row["accuracy"] >= 0.8 and ref_row["copy_rate"] == 0.0 and ref_row["iterations_mean"] == 1
    mem_row = report["methods"]["memorise"]["per_digit"][DIGIT_WORDS[rare]]
    assert mem_row["copy_rate"] == 1.0 and mem_row["novel_accuracy"] == 0.0
    json_path, png_path = ev.write(report, tmp_path)
    written = json.loads(json_path.read_text())
    assert written["methods"]["sd"]["frequent"]["accuracy"] == sd[DIGIT_WORDS[frequent]]["accuracy"]
    assert png_path.stat().st_size > 1000


def test_small_evaluation_of_our_optimisers_on_a_rare_digit(world):
    """The product's SeedSelect and NAO-SeedSelect (the code `rare seedselect` runs), on a rare digit
    that plain sampling almost never draws, at a CI size (4 seeds, 10 steps). `make eval-toy` measures
    the same at 20 seeds; this keeps a regression visible: NAO-SeedSelect must draw the digit, and
    SeedSelect must move the judge's belief towards it as it iterates."""
    from rarecli.toyworld import evaluate as ev
    from rarecli.toyworld.adapters import SeedSelectMethod

    seven = 7
    assert seven in world.rare
    methods = {
        "nao-seedselect": SeedSelectMethod(world, "nao-seedselect", inner_steps=10),
        "seedselect": SeedSelectMethod(world, "seedselect", inner_steps=10, iters=30),
    }
    config = ev.EvalConfig(seeds=4, steps=10, digits=(seven,), extra_guidances=())
    report = ev.evaluate(world, methods, config)
    rows = {name: m["per_digit"]["seven"] for name, m in report["methods"].items()}
    assert rows["sd"]["accuracy"] <= 0.25
    nao = rows["nao-seedselect"]
    # Accuracy only: NAO-SeedSelect's images sit near one another (and, for seven, near a training
    # image); `make eval-toy` reports that as diversity and copy rates rather than hiding it here.
    assert nao["accuracy"] >= 0.75 and "ref_copy_rate" in nao and "diversity" in nao
    assert nao["iterations_mean"] == 5 and set(nao["accuracy_by_iteration"]) == {str(k) for k in range(6)}
    ss = rows["seedselect"]
    prob = ss["mean_prob_by_iteration"]
    assert ss["iterations_mean"] == 30 and prob["30"] > prob["0"] + 0.05, prob
    assert ss["copy_rate"] == 0.0 and ss["seconds_per_iteration"] > 0
    reach = report["iterations_to_reach_final_rare_accuracy"]
    assert reach["nao-seedselect"]["seedselect"] is not None
    assert reach["nao-seedselect"]["seedselect"] <= (reach["seedselect"]["seedselect"] or 30)


def test_toy_r2f_uses_a_clip_chosen_stand_in_for_the_early_steps(world):
    """The R2F check samples with the product's schedule: the stand-in (chosen by toy-clip among the
    frequent digits, never by the judge) guides the early steps, the rare prompt the rest."""
    from rarecli.toyworld.adapters import R2FMethod, clip_stand_ins

    stand_ins = clip_stand_ins(world)
    assert set(stand_ins) == set(world.rare) and set(stand_ins.values()) <= set(world.frequent)
    method = R2FMethod(world, level=4, stand_in=stand_ins, steps=10)
    images = method.run_seeds(prompt_for(7), None, [0, 1])
    assert len(images) == 2 and images[0].size == (8, 8)
    used = method.schedules[prompt_for(7)]
    assert used[0] == prompt_for(stand_ins[7]) and used[-1] == prompt_for(7)
    plain = R2FMethod(world, level=0, stand_in=stand_ins, steps=10)
    first = plain.run_seeds(prompt_for(7), None, [0])[0]
    assert set(plain.schedules[prompt_for(7)]) == {prompt_for(7)}  # level 0: the rare prompt throughout
    assert np.asarray(first).tolist() != np.asarray(images[0]).tolist()
