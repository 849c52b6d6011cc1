"""`make toy-world` (`python -m rarecli.toyworld build`): train the toy world from scikit-learn's digits and save it in the formats rare loads.

Stages, each seeded (a rerun on the same machine, torch version and thread count gives the same files):
1. judge (small CNN) on `judge_train`;
2. toy-clip (transformers CLIPModel) contrastively on the balanced `clip_train`;
3. VAE (diffusers AutoencoderKL, 8x8x3 -> 4x4x4) on the balanced `clip_train` too: like Stable
   Diffusion's autoencoder, it is trained on broad data and can draw every digit; the long tail is only
   in what the denoiser sees;
4. UNet (diffusers UNet2DConditionModel) on the long-tailed `diffusion_train`, conditioned on the token
   states of the frozen toy-clip text tower (as SD is on CLIP's), 10% empty prompts for guidance, EMA;
5. everything saved: `toy-digits/` (StableDiffusionPipeline, DDIM), `toy-clip/` (CLIPModel +
   `rare_clip.json`), `judge/`, `refs/<digit>/` PNGs, and `manifest.json` (split, seeds,
   hyper-parameters, metrics, SHA-256 of every file).

The whole build is written to a temporary folder and swapped into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.tokenizers import clip_tokenizer
from rarecli.io.hashing import file_sha256
from rarecli.runtime.quiet import quiet_libraries
from rarecli.toyworld import CLIP_PREPROCESS, DIGIT_WORDS, data, prompt_for
from rarecli.toyworld.data import to_pil
from rarecli.toyworld.hyper import CLIP_TEMPLATES, ToyHyper
from rarecli.toyworld.judge import CONFIG, WEIGHTS, JudgeConfig

if TYPE_CHECKING:
    import torch

from rarecli.toyworld.train import (
    ddim_scheduler,
    say,
    text_encoder_from_clip,
    tokenize,
    train_clip,
    train_judge,
    train_unet,
    train_vae,
    zero_unused_token_rows,
)

BUILD_VERSION = 1


def assemble_pipeline(vae, unet, text_encoder, tokenizer):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_refs(images, split, folder: Path) -> None:

    for digit, idx in sorted(split.refs.items()):
        sub = folder / DIGIT_WORDS[digit]
        sub.mkdir(parents=True, exist_ok=True)
        for i in idx:
            to_pil(images[i]).save(sub / f"digit{digit}_{i:04d}.png", optimize=True)


def file_hashes(root: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(root)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def build(out: Path, hp: ToyHyper) -> dict[str, Any]:
    """Train everything and write the toy world into `out` (replaced atomically at the end)."""
    import torch

    torch.set_num_threads(hp.threads)
    started = time.perf_counter()
    images, labels = data.load()
    split = data.make_split(labels, hp.split)
    tokenizer = clip_tokenizer()
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        say(f"{name} ...")
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        say(f"{name} done in {timings[name]} s: {result[-1]}")
        metrics[name] = result[-1]
        return result

    judge, _ = stage("judge", lambda: train_judge(images, labels, split, hp.judge))
    clip, preprocess, _ = stage("clip", lambda: train_clip(images, labels, split, hp.clip, tokenizer))
    used = {int(i) for t in CLIP_TEMPLATES for i in tokenize(tokenizer, [t.format(w) for w in DIGIT_WORDS]).flatten()}
    used |= {int(i) for i in tokenize(tokenizer, [""]).flatten()}
    metrics["clip"]["token_rows_kept"] = zero_unused_token_rows(clip.text_model, used)
    text_encoder = text_encoder_from_clip(clip)
    vae, _ = stage("vae", lambda: train_vae(images, split, hp.vae))
    vae.requires_grad_(False)
    unet, _ = stage("unet", lambda: train_unet(images, labels, split, hp.unet, vae, text_encoder, tokenizer))

    seconds = {**timings, "total": round(time.perf_counter() - started, 1)}
    parts = {"judge": judge, "clip": clip, "preprocess": preprocess, "text_encoder": text_encoder, "vae": vae}
    return write_world(Path(out), hp, split, images, tokenizer, {**parts, "unet": unet}, metrics, seconds)


def save_judge(module: torch.nn.Module, config: JudgeConfig, folder: Path, extra: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt", "arch": config.arch})
    (folder / CONFIG).write_text(json.dumps({**asdict(config), **extra}, indent=2) + "\n", encoding="utf-8")


def finish(tmp: Path, out: Path, about: dict[str, Any], hp: Any, metrics: Any, seconds: Any) -> dict[str, Any]:
    """Write a finished build's manifest into `tmp` (what it is, `about`, then its hyper-parameters,
    metrics, timings, environment and every file's hash) and put `tmp` in place at `out`; the manifest."""
    import torch

    manifest = {
        **about,
        "hyper_parameters": hp.to_json(),
        "metrics": metrics,
        "seconds": seconds,
        "environment": {"torch": torch.__version__, "threads": hp.threads, "python": sys.version.split()[0]},
        "files": file_hashes(tmp),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    swap_into_place(tmp, out)
    return manifest


def swap_into_place(tmp: Path, out: Path) -> None:
    """Put a finished build (`tmp`) where `out` is, the old one moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_world(out: Path, hp: ToyHyper, split, images, tokenizer, parts: dict[str, Any], metrics, seconds) -> dict:
    """Save every part, the reference folders and the manifest; swap the folder into place."""

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".toy-world-", dir=out.parent))
    try:
        with quiet_libraries():
            pipe = assemble_pipeline(parts["vae"], parts["unet"], parts["text_encoder"], tokenizer)
            pipe.save_pretrained(tmp / "toy-digits")
            parts["clip"].save_pretrained(tmp / "toy-clip")
        preprocess = json.dumps(parts["preprocess"], indent=2) + "\n"
        (tmp / "toy-clip" / CLIP_PREPROCESS).write_text(preprocess, encoding="utf-8")
        save_judge(
            parts["judge"], JudgeConfig(), tmp / "judge", {"trained_on": "judge_train split, see ../manifest.json"}
        )
        write_refs(images, split, tmp / "refs")
        manifest = {
            "name": "toy-digits",
            "build_version": BUILD_VERSION,
            "dataset": "sklearn.datasets.load_digits: 1,797 8x8 images, values 0-16 scaled to [0, 1]",
            "prompts": {str(d): prompt_for(d) for d in range(10)},
            "frequent": list(hp.split.frequent),
            "rare": list(hp.split.rare),
            "split": split.to_json(),
        }
        manifest = finish(tmp, out, manifest, hp, metrics, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
