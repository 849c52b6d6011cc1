"""MMDiT attention for R2F+: the image-to-text attention maps of SD3's joint blocks, where each object's
tokens sit in the text sequence, and the box loss and guidance step computed from them.

The probe is an attention-processor subclass installed with `set_attn_processor` for the duration of
a call: it computes the probabilities beside the normal attention (which it leaves unchanged), with the
blocks' qk-norms applied (exact for SD3.5 too; SD3-medium has none) and the softmax over the text keys
only, as the authors do. The loss is the layout loss of Chen et al. (arXiv 2304.03373) as their code
uses it; see `sampler` for where it runs.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rarecli.methods.r2f.sampler import Conditioning
from rarecli.methods.r2f_plus.geometry import Box, box_mask
from rarecli.methods.r2f_plus.schema import SLOT

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.loading import LoadedPipeline

CLIP_TOKENS = 77  # SD3's joint text sequence: its CLIP tokenizer's length (77 for SD3), then T5's


def image_to_text(attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
    """(batch, heads, image tokens, text tokens): each image token's attention over the text tokens."""
    batch = hidden_states.shape[0]
    q = attn.to_q(hidden_states)
    k = attn.add_k_proj(encoder_hidden_states)
    head_dim = q.shape[-1] // attn.heads
    q = q.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    k = k.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_added_k", None) is not None:
        k = attn.norm_added_k(k)
    return (q @ k.transpose(-1, -2) * head_dim**-0.5).softmax(dim=-1)


@functools.cache
def probe_class() -> type:
    """SD3's joint attention processor, which also appends the image-to-text probabilities to
    `attention_store` when one is passed in `joint_attention_kwargs` (and is the plain one otherwise)."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    class AttentionProbe(JointAttnProcessor2_0):
        def __call__(
            self,
            attn: Any,
            hidden_states: Any,
            encoder_hidden_states: Any = None,
            attention_mask: Any = None,
            attention_store: list | None = None,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            if attention_store is not None and encoder_hidden_states is not None:
                attention_store.append(image_to_text(attn, hidden_states, encoder_hidden_states))
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)

    return AttentionProbe


@contextlib.contextmanager
def probing(transformer: Any) -> Iterator[None]:
    """The probe in every attention block for the duration; the previous processors are put back."""
    saved = transformer.attn_processors
    transformer.set_attn_processor(probe_class()())
    try:
        yield
    finally:
        transformer.set_attn_processor(saved)


# -- token spans -----------------------------------------------------------------------------------


def _changed(old: list[int], new: list[int]) -> range:
    """The positions of `new` that differ from `old` once their common start and end are set aside."""
    limit = min(len(old), len(new))
    head = 0
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return range(head, len(new) - tail)


def _ids(tokenizer: Any, text: str, limit: int) -> list[int]:
    return list(tokenizer(text, truncation=True, max_length=limit)["input_ids"])


def slot_tokens(
    loaded: LoadedPipeline, template: str, received: Mapping[str, str], max_sequence_length: int
) -> dict[str, list[int]]:
    """Where each slot's phrase sits in SD3's joint text sequence (CLIP positions, then T5's after the
    CLIP ones, as many as the CLIP tokenizer's length: 77 for SD3): slots are filled left to right and each
    phrase's tokens are what filling it changed."""
    pipe = loaded.pipe
    t5 = getattr(pipe, "tokenizer_3", None) if getattr(pipe, "text_encoder_3", None) is not None else None
    out: dict[str, list[int]] = {}
    text = template
    for match in SLOT.finditer(template):
        key = match.group(0)
        phrase = received[key]
        filled = re.sub(re.escape(key) + r"(?!\d)", lambda _, p=phrase: p, text, count=1)
        n_clip = int(getattr(pipe.tokenizer, "model_max_length", CLIP_TOKENS) or CLIP_TOKENS)
        clip = _changed(_ids(pipe.tokenizer, text, n_clip), _ids(pipe.tokenizer, filled, n_clip))
        indices = list(clip)
        if t5 is not None:
            t5_span = _changed(_ids(t5, text, max_sequence_length), _ids(t5, filled, max_sequence_length))
            indices += [n_clip + j for j in t5_span]
        out[key] = indices
        text = filled
    return out


# -- box guidance ----------------------------------------------------------------------------------


def object_maps(store: Sequence[torch.Tensor], spans: Mapping[str, list[int]]) -> dict[str, torch.Tensor]:
    """Per object, its tokens' attention averaged over tokens, layers and heads: (image tokens,)."""
    import torch

    maps = torch.stack([p[-1] for p in store])  # the conditional batch entry: (layers, heads, HW, T)
    return {key: maps[..., idx].mean(-1).mean(0).mean(0) for key, idx in spans.items() if idx}


def token_grid(loaded: LoadedPipeline, latent: torch.Tensor) -> tuple[int, int]:
    patch = int(loaded.pipe.transformer.config.patch_size)
    return latent.shape[-2] // patch, latent.shape[-1] // patch


def box_loss(
    maps: Mapping[str, torch.Tensor], boxes: Mapping[str, Box], grid: tuple[int, int], scale: float
) -> torch.Tensor | None:
    import torch

    losses = []
    for key, a in maps.items():
        inside = box_mask(boxes[key], *grid).flatten().to(a)
        outside = (a * (1 - inside)).sum()
        losses.append(scale * (outside / (1 + a.sum())) ** 2)
    return torch.stack(losses).mean() if losses else None


def attention_share(maps: Mapping[str, torch.Tensor], boxes: Mapping[str, Box], grid: tuple[int, int]) -> dict:
    """Per object, the share of its attention that falls inside its box."""
    return {k: float((a * box_mask(boxes[k], *grid).flatten().to(a)).sum() / a.sum()) for k, a in maps.items()}


def run_probe(loaded: LoadedPipeline, latent: torch.Tensor, timestep: Any, cond: Conditioning) -> list:
    """The transformer on `latent` with the conditional embeddings; the image-to-text maps of every block."""
    store: list = []
    pos = cond.prompt_embeds[-1:]
    pooled = cond.pooled[-1:] if cond.pooled is not None else None
    loaded.pipe.transformer(
        hidden_states=latent,
        timestep=timestep.reshape(-1)[:1].expand(latent.shape[0]),
        encoder_hidden_states=pos,
        pooled_projections=pooled,
        joint_attention_kwargs={"attention_store": store},
        return_dict=False,
    )
    return store


def guide(
    loaded: LoadedPipeline,
    latent: torch.Tensor,
    timestep: Any,
    sigma: float,
    cond: Conditioning,
    spans: Mapping[str, list[int]],
    boxes: Mapping[str, Box],
    iterations: int,
    scale: float,
    on_update: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """`latent` after `iterations` box-guidance updates of one step (gradient steps of size sigma^2);
    `on_update` gets each update's loss. Needs the probe installed (`probing`)."""
    import torch

    x = latent.detach().clone()
    grid = token_grid(loaded, x)
    for _ in range(iterations):
        with torch.enable_grad():
            x.requires_grad_(True)
            maps = object_maps(run_probe(loaded, x, timestep, cond), spans)
            loss = box_loss(maps, boxes, grid, scale)
            if loss is None:  # no object has a token left (all cut off by the encoders' length)
                break
            (grad,) = torch.autograd.grad(loss, x)
        if on_update is not None:
            on_update(float(loss))
        x = (x - grad * sigma**2).detach()
    return x
