"""`make toy-world`: train the toy world from scikit-learn's digits and save it in the formats rare loads.

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

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rarecli.backbones.toy import CLIP_PREPROCESS, DIGIT_WORDS, WEIGHTS_DIR, prompt_for
from rarecli.backbones.toy.data import IMAGE_SIZE, SplitSpec
from rarecli.io.hashing import file_sha256

BUILD_VERSION = 1

# Templates CLIP is trained with: the generator's own prompt plus a few others, so the text tower
# learns the number words rather than one fixed string.
CLIP_TEMPLATES = (
    "a handwritten digit {}",
    "the digit {}",
    "a picture of the number {}",
    "a handwritten {}",
    "{}",
)


@dataclass
class JudgeHyper:
    seed: int = 1
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    shift: int = 1


@dataclass
class ClipHyper:
    seed: int = 2
    steps: int = 800
    batch: int = 100
    lr: float = 2e-3
    text_hidden: int = 32
    vision_hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 2
    projection: int = 32
    shift: int = 1


@dataclass
class VaeHyper:
    seed: int = 3
    steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-4
    channels: tuple[int, int] = (16, 32)
    latent_channels: int = 4


@dataclass
class UnetHyper:
    seed: int = 4
    steps: int = 1200
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    channels: tuple[int, int] = (32, 64)
    layers_per_block: int = 1
    head_dim: int = 8
    uncond_prob: float = 0.1
    # A short run: a 0.999 EMA would still average in the first, poor, thousand steps.
    ema_decay: float = 0.995
    shift: int = 1
    # Sampling weight of one rare-digit image relative to one frequent-digit image. At 1 every image
    # is drawn equally often (a trial with 1,500 steps: 170-850 draws per rare digit) and plain
    # sampling then drew 6, 7 and 9 right 60-95% of the time at guidance 7.5 (the tail barely
    # fails); at 0.25 each rare digit is drawn 35-175 times in all, against ~15,000 per frequent one.
    rare_weight: float = 0.25


@dataclass
class ToyHyper:
    split: SplitSpec = field(default_factory=SplitSpec)
    judge: JudgeHyper = field(default_factory=JudgeHyper)
    clip: ClipHyper = field(default_factory=ClipHyper)
    vae: VaeHyper = field(default_factory=VaeHyper)
    unet: UnetHyper = field(default_factory=UnetHyper)
    # One thread: on a shared 2-core machine OpenMP threads spin-wait on each other (measured 16x
    # slower with 2 threads under load), and a fixed count keeps float reductions reproducible.
    threads: int = 1

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["split"] = self.split.to_json()
        return out


def _log(message: str) -> None:
    print(f"[toy-world {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _gen(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def _cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    import math

    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------- judge


def train_judge(images, labels, split, hp: JudgeHyper) -> tuple[Any, dict[str, Any]]:
    import numpy as np
    import torch

    from rarecli.backbones.toy.data import degrade, shift
    from rarecli.backbones.toy.judge import JudgeConfig, build_module

    torch.manual_seed(hp.seed)
    g = _gen(hp.seed)
    config = JudgeConfig()
    model = build_module(config)
    x = torch.from_numpy(images[split.judge_train])[:, None]
    y = torch.from_numpy(labels[split.judge_train])
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=1e-4)
    model.train()
    for step in range(hp.steps):
        _set_lr(opt, _cosine_lr(step, hp.steps, hp.lr))
        idx = torch.randint(0, len(x), (hp.batch,), generator=g)
        xb = degrade(shift(x[idx], hp.shift, g), g)
        loss = torch.nn.functional.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        test = torch.from_numpy(images[split.judge_test])[:, None]
        pred = model(test).argmax(-1).numpy()
    acc = float(np.mean(pred == labels[split.judge_test]))
    return model, {"judge_test_accuracy": acc, "judge_test_size": len(split.judge_test), "final_loss": loss.item()}


# ---------------------------------------------------------------- CLIP


def clip_config(hp: ClipHyper):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    from rarecli.backbones.tokenizers import CLIP_VOCAB_SIZE

    text = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hp.text_hidden,
        intermediate_size=2 * hp.text_hidden,
        num_hidden_layers=hp.layers,
        num_attention_heads=hp.heads,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=hp.projection,
        hidden_act="quick_gelu",
    )
    vision = CLIPVisionConfig(
        hidden_size=hp.vision_hidden,
        intermediate_size=2 * hp.vision_hidden,
        num_hidden_layers=hp.layers,
        num_attention_heads=hp.heads,
        image_size=IMAGE_SIZE,
        patch_size=hp.patch,
        projection_dim=hp.projection,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=hp.projection)


def tokenize(tokenizer, prompts: list[str]):
    """Exactly as StableDiffusionPipeline tokenizes: padded to 77 with the end token, truncated."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def train_clip(images, labels, split, hp: ClipHyper, tokenizer) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Contrastive training on the balanced set. With ten concepts a batch holds many images of the same
    digit, so the text->image direction uses every image of the digit as a positive (soft targets)."""
    import numpy as np
    import torch
    from transformers import CLIPModel

    from rarecli.backbones.toy.data import degrade, shift

    torch.manual_seed(hp.seed)
    g = _gen(hp.seed)
    model = CLIPModel(clip_config(hp))
    x = torch.from_numpy(images[split.clip_train])[:, None]
    y = torch.from_numpy(labels[split.clip_train])
    mean, std = float(x.mean()), float(x.std())
    preprocess = {"image_size": IMAGE_SIZE, "image_mean": [round(mean, 4)] * 3, "image_std": [round(std, 4)] * 3}
    ids = {t: tokenize(tokenizer, [t.format(w) for w in DIGIT_WORDS]) for t in CLIP_TEMPLATES}
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)
    model.train()
    for step in range(hp.steps):
        _set_lr(opt, _cosine_lr(step, hp.steps, hp.lr))
        idx = torch.randint(0, len(x), (hp.batch,), generator=g)
        xb = degrade(shift(x[idx], hp.shift, g), g)
        pixels = ((xb - mean) / std).expand(-1, 3, -1, -1)
        template = CLIP_TEMPLATES[int(torch.randint(0, len(CLIP_TEMPLATES), (1,), generator=g))]
        out = model(input_ids=ids[template], pixel_values=pixels)
        logits = out.logits_per_image  # [B, 10]
        yb = y[idx]
        onehot = torch.nn.functional.one_hot(yb, 10).float()
        present = onehot.sum(0) > 0
        soft = (onehot / onehot.sum(0).clamp(min=1)).T[present]  # each text: its digit's images
        loss = 0.5 * torch.nn.functional.cross_entropy(logits, yb) + 0.5 * torch.nn.functional.cross_entropy(
            logits.T[present], soft
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    # Zero-shot accuracy on images no model trained on, with the generator's own prompt.
    with torch.inference_mode():
        test = torch.from_numpy(images[split.judge_test])[:, None]
        pixels = ((test - mean) / std).expand(-1, 3, -1, -1)
        logits = model(input_ids=ids[CLIP_TEMPLATES[0]], pixel_values=pixels).logits_per_image
        acc = float(np.mean(logits.argmax(-1).numpy() == labels[split.judge_test]))
    return model, preprocess, {"zero_shot_accuracy_judge_test": acc, "final_loss": loss.item()}


# ---------------------------------------------------------------- VAE


def train_vae(images, split, hp: VaeHyper) -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL

    from rarecli.backbones.toy.data import shift

    torch.manual_seed(hp.seed)
    g = _gen(hp.seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(hp.channels),
        up_block_types=("UpDecoderBlock2D",) * len(hp.channels),
        block_out_channels=hp.channels,
        layers_per_block=1,
        latent_channels=hp.latent_channels,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )
    x = torch.from_numpy(images[split.clip_train])[:, None]
    opt = torch.optim.AdamW(vae.parameters(), lr=hp.lr, weight_decay=0.0)
    vae.train()
    for step in range(hp.steps):
        _set_lr(opt, _cosine_lr(step, hp.steps, hp.lr))
        idx = torch.randint(0, len(x), (hp.batch,), generator=g)
        xb = (shift(x[idx], 1, g) * 2 - 1).expand(-1, 3, -1, -1)
        posterior = vae.encode(xb).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        rec = torch.nn.functional.mse_loss(recon, xb)
        kl = posterior.kl().mean() / z[0].numel()
        loss = rec + hp.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval()
    with torch.inference_mode():
        allx = (x * 2 - 1).expand(-1, 3, -1, -1)
        post = vae.encode(allx).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        scale = float(1.0 / z.std())
        recon = vae.decode(post.mean).sample
        test_mse = float(torch.nn.functional.mse_loss((recon + 1) / 2, (allx + 1) / 2))
    vae.register_to_config(scaling_factor=round(scale, 5))
    return vae, {"recon_mse_01": test_mse, "kl_per_dim": kl.item(), "scaling_factor": round(scale, 5)}


# ---------------------------------------------------------------- UNet


def ddim_scheduler():
    """SD2.1-base's scheduler settings (what SeedSelect uses), shared with the tiny backbones."""
    from rarecli.backbones.tiny import sd21_ddim_scheduler

    return sd21_ddim_scheduler()


