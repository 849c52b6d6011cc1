"""Training the toy world's parts from the digits: the judge, toy-clip, the VAE and the UNet.

Each stage is seeded (a rerun on the same machine, torch version and thread count gives the same
weights); `build` runs them in order and saves the result.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from typing import Any

import numpy as np

from rarecli.backbones.tiny import sd21_ddim_scheduler
from rarecli.backbones.tokenizers import CLIP_VOCAB_SIZE
from rarecli.toyworld import DIGIT_WORDS, prompt_for
from rarecli.toyworld.data import IMAGE_SIZE, degrade, shift
from rarecli.toyworld.hyper import CLIP_TEMPLATES, ClipHyper, JudgeHyper, UnetHyper, VaeHyper
from rarecli.toyworld.judge import JudgeConfig, build_module


def say(message: str) -> None:
    print(f"[toy-world {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:

    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def step_with_ema(opt: Any, loss: Any, model: Any, ema: Any, ema_decay: float, step: int) -> None:
    """One optimiser step on `loss` (gradients clipped to norm 1), then the EMA copy moved towards the
    model with a warm-up: decay min(ema_decay, (1 + step) / (10 + step)). Both denoisers train so."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(p, 1 - decay)


def train_judge(images, labels, split, hp: JudgeHyper) -> tuple[Any, dict[str, Any]]:
    import torch

    torch.manual_seed(hp.seed)
    g = generator(hp.seed)
    config = JudgeConfig()
    model = build_module(config)
    x = torch.from_numpy(images[split.judge_train])[:, None]
    y = torch.from_numpy(labels[split.judge_train])
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=1e-4)
    model.train()
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
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


def clip_config(hp: ClipHyper):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

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
    import torch
    from transformers import CLIPModel

    torch.manual_seed(hp.seed)
    g = generator(hp.seed)
    model = CLIPModel(clip_config(hp))
    x = torch.from_numpy(images[split.clip_train])[:, None]
    y = torch.from_numpy(labels[split.clip_train])
    mean, std = float(x.mean()), float(x.std())
    preprocess = {"image_size": IMAGE_SIZE, "image_mean": [round(mean, 4)] * 3, "image_std": [round(std, 4)] * 3}
    ids = {t: tokenize(tokenizer, [t.format(w) for w in DIGIT_WORDS]) for t in CLIP_TEMPLATES}
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)
    model.train()
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
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


def train_vae(images, split, hp: VaeHyper) -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(hp.seed)
    g = generator(hp.seed)
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
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
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


def ddim_scheduler():
    """SD2.1-base's scheduler settings (what SeedSelect uses), shared with the tiny backbones."""

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

    import torch

    torch.manual_seed(hp.seed)
    g = generator(hp.seed)
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
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr, hp.warmup))
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
        step_with_ema(opt, loss, unet, ema, hp.ema_decay, step)
        losses.append(loss.item())
        if step % 500 == 0 or step == hp.steps - 1:
            say(f"unet step {step}/{hp.steps} loss {np.mean(losses[-100:]):.4f}")
    visits = {DIGIT_WORDS[d]: round(share[DIGIT_WORDS[d]] * hp.steps * hp.batch) for d in range(10)}
    return ema.eval(), {
        "final_loss_mean_last_200": float(np.mean(losses[-200:])),
        "class_share_of_training_samples": share,
        "expected_samples_seen_per_class": visits,
    }


def text_encoder_from_clip(clip):
    """The toy-clip text tower as a standalone CLIPTextModel (the pipeline's frozen text encoder)."""
    from transformers import CLIPTextModel

    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval().requires_grad_(False)


def zero_unused_token_rows(text_model, used_ids) -> int:
    """Token rows no training prompt used stay random at init; zeroing them says "unknown word" and
    lets git store the 49,408-row table compactly. Returns how many rows were kept."""
    import torch

    emb = text_model.embeddings.token_embedding.weight
    keep = torch.zeros(emb.shape[0], dtype=torch.bool)
    keep[torch.as_tensor(sorted(used_ids))] = True
    with torch.no_grad():
        emb[~keep] = 0
    return int(keep.sum())
