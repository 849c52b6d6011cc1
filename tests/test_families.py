"""The model-family table: the one place that says which family a method supports and what it defaults to."""

from __future__ import annotations

import pytest

from rarecli.backbones.families import FAMILIES, family_of, pipelines_for, sampler_label
from rarecli.errors import InputError


def test_method_support_is_read_from_the_table():
    assert pipelines_for("seedselect") == pipelines_for("nao-seedselect") == {"StableDiffusionPipeline"}
    assert pipelines_for("sd") == pipelines_for("r2f") == set(FAMILIES)
    assert pipelines_for("no-such-method") == frozenset()


def test_a_family_is_found_by_class_or_key_and_an_unknown_one_is_named():
    assert family_of("sd3") is family_of("StableDiffusion3Pipeline")
    assert family_of("sd3").guidance == 7.0 and family_of("sdxl").guidance == 5.0 and family_of("sd").guidance == 7.5
    assert family_of("flux") is family_of("FluxPipeline") and family_of("flux").r2f_steps == 4
    with pytest.raises(InputError, match="KandinskyPipeline is not a model family") as info:
        family_of("KandinskyPipeline")
    assert "StableDiffusion3Pipeline" in info.value.hint


def test_sampler_labels_name_the_scheduler_actually_used():
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

    assert sampler_label(DDIMScheduler()) == "DDIM"
    assert sampler_label(PNDMScheduler()) == "PNDM"  # SD2.1-base's own scheduler: plain sampling is not DDIM
    karras = DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="dpmsolver++")
    assert sampler_label(karras) == "DPM++ 2M Karras"
    name, overrides = family_of("sdxl").r2f_scheduler
    assert sampler_label(getattr(__import__("diffusers"), name)(**overrides)) == "DPM++ 2M Karras"