def unet_model(hp: UnetHyper, cross_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=hp.channels,
        layers_per_block=hp.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=hp.head_dim,
        norm_num_groups=16,
    )


def text_states(text_encoder, tokenizer, prompts: list[str]):
    import torch

    with torch.inference_mode():
        return text_encoder(tokenize(tokenizer, prompts))[0].clone()


def train_unet(images, labels, split, hp: UnetHyper, vae, text_encoder, tokenizer) -> tuple[Any, dict[str, Any]]:
    import copy

    import numpy as np
    import torch

    torch.manual_seed(hp.seed)
    g = _gen(hp.seed)
    # Frozen parts: latents of every training image at every shift, and the 11 prompt encodings.
    train_idx = np.asarray(split.diffusion_train)
    x = torch.from_numpy(images[train_idx])[:, None]
    y = torch.from_numpy(labels[train_idx])
    shifts = [(dy, dx) for dy in range(-hp.shift, hp.shift + 1) for dx in range(-hp.shift, hp.shift + 1)]
    pad = hp.shift
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    with torch.inference_mode():
        means, stds = [], []
        for dy, dx in shifts:
            xs = padded[:, :, pad + dy : pad + dy + IMAGE_SIZE, pad + dx : pad + dx + IMAGE_SIZE]
            post = vae.encode((xs * 2 - 1).expand(-1, 3, -1, -1)).latent_dist
            means.append(post.mean * vae.config.scaling_factor)
            stds.append(post.std * vae.config.scaling_factor)
    means, stds = torch.stack(means, 1), torch.stack(stds, 1)  # [N, S, 4, 8, 8]
    cond = text_states(text_encoder, tokenizer, [prompt_for(d) for d in range(10)] + [""])
    rare = torch.tensor([int(d) in split.spec.rare_counts for d in y.tolist()])
    weights = torch.where(rare, torch.tensor(hp.rare_weight), torch.tensor(1.0))
    share = {DIGIT_WORDS[d]: float(weights[y == d].sum() / weights.sum()) for d in range(10)}

    sched = ddim_scheduler()
    alphas = sched.alphas_cumprod
    unet = unet_model(hp, cond.shape[-1])
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=hp.lr, weight_decay=0.01)
    unet.train()
    losses = []
    for step in range(hp.steps):
        _set_lr(opt, _cosine_lr(step, hp.steps, hp.lr, hp.warmup))
        idx = torch.multinomial(weights, hp.batch, replacement=True, generator=g)
        s = torch.randint(0, len(shifts), (hp.batch,), generator=g)
        z0 = means[idx, s] + stds[idx, s] * torch.randn(means[idx, s].shape, generator=g)
        t = torch.randint(0, len(alphas), (hp.batch,), generator=g)
        eps = torch.randn(z0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        drop = torch.rand(hp.batch, generator=g) < hp.uncond_prob
        states = cond[torch.where(drop, torch.tensor(10), y[idx])]
        pred = unet(zt, t, encoder_hidden_states=states).sample
        loss = torch.nn.functional.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(hp.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 500 == 0 or step == hp.steps - 1:
            _log(f"unet step {step}/{hp.steps} loss {np.mean(losses[-100:]):.4f}")
    visits = {DIGIT_WORDS[d]: round(share[DIGIT_WORDS[d]] * hp.steps * hp.batch) for d in range(10)}
    return ema.eval(), {
        "final_loss_mean_last_200": float(np.mean(losses[-200:])),
        "class_share_of_training_samples": share,
        "expected_samples_seen_per_class": visits,
    }


# ---------------------------------------------------------------- assembly


def text_encoder_from_clip(clip):
    """The toy-clip text tower as a standalone CLIPTextModel (the pipeline's frozen text encoder)."""
    from transformers import CLIPTextModel

    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval().requires_grad_(False)


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
    from rarecli.backbones.toy.data import to_pil

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


def _zero_unused_token_rows(text_model, used_ids) -> int:
    """Token rows no training prompt used stay random at init; zeroing them says "unknown word" and
    lets git store the 49,408-row table compactly. Returns how many rows were kept."""
    import torch

    emb = text_model.embeddings.token_embedding.weight
    keep = torch.zeros(emb.shape[0], dtype=torch.bool)
    keep[torch.as_tensor(sorted(used_ids))] = True
    with torch.no_grad():
        emb[~keep] = 0
    return int(keep.sum())


def build(out: Path, hp: ToyHyper) -> dict[str, Any]:
    """Train everything and write the toy world into `out` (replaced atomically at the end)."""
    import torch

    from rarecli.backbones.tokenizers import clip_tokenizer
    from rarecli.backbones.toy import data

    torch.set_num_threads(hp.threads)
    started = time.perf_counter()
    images, labels = data.load()
    split = data.make_split(labels, hp.split)
    tokenizer = clip_tokenizer()
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        _log(f"{name} ...")
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        _log(f"{name} done in {timings[name]} s: {result[-1]}")
        metrics[name] = result[-1]
        return result

    judge, _ = stage("judge", lambda: train_judge(images, labels, split, hp.judge))
    clip, preprocess, _ = stage("clip", lambda: train_clip(images, labels, split, hp.clip, tokenizer))
    used = {int(i) for t in CLIP_TEMPLATES for i in tokenize(tokenizer, [t.format(w) for w in DIGIT_WORDS]).flatten()}
    used |= {int(i) for i in tokenize(tokenizer, [""]).flatten()}
    metrics["clip"]["token_rows_kept"] = _zero_unused_token_rows(clip.text_model, used)
    text_encoder = text_encoder_from_clip(clip)
    vae, _ = stage("vae", lambda: train_vae(images, split, hp.vae))
    vae.requires_grad_(False)
    unet, _ = stage("unet", lambda: train_unet(images, labels, split, hp.unet, vae, text_encoder, tokenizer))

    seconds = {**timings, "total": round(time.perf_counter() - started, 1)}
    parts = {"judge": judge, "clip": clip, "preprocess": preprocess, "text_encoder": text_encoder, "vae": vae}
    return write_world(Path(out), hp, split, images, tokenizer, {**parts, "unet": unet}, metrics, seconds)


def write_world(out: Path, hp: ToyHyper, split, images, tokenizer, parts: dict[str, Any], metrics, seconds) -> dict:
    """Save every part, the reference folders and the manifest; swap the folder into place."""
    import torch

    from rarecli.backbones.toy.judge import JudgeConfig, save_judge
    from rarecli.runtime.quiet import quiet_libraries

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
            "hyper_parameters": hp.to_json(),
            "metrics": metrics,
            "seconds": seconds,
            "environment": {"torch": torch.__version__, "threads": hp.threads, "python": sys.version.split()[0]},
            "files": file_hashes(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the toy-digits world (make toy-world).")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--unet-steps", type=int, default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (quick runs)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    hp = ToyHyper(threads=args.threads)
    for part in (hp.judge, hp.clip, hp.vae, hp.unet):
        part.steps = max(10, int(part.steps * args.scale))
    if args.unet_steps is not None:
        hp.unet.steps = args.unet_steps
    manifest = build(args.out, hp)
    _log(f"built in {manifest['seconds']['total']} s")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
