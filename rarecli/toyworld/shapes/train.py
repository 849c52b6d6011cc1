"""Training the shapes world: the judge, its CLIP, the VAE and an SD3-shaped transformer.

Why SD3-shaped (a `StableDiffusion3Pipeline`, MMDiT transformer, flow matching) rather than SD's UNet:
R2F+ is implemented on SD3's joint attention, and R2F and AAPB run on SD3 too, so one model serves every
method, as SD3 does in the R2F and AAPB papers. The two CLIP text encoders are the same trained toy text
tower (SD3 concatenates its two CLIPs' states); there is no T5 (SD3 runs without it, feeding zeros, and
the transformer is trained with the 77 zeros that R2F, AAPB and R2F+ feed in T5's place when a pipeline has
no T5; plain sampling through the pipeline's own call would feed 256, so the evaluation draws plain
samples with R2F's sampler and an empty plan).

Each stage is seeded; `build` runs them in order.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rarecli.backbones.tokenizers import CLIP_VOCAB_SIZE
from rarecli.toyworld.shapes import data
from rarecli.toyworld.shapes.judge import JudgeHyper, to_tensor
from rarecli.toyworld.train import cosine_lr, set_lr, step_with_ema, tokenize


def say(message: str) -> None:
    print(f"[toy-shapes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class ClipHyper:
    seed: int = 12
    steps: int = 900
    batch: int = 96
    lr: float = 2e-3
    text_hidden: int = 32
    vision_hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 4
    projection: int = 32


@dataclass
class VaeHyper:
    seed: int = 13
    steps: int = 900
    batch: int = 32
    lr: float = 2e-3
    kl_weight: float = 1e-5
    channels: tuple[int, int, int] = (16, 32, 32)
    latent_channels: int = 4


@dataclass
class TransformerHyper:
    seed: int = 14
    steps: int = 5000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    layers: int = 4
    heads: int = 3
    head_dim: int = 16
    patch: int = 2
    uncond_prob: float = 0.1
    ema_decay: float = 0.998
    two_object_share: float = 0.25  # of each batch: images with an object in each half
    renders: int = 2  # renders of each training item (position, size, tint): the data is these, fixed


@dataclass
class ShapesHyper:
    judge: JudgeHyper = field(default_factory=JudgeHyper)
    clip: ClipHyper = field(default_factory=ClipHyper)
    vae: VaeHyper = field(default_factory=VaeHyper)
    transformer: TransformerHyper = field(default_factory=TransformerHyper)
    threads: int = 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _gen(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


# -- CLIP ------------------------------------------------------------------------------------------


def clip_config(hp: ClipHyper):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=hp.text_hidden, intermediate_size=2 * hp.text_hidden,
        num_hidden_layers=hp.layers, num_attention_heads=hp.heads, max_position_embeddings=77, bos_token_id=49406,
        eos_token_id=49407, pad_token_id=49407, projection_dim=hp.projection, hidden_act="quick_gelu",
    )  # fmt: skip
    vision = CLIPVisionConfig(
        hidden_size=hp.vision_hidden, intermediate_size=2 * hp.vision_hidden, num_hidden_layers=hp.layers,
        num_attention_heads=hp.heads, image_size=data.SIZE, patch_size=hp.patch, projection_dim=hp.projection,
        hidden_act="quick_gelu",
    )  # fmt: skip
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=hp.projection)


def satisfies(caption: str, colour: str, shape: str) -> bool:
    """Whether a single-object caption describes an image of `colour` and `shape`."""
    words = caption.split()
    colours = [w for w in words if w in data.COLOURS]
    nouns = [w for w in words if w in (*data.SHAPES, "polygon", "shape")]
    if colours and colours[0] != colour:
        return False
    noun = nouns[-1] if nouns else "shape"
    return noun == shape or noun in data.umbrella(shape)


def train_clip(hp: ClipHyper, tokenizer: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Contrastive training on balanced single objects, each with one of its hierarchical captions; a
    caption's positives are every image of the batch it describes ('a red shape': all red ones)."""
    import torch
    from transformers import CLIPModel

    torch.manual_seed(hp.seed)
    rng = np.random.default_rng(hp.seed)
    model = CLIPModel(clip_config(hp))
    mean, std = 0.2, 0.3
    preprocess = {"image_size": data.SIZE, "image_mean": [mean] * 3, "image_std": [std] * 3}
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)
    model.train()
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
        pairs = [data.balanced_pair(rng) for _ in range(hp.batch)]
        images = [data.single(c, s, rng) for c, s in pairs]
        captions = [data.caption(c, s, rng) for c, s in pairs]
        out = model(input_ids=tokenize(tokenizer, captions), pixel_values=(to_tensor(images) - mean) / std)
        logits = out.logits_per_image  # [images, captions]
        match = torch.tensor([[satisfies(t, c, s) for t in captions] for c, s in pairs], dtype=torch.float32)
        image_targets = match / match.sum(1, keepdim=True)
        text_targets = (match / match.sum(0, keepdim=True)).T
        loss = 0.5 * torch.nn.functional.cross_entropy(logits, image_targets) + 0.5 * torch.nn.functional.cross_entropy(
            logits.T, text_targets
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    test_rng = np.random.default_rng(hp.seed + 1000)
    pairs = [data.balanced_pair(test_rng) for _ in range(400)]
    names = [data.specific(c, s) for s in data.SHAPES for c in data.COLOURS]
    with torch.inference_mode():
        pixels = (to_tensor([data.single(c, s, test_rng) for c, s in pairs]) - mean) / std
        logits = model(input_ids=tokenize(tokenizer, names), pixel_values=pixels).logits_per_image
    truth = np.array([names.index(data.specific(c, s)) for c, s in pairs])
    acc = float((logits.argmax(-1).numpy() == truth).mean())
    return model, preprocess, {"zero_shot_pair_accuracy": acc, "final_loss": loss.item()}


def text_encoder_from_clip(clip: Any):
    """The toy text tower with its projection, as SD3's CLIPTextModelWithProjection."""
    from transformers import CLIPTextModelWithProjection

    text = CLIPTextModelWithProjection(clip.config.text_config)
    text.text_model.load_state_dict(clip.text_model.state_dict())
    text.text_projection.load_state_dict(clip.text_projection.state_dict())
    return text.eval().requires_grad_(False)


# -- VAE -------------------------------------------------------------------------------------------


def _balanced_image(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.25:
        return data.double(data.balanced_pair(rng), data.balanced_pair(rng), rng)
    return data.single(*data.balanced_pair(rng), rng)


def train_vae(hp: VaeHyper) -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(hp.seed)
    rng = np.random.default_rng(hp.seed)
    g = _gen(hp.seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(hp.channels),
        up_block_types=("UpDecoderBlock2D",) * len(hp.channels), block_out_channels=hp.channels, layers_per_block=1,
        latent_channels=hp.latent_channels, norm_num_groups=8, sample_size=data.SIZE, use_quant_conv=False,
        use_post_quant_conv=False,
    )  # fmt: skip
    opt = torch.optim.AdamW(vae.parameters(), lr=hp.lr, weight_decay=0.0)
    vae.train()
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr))
        xb = to_tensor([_balanced_image(rng) for _ in range(hp.batch)]) * 2 - 1
        posterior = vae.encode(xb).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(recon, xb) + hp.kl_weight * posterior.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval()
    with torch.inference_mode():
        xb = to_tensor([_balanced_image(rng) for _ in range(256)]) * 2 - 1
        z = vae.encode(xb).latent_dist.mean
        shift = float(z.mean())
        scale = float(1.0 / (z - shift).std())
        mse = float(torch.nn.functional.mse_loss((vae.decode(z).sample + 1) / 2, (xb + 1) / 2))
    vae.register_to_config(scaling_factor=round(scale, 5), shift_factor=round(shift, 5))
    return vae, {"recon_mse_01": mse, "scaling_factor": round(scale, 5), "shift_factor": round(shift, 5)}


