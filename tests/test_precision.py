"""The precision policy (issue 21): each family says which components run in fp32 under fp16 and what
`--dtype auto` means on CUDA; the seams between components of different dtypes are cast at the
receiver's entry. CI has no GPU, so the fp16 runs here use the tests' switch (RARE_TEST_CPU_HALF=1),
which lets the CPU run the same mixed-precision rules CUDA gets: before the policy, every family's
fp16 run failed here exactly as SD3 did on the H200 ("Input type (c10::Half) and bias type (float)
should be the same" in the VAE's first convolution)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rarecli.cli.app import run
from rarecli.toyworld import REFS_DIR
from tests.bench_helpers import write_prompts

FAMILY_MODELS = {"sd": "tiny-sd", "sdxl": "tiny-sdxl", "sd3": "tiny-sd3", "flux": "tiny-flux"}
HALF = ["--device", "cpu", "--dtype", "fp16"]


@pytest.fixture
def half(monkeypatch):
    monkeypatch.setenv("RARE_TEST_CPU_HALF", "1")


def test_every_family_states_its_policy_and_the_components_it_names_exist(cpu):
    from rarecli.backbones.families import FAMILIES
    from rarecli.backbones.loading import load_pipeline

    for family in FAMILIES.values():
        policy = family.dtype
        assert policy.why and policy.auto and set(policy.auto) <= {"fp16", "bf16", "fp32"}
        components = load_pipeline(FAMILY_MODELS[family.key], cpu).pipe.components
        assert set(policy.fp32_under_fp16) <= set(components), family.key
    by_key = {f.key: f.dtype for f in FAMILIES.values()}
    assert by_key["sd"].fp32_under_fp16 == ("vae",) and by_key["sdxl"].fp32_under_fp16 == ("vae",)
    assert by_key["sd3"].fp32_under_fp16 == () and by_key["sd3"].auto == ("fp16",)
    assert by_key["flux"].auto[0] == "bf16"


@pytest.mark.parametrize(
    "preference, bf16, expected",
    [(("bf16", "fp16"), True, "bf16"), (("bf16", "fp16"), False, "fp16"), (("fp16",), True, "fp16")],
)
def test_auto_on_cuda_is_the_familys_first_choice_the_gpu_runs(monkeypatch, preference, bf16, expected):
    from rarecli.runtime import device

    monkeypatch.setattr(device, "cuda_bf16_supported", lambda: bf16)
    assert device.resolve_dtype("auto", "cuda:0", preference) == expected
    assert device.resolve_dtype("auto", "cpu", preference) == "fp32"
    assert device.resolve_dtype("fp32", "cuda:0", preference) == "fp32"  # an explicit choice stands


def test_a_manager_made_with_auto_follows_the_family_and_an_explicit_dtype_does_not(monkeypatch):
    from rarecli.runtime import device

    monkeypatch.setattr(device, "cuda_bf16_supported", lambda: True)
    monkeypatch.setattr(device, "resolve_device", lambda spec: "cuda:0")
    auto = device.DeviceManager("cuda", "auto")
    assert auto.dtype == "bf16" and auto.for_family(("fp16",)).dtype == "fp16"
    assert auto.for_family(("bf16", "fp16")) is auto
    explicit = device.DeviceManager("cuda", "bf16")
    assert explicit.for_family(("fp16",)) is explicit


def test_fp16_is_refused_on_the_cpu_without_the_tests_switch(monkeypatch):
    from rarecli.errors import InputError
    from rarecli.runtime.device import resolve_dtype

    monkeypatch.delenv("RARE_TEST_CPU_HALF", raising=False)
    with pytest.raises(InputError, match="not supported on the CPU"):
        resolve_dtype("fp16", "cpu")


def test_the_seam_casts_what_enters_a_component_to_its_own_dtype(half):
    import torch

    from rarecli.backbones.loading import load_pipeline
    from rarecli.runtime.device import DeviceManager

    loaded = load_pipeline("tiny-sd", DeviceManager("cpu", "fp16"))
    vae, unet = loaded.pipe.vae, loaded.pipe.unet
    assert vae.dtype == torch.float32 and unet.dtype == torch.float16
    assert loaded.precision == {"vae": "float32", "text_encoder": "float16", "unet": "float16"}
    latents = torch.randn(1, 4, 8, 8, dtype=torch.float16)
    image = vae.decode(latents).sample  # the crash on the GPU: fp16 latents into the fp32 VAE
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    # ... and the other way: fp32 inputs into the fp16 UNet; integer timesteps are left alone.
    out = unet(torch.randn(1, 4, 8, 8), torch.tensor([10]), encoder_hidden_states=torch.randn(1, 77, 32)).sample
    assert out.dtype == torch.float16


def _image_and_record(path: Path) -> tuple[np.ndarray, dict]:
    from PIL import Image

    from rarecli.io.images import read_metadata

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return pixels, read_metadata(path)["rare"]


def _check_half_image(path: Path, family: str) -> None:
    from rarecli.backbones.families import find_family

    pixels, meta = _image_and_record(path)
    # A NaN decode is written as a black (or constant) image: the image must vary.
    assert pixels.std() > 1.0, f"{path.name} is constant: a non-finite decode"
    assert meta["device"] == "cpu" and meta["dtype"] == "fp16"
    fp32 = {k for k, v in meta["component_dtypes"].items() if v == "float32"}
    assert fp32 == set(find_family(family).dtype.fp32_under_fp16)


def _paths(stdout: str) -> list[Path]:
    return [Path(line) for line in stdout.splitlines() if line.endswith(".png")]


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_plain_sampling_in_fp16_on_every_family(half, family, tmp_path, capsys):
    model = FAMILY_MODELS[family]
    args = ["seedselect", "a frog", "--method", "sd", "--model", model, "--inner-steps", "2", *HALF]
    assert run([*args, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    (png,) = _paths(capsys.readouterr().out)
    _check_half_image(png, family)


R2F_PLAN = {
    "schema": "rare.r2f.plan",
    "version": 1,
    "prompt": "a hairy frog",
    "concepts": [{"rare": "hairy frog", "frequent": "hairy dog", "level": 3}],
}


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_r2f_in_fp16_on_every_family(half, family, tmp_path, capsys):
    plan = tmp_path / "plan.jsonl"
    plan.write_text(json.dumps(R2F_PLAN) + "\n")
    args = ["r2f", "generate", str(plan), "--model", FAMILY_MODELS[family], "--steps", "2", *HALF]
    assert run([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    (png,) = _paths(capsys.readouterr().out)
    _check_half_image(png, family)


def test_r2f_plus_in_fp16_on_sd3(half, tmp_path, capsys):
    from tests.test_r2fplus_generate import PLAN

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN.to_json()))
    args = ["r2f", "generate", str(plan), "--model", "tiny-sd3", "--steps", "4", *HALF, "--json"]
    assert run([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    _check_half_image(Path(result["images"][0]), "sd3")
    assert result["parts"]


@pytest.mark.parametrize("method", ["seedselect", "nao-seedselect"])
def test_seedselect_in_fp16_with_loss_scaling(half, method, tmp_path, capsys):
    args = ["seedselect", "a handwritten digit seven", "--refs", str(REFS_DIR / "seven"), "--model", "tiny-sd",
            "--clip-model", "tiny-clip", "--method", method, "--iters", "2", "--inner-steps", "2", *HALF]  # fmt: skip
    assert run([*args, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    (png,) = _paths(capsys.readouterr().out)
    _check_half_image(png, "sd")
    record = json.loads(next(tmp_path.glob("*.run.json")).read_text())
    assert record["hyper"]["mixed_precision"] is True and record["hyper"]["dtype"] == "fp16"
    assert record["loss_curve"] and all(np.isfinite(row["total"]) for row in record["loss_curve"])


def test_interpolate_render_in_fp16(half, tmp_path, capsys):
    args = ["interpolate", "1", "2", "--method", "nao", "--steps", "3", "--model", "tiny-sd", "--render", "a frog"]
    assert run([*args, *HALF, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    pngs = _paths(capsys.readouterr().out)
    assert pngs
    for png in pngs:
        if "strip" not in png.name:
            _check_half_image(png, "sd")


def test_augment_in_fp16(half, tmp_path, capsys):
    root = tmp_path / "root"
    (root / "seven").mkdir(parents=True)
    for ref in sorted((REFS_DIR / "seven").iterdir())[:3]:
        (root / "seven" / ref.name).write_bytes(ref.read_bytes())
    args = ["augment", str(root), "--model", "tiny-sd", "--clip-model", "tiny-clip", "--prompt-template",
            "a handwritten digit {}", "--per-class", "1", "--iters", "1", "--steps", "2", *HALF]  # fmt: skip
    assert run([*args, "--out", str(tmp_path / "dataset")]) == 0, capsys.readouterr().err
    (png,) = sorted((tmp_path / "dataset" / "seven").glob("*.png"))
    _check_half_image(png, "sd")


def test_rarebench_in_fp16_on_sd3(half, tmp_path, capsys):
    data = write_prompts(tmp_path / "prompts")
    args = ["bench", "rarebench", "--method", "sd", "--model", "tiny-sd3", "--steps", "2", "--judge", "clipscore",
            "--judge-model", "tiny-clip", "--data", str(data), "-c", "S-property", "--limit", "1", *HALF]  # fmt: skip
    assert run([*args, "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    (png,) = sorted((tmp_path / "run" / "images").glob("*/*.png"))
    _check_half_image(png, "sd3")
    (item,) = sorted((tmp_path / "run" / "items").glob("*/*.json"))
    assert json.loads(item.read_text())["status"] == "ok"
