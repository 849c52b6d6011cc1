"""The model-family table (what a family is and defaults to), the checkpoint table (what a known checkpoint
needs), and which families a method supports (each method's own fact, read through the registry)."""

from __future__ import annotations

import pytest

from rarecli.api import pipelines_for
from rarecli.backbones.checkpoints import identify
from rarecli.backbones.families import FAMILIES, family_of, sampler_label
from rarecli.errors import InputError


def test_method_support_is_read_from_the_table():
    assert pipelines_for("seedselect") == pipelines_for("nao-seedselect") == {"StableDiffusionPipeline"}
    assert pipelines_for("sd") == pipelines_for("r2f") == set(FAMILIES)
    assert pipelines_for("no-such-method") == frozenset()


def test_a_family_is_found_by_class_or_key_and_an_unknown_one_is_named():
    assert family_of("sd3") is family_of("StableDiffusion3Pipeline")
    assert family_of("sd3").guidance == 7.0 and family_of("sdxl").guidance == 5.0 and family_of("sd").guidance == 7.5
    # R2F's 4 steps on FLUX are FLUX.1-schnell's, a checkpoint's fact (FLUX.1-dev is a FluxPipeline too).
    schnell = identify("black-forest-labs/FLUX.1-schnell", "FluxPipeline", {})
    assert family_of("flux") is family_of("FluxPipeline") and schnell.r2f_steps == 4
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
