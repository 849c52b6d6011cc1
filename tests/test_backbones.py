"""Embedded backbones: built once, saved in the diffusers layout, reloaded through from_pretrained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rarecli.backbones.loading import latent_shape, load_pipeline, resolve
from rarecli.backbones.registry import EMBEDDED
from rarecli.errors import InputError, RareError
from rarecli.methods.sample import sample
from rarecli.runtime.cache import MODEL_CACHE
from rarecli.runtime.device import DeviceManager


def test_tiny_sd_is_saved_in_diffusers_layout_and_reloads(tmp_path, cpu):
    ref = resolve("tiny-sd")
    index = json.loads((ref.location and (__import__("pathlib").Path(ref.location) / "model_index.json")).read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert part in index
    # A copy in a user's own folder loads through the same local-folder path as a real model.
    loaded = load_pipeline(ref.location, cpu)
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline"
    assert loaded.ref.source == "local"


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_sd):
    shape = latent_shape(tiny_sd.ref)
    assert shape == (4, 8, 8)

    def render(seed):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        return np.asarray(sample(tiny_sd, "a hairy frog", noise, steps=4))

    a, b, c = render(7), render(7), render(8)
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_loading_twice_hits_the_cache(cpu):
    before = MODEL_CACHE.hits
    first = load_pipeline("tiny-sd", cpu)
    second = load_pipeline("tiny-sd", DeviceManager("cpu", "fp32"))
    assert second is first
    assert MODEL_CACHE.hits >= before + 1


@pytest.mark.parametrize(
    "name,family,channels",
    [("tiny-sdxl", "StableDiffusionXLPipeline", 4), ("tiny-sd3", "StableDiffusion3Pipeline", 16)],
)
def test_sdxl_and_sd3_tiny_backbones_generate(cpu, name, family, channels):
    loaded = load_pipeline(name, cpu)
    assert loaded.family == family
    shape = latent_shape(loaded.ref)
    assert shape == (channels, 8, 8)
    image = sample(loaded, "a hairy frog", torch.randn(shape, generator=torch.Generator().manual_seed(0)), steps=2)
    assert image.size == (64, 64)


def test_family_check_names_what_is_needed(cpu):
    with pytest.raises(RareError, match="StableDiffusion3Pipeline; seedselect needs"):
        load_pipeline("tiny-sd3", cpu, families={"StableDiffusionPipeline"}, purpose="seedselect")


def test_unknown_model_names_are_rejected_before_any_download():
    with pytest.raises(InputError, match="unknown model"):
        resolve("not-a-model")
    with pytest.raises(InputError, match="is a clip model"):
        resolve("tiny-clip")


def test_hub_id_offline_gives_a_hint(cpu):
    with pytest.raises(RareError, match="not in the local Hugging Face cache") as info:
        load_pipeline("someone/not-in-cache", cpu)
    assert "embedded" in info.value.hint


def test_clip_tokenizer_matches_real_clip_ids():
    from rarecli.backbones.tokenizers import clip_tokenizer

    # The ids of the real CLIP ViT-L/14 and open_clip tokenizers for this text.
    assert clip_tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_registry_lists_every_embedded_backbone():
    assert {"tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-clip"} <= set(EMBEDDED)
