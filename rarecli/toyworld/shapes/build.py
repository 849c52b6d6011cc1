"""`make toy-shapes` (`python -m rarecli.toyworld shapes-build`): train the shapes world and save it in
the formats rare loads.

Stages, each seeded: the judge (two heads: colour and shape) and the toy CLIP on balanced data, the VAE
(32x32x3 -> 8x8x4) on balanced data too, then the SD3-shaped transformer on the long tail. Saved into
`rarecli/toyworld/shapes-weights/`: `toy-shapes/` (StableDiffusion3Pipeline, no T5), `toy-shapes-clip/`
(CLIPModel + rare_clip.json), `judge/`, and `manifest.json` (the joint table, seeds, hyper-parameters,
metrics, timings, SHA-256 of every file). Written to a temporary folder and swapped into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rarecli.backbones.tokenizers import clip_tokenizer
from rarecli.runtime.quiet import quiet_libraries
from rarecli.toyworld.build import finish
from rarecli.toyworld.shapes import data
from rarecli.toyworld.shapes.judge import train_judge
from rarecli.toyworld.shapes.train import (
    ShapesHyper,
    say,
    text_encoder_from_clip,
    train_clip,
    train_transformer,
    train_vae,
    transformer_model,
)
from rarecli.toyworld.train import tokenize, zero_unused_token_rows

BUILD_VERSION = 1
CLIP_PREPROCESS = "rare_clip.json"


def assemble(vae: Any, text_encoder: Any, transformer: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=transformer,
        # shift 1: at 32x32 there is no high-resolution redundancy for SD3's shift of 3 to correct.
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(data.TEXT_TOKENS),
        text_encoder_2=text_encoder,
        tokenizer_2=clip_tokenizer(data.TEXT_TOKENS),
        text_encoder_3=None,
        tokenizer_3=None,
    )


def vocabulary(tokenizer: Any) -> set[int]:
    words = [*data.COLOURS, *data.SHAPES, "polygon", "shape", "a", "and", ""]
    return {int(i) for i in tokenize(tokenizer, words).flatten()}


def build(out: Path, hp: ShapesHyper) -> dict[str, Any]:
    import torch

    torch.set_num_threads(hp.threads)
    started = time.perf_counter()
    tokenizer = clip_tokenizer(data.TEXT_TOKENS)
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {}

    def stage(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        say(f"{name} ...")
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        metrics[name] = result[-1]
        say(f"{name} done in {timings[name]} s: {result[-1]}")
        return result

    judge, _ = stage("judge", lambda: train_judge(hp.judge))
    clip, preprocess, _ = stage("clip", lambda: train_clip(hp.clip, tokenizer))
    metrics["clip"]["token_rows_kept"] = zero_unused_token_rows(clip.text_model, vocabulary(tokenizer))
    text_encoder = text_encoder_from_clip(clip)
    vae, _ = stage("vae", lambda: train_vae(hp.vae))
    vae.requires_grad_(False)
    transformer = transformer_model(hp.transformer, 2 * hp.clip.text_hidden, 2 * hp.clip.projection)
    pipe = assemble(vae, text_encoder, transformer)
    pipe.set_progress_bar_config(disable=True)
    ema, _ = stage("transformer", lambda: train_transformer(hp.transformer, pipe))
    pipe.transformer = ema
    seconds = {**timings, "total": round(time.perf_counter() - started, 1)}
    return write_world(Path(out), hp, pipe, clip, preprocess, judge, metrics, seconds)


def save_judge(module: Any, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "arch": "rare-toy-shapes-judge"})
    config = {"colours": list(data.COLOURS), "shapes": list(data.SHAPES), "image_size": data.SIZE,
              "trained_on": "balanced procedurally drawn single objects, 12-28 px (seed in ../manifest.json)"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_world(out: Path, hp: ShapesHyper, pipe: Any, clip: Any, preprocess: dict, judge: Any, metrics, seconds) -> dict:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".toy-shapes-", dir=out.parent))
    try:
        with quiet_libraries():
            # The text towers are mostly a 49,408-row token table (the real CLIP vocabulary): stored in fp16
            # they take half the space (loading casts them to the run's dtype).
            pipe.text_encoder.to(torch.float16)
            pipe.save_pretrained(tmp / "toy-shapes")
            clip.to(torch.float16).save_pretrained(tmp / "toy-shapes-clip")
        (tmp / "toy-shapes-clip" / CLIP_PREPROCESS).write_text(json.dumps(preprocess, indent=2) + "\n", encoding="utf-8")
        save_judge(judge, tmp / "judge")
        manifest = {
            "name": "toy-shapes",
            "build_version": BUILD_VERSION,
            "image_size": data.SIZE,
            "colours": list(data.COLOURS),
            "shapes": list(data.SHAPES),
            "polygons": list(data.POLYGONS),
            "joint_images_per_pair": {s: dict(zip(data.COLOURS, data.JOINT[s], strict=True)) for s in data.SHAPES},
            "rare_pairs": [list(p) for p in data.RARE],
            "absent_pairs": [list(p) for p in data.ABSENT],
        }
        manifest = finish(tmp, out, manifest, hp, metrics, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
