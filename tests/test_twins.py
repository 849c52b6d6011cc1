"""Architecture twins: the committed configs give the real models' parameter counts, a twin is built and
loaded through the same `from_pretrained(folder)` path, and everything it makes says its weights are random.

The real-size twins themselves are built and run in tests/test_realsize.py (opt-in: `make test-realsize`);
here a scaled-down config in the same format goes through the same builder.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rarecli.backbones.twins import TWINS, TwinSpec, count_parameters, save_twin, twin_of
from rarecli.toyworld import REFS_DIR
from tests.conftest import rare_cmd

# The published sizes (issue 15 quotes them; the exact figures are those of the released checkpoints).
PUBLISHED = {
    ("sd21-base", "unet"): 865_910_724,
    ("sd21-base", "text_encoder"): 340_387_840,
    ("sd21-base", "vae"): 83_653_863,
    ("vit-h-14", "model"): 986_109_441,
    ("sd3-medium", "transformer"): 2_028_328_000,
    ("sd3-medium-t5", "text_encoder_3"): 4_762_310_656,
    ("sdxl-base", "unet"): 2_567_463_684,
}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_each_committed_config_builds_the_parameter_count_it_records(name):
    twin = TWINS[name]
    counted = count_parameters(twin)  # modules built on the meta device: no memory, no initialisation
    assert counted == twin.expected_parameters()
    for (twin_name, component), published in PUBLISHED.items():
        if twin_name == name:
            assert counted[component] == published, component


def test_every_twin_names_the_model_and_revision_it_copies():
    for twin in TWINS.values():
        repo, revision = twin.copies.split("@")
        assert repo.count("/") == 1 and len(revision) == 40 and int(revision, 16) >= 0
    assert TWINS["sd3-medium"].components()["text_encoder_3"] is None  # T5 off by default
    assert TWINS["sd3-medium-t5"].components()["text_encoder_3"] is not None


def _mini_sd21(tmp_path):
    """The SD2.1-base twin's config, scaled down (channels /10, one layer per block), in a folder of its own."""
    data = json.loads(TWINS["sd21-base"].directory.joinpath("sd21-base.json").read_text())
    data["name"] = "mini-sd21"
    unet = data["components"]["unet"]["config"]
    unet.update(block_out_channels=[32, 64, 64, 64], layers_per_block=1, attention_head_dim=[2, 4, 4, 4], sample_size=8)
    unet["cross_attention_dim"] = 64
    vae = data["components"]["vae"]["config"]
    vae.update(block_out_channels=[16, 32, 32, 32], layers_per_block=1, norm_num_groups=8, sample_size=64)
    text = data["components"]["text_encoder"]["config"]
    text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    directory = tmp_path / "configs"
    directory.mkdir()
    (directory / "mini-sd21.json").write_text(json.dumps(data))
    twin = TwinSpec("mini-sd21", "mini-sd21", directory=directory)
    counts = count_parameters(twin)
    for component, n in counts.items():
        data["components"][component]["parameters"] = n
    (directory / "mini-sd21.json").write_text(json.dumps(data))
    return TwinSpec("mini-sd21", "mini-sd21", directory=directory)


def test_a_twin_is_saved_in_the_diffusers_layout_and_loads_through_from_pretrained(tmp_path, cpu):
    from rarecli.backbones.loading import load_pipeline

    twin = _mini_sd21(tmp_path)
    folder = tmp_path / "mini"
    lines = []
    save_twin(twin, folder, progress=lines.append)
    assert [line.split(":")[0] for line in lines] == ["unet", "vae", "text_encoder"]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]
    assert twin_of(folder)["copies"]["repo"] == "stabilityai/stable-diffusion-2-1-base"
    loaded = load_pipeline(str(folder), cpu)
    pipe = loaded.pipe
    for name, expected in twin.expected_parameters().items():
        assert sum(p.numel() for p in getattr(pipe, name).parameters()) == expected
    assert pipe.tokenizer.pad_token == "!"  # SD2.1's tokenizer pads with "!", as the twin's spec says
    assert loaded.ref.to_meta()["model_weights"].startswith("random: architecture twin of stabilityai/")


def test_images_made_with_a_twin_say_their_weights_are_random(tmp_path):
    from PIL import Image

    twin = _mini_sd21(tmp_path)
    folder = tmp_path / "mini"
    save_twin(twin, folder)
    out = tmp_path / "out"
    done = subprocess.run(
        [*rare_cmd(), "seedselect", "a tiger cat", "--method", "sd", "--model", str(folder), "--inner-steps", "2",
         "--height", "32", "--width", "48", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    image = Image.open(done.stdout.split()[0])
    assert image.size == (48, 32)
    meta = json.loads(image.info["rare"])
    assert "architecture twin of stabilityai/stable-diffusion-2-1-base@" in meta["model_weights"]


def test_rare_models_lists_the_twins_as_random_weight_twins():
    done = subprocess.run([*rare_cmd(), "models", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {e["name"]: e for e in json.loads(done.stdout)["embedded"]}
    for name, twin in TWINS.items():
        entry = listed[f"twin:{name}"]
        assert entry["random_weight_twin_of"] == twin.copies
        assert entry["parameters"] == twin.parameters and entry["disk_bytes"] == 2 * twin.parameters
    assert listed["tiny-sd"]["random_weight_twin_of"] is None


def test_a_twin_the_method_cannot_use_is_refused_before_it_is_built(tmp_path):
    env_cache = tmp_path / "cache"
    done = subprocess.run(
        [*rare_cmd(), "seedselect", "a tiger cat", "--refs", str(REFS_DIR / "seven"), "--model", "twin:sd3-medium", "--out",
         str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "RARE_CACHE_DIR": str(env_cache)},
    )  # fmt: skip
    assert done.returncode != 0
    assert "StableDiffusion3Pipeline" in done.stderr and "Building" not in done.stderr
    assert not (env_cache / "backbones").exists() or not any((env_cache / "backbones").iterdir())