# -- transformer -----------------------------------------------------------------------------------


def transformer_model(hp: TransformerHyper, joint_dim: int, pooled_dim: int):
    from diffusers import SD3Transformer2DModel

    latent = data.SIZE // 4
    return SD3Transformer2DModel(
        sample_size=latent, patch_size=hp.patch, in_channels=4, out_channels=4, num_layers=hp.layers,
        attention_head_dim=hp.head_dim, num_attention_heads=hp.heads, joint_attention_dim=joint_dim,
        caption_projection_dim=hp.heads * hp.head_dim, pooled_projection_dim=pooled_dim, pos_embed_max_size=16,
    )  # fmt: skip


def training_items(rng: np.random.Generator, n_double: int) -> list[tuple[str, tuple]]:
    """The generator's data: every single object of the long tail, and two-object images whose halves
    are drawn from the same long tail (rare pairs stay rare); as (kind, pairs)."""
    singles = data.long_tail_pairs()
    items: list[tuple[str, tuple]] = [("single", (pair,)) for pair in singles]
    for _ in range(n_double):
        left, right = singles[int(rng.integers(len(singles)))], singles[int(rng.integers(len(singles)))]
        items.append(("double", (left, right)))
    return items


def train_transformer(hp: TransformerHyper, pipe: Any) -> tuple[Any, dict[str, Any]]:
    """Flow matching (SD3's objective: x_t = (1 - s) x0 + s e, predict e - x0, s logit-normal) on the
    long tail; conditioned on the pipeline's own prompt encoding, 10% empty prompts for guidance, EMA."""
    import torch

    torch.manual_seed(hp.seed)
    rng = np.random.default_rng(hp.seed)
    g = _gen(hp.seed)
    n_single = len(data.long_tail_pairs())
    n_double = int(n_single * hp.two_object_share / (1 - hp.two_object_share))
    items = training_items(rng, n_double)
    vae = pipe.vae
    images, captions_of = [], []
    for kind, pairs in items:
        for _ in range(hp.renders):
            images.append(data.single(*pairs[0], rng) if kind == "single" else data.double(pairs[0], pairs[1], rng))
            captions_of.append((kind, pairs))
    with torch.inference_mode():
        latents = []
        for start in range(0, len(images), 256):
            xb = to_tensor(images[start : start + 256]) * 2 - 1
            post = vae.encode(xb).latent_dist
            latents.append(((post.mean - vae.config.shift_factor) * vae.config.scaling_factor, post.std * vae.config.scaling_factor))
        means = torch.cat([m for m, _ in latents])
        stds = torch.cat([s for _, s in latents])
    # Every caption the data can have, encoded once by the pipeline itself, at both T5 lengths.
    texts = {""}
    for kind, pairs in items:
        if kind == "double":
            texts.add(data.pair_caption(*pairs))
        else:
            c, s = pairs[0]
            texts |= {data.specific(c, s), f"a {s}", *(f"a {c} {u}" for u in data.umbrella(s))}
    texts = sorted(texts)
    index = {t: i for i, t in enumerate(texts)}
    encoded = {}
    with torch.inference_mode():
        for length in (77,):
            embeds, pooled = [], []
            for start in range(0, len(texts), 128):
                e, _, p, _ = pipe.encode_prompt(texts[start : start + 128], None, None, do_classifier_free_guidance=False,
                                                 max_sequence_length=length)  # fmt: skip
                embeds.append(e)
                pooled.append(p)
            encoded[length] = (torch.cat(embeds), torch.cat(pooled))
    model = pipe.transformer  # built with the dimensions the encoders give (see build)
    model.requires_grad_(True)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)
    model.train()
    losses: list[float] = []
    empty = index[""]
    for step in range(hp.steps):
        set_lr(opt, cosine_lr(step, hp.steps, hp.lr, hp.warmup))
        idx = torch.randint(0, len(images), (hp.batch,), generator=g)
        x0 = means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=g)
        sigma = torch.sigmoid(torch.randn(hp.batch, generator=g))
        noise = torch.randn(x0.shape, generator=g)
        s = sigma.view(-1, 1, 1, 1)
        xt = (1 - s) * x0 + s * noise
        rows = []
        for i in idx.tolist():
            kind, pairs = captions_of[i]
            if rng.random() < hp.uncond_prob:
                rows.append(empty)
            elif kind == "double":
                rows.append(index[data.pair_caption(*pairs)])
            else:
                rows.append(index[data.caption(*pairs[0], rng)])
        embeds, pooled = encoded[77]  # R2F, AAPB and R2F+ without T5 all feed 77 zeros in its place
        pred = model(
            hidden_states=xt, timestep=sigma * 1000, encoder_hidden_states=embeds[rows], pooled_projections=pooled[rows]
        ).sample
        loss = torch.nn.functional.mse_loss(pred, noise - x0)
        step_with_ema(opt, loss, model, ema, hp.ema_decay, step)
        losses.append(loss.item())
        if step % 500 == 0 or step == hp.steps - 1:
            say(f"transformer step {step}/{hp.steps} loss {np.mean(losses[-100:]):.4f}")
    draws = hp.steps * hp.batch / len(images)  # times each training render is drawn, on average
    seen = {f"{c} {s}": round(data.count(c, s) * hp.renders * draws) for s in data.SHAPES for c in data.COLOURS}
    return ema.eval(), {
        "final_loss_mean_last_200": float(np.mean(losses[-200:])),
        "training_images": len(images),
        "captions": len(texts),
        "expected_single_object_draws_per_pair": seen,
    }
