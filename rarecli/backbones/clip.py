"""CLIP image/text encoders for SeedSelect's semantic loss and the offline benchmark judge.

Models load through transformers' `CLIPModel` (a Hub id, a local folder, or an embedded `tiny-clip`),
so no torchvision is needed. open_clip names (`--clip-model ViT-H-14 --clip-pretrained
laion2b_s32b_b79k`) map to the transformers release of the same weights; an open_clip name with no
such twin needs open_clip itself (`pip install "rarecli[openclip]"`, with a torchvision that matches
your torch).

Image encoding is differentiable: `encode(images)` takes a float tensor in [0, 1] (B, 3, H, W), resizes
the short side to the model's input size (bicubic, antialiased), centre-crops and normalises. PIL
reference images go through the very same tensor path (`encode_pil`), so references and generated
images are treated alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import snapshot_download

from rarecli.backbones.loading import resolve
from rarecli.backbones.registry import EMBEDDED
from rarecli.backbones.tokenizers import clip_tokenizer
from rarecli.errors import InputError, RareError
from rarecli.runtime.cache import MODEL_CACHE
from rarecli.runtime.device import DeviceManager
from rarecli.runtime.quiet import quiet_libraries

if TYPE_CHECKING:
    import torch
    from PIL import Image

# OpenAI CLIP's normalisation; LAION's open_clip models use the same constants.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# open_clip (architecture, pretrained tag) -> the same weights in transformers' format on the Hub.
OPEN_CLIP_TO_HF = {
    ("ViT-H-14", "laion2b_s32b_b79k"): "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    ("ViT-g-14", "laion2b_s34b_b88k"): "laion/CLIP-ViT-g-14-laion2B-s34B-b88K",
    ("ViT-bigG-14", "laion2b_s39b_b160k"): "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    ("ViT-L-14", "openai"): "openai/clip-vit-large-patch14",
    ("ViT-B-32", "openai"): "openai/clip-vit-base-patch32",
    ("ViT-B-16", "openai"): "openai/clip-vit-base-patch16",
}


@dataclass
class ClipEncoder:
    """A CLIP model with its preprocessing; embeddings are L2-normalised."""

    name: str
    model: Any
    tokenizer: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    manager: DeviceManager
    twin_of: str | None = None  # random weights in the architecture of this `repo@revision`

    def _to_input(self, images: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"expected images shaped (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        scale = self.image_size / min(h, w)
        size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
        x = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        x = x[..., top : top + self.image_size, left : left + self.image_size]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of (B, 3, H, W) images in [0, 1]; differentiable."""
        import torch.nn.functional as F

        model = self.model
        x = self._to_input(images.to(self.manager.device, next(model.parameters()).dtype))
        features = model.visual_projection(model.vision_model(pixel_values=x).pooler_output)
        return F.normalize(features.float(), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        tokens = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
            max_length=self.model.config.text_config.max_position_embeddings,
        )
        tokens = {k: v.to(self.manager.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            out = self.model.text_model(**tokens).pooler_output
            return F.normalize(self.model.text_projection(out).float(), dim=-1)

    def encode_pil(self, images: list[Image.Image]) -> torch.Tensor:
        """Embed PIL images through exactly the tensor path generated images take (one at a time,
        since references come in any size)."""
        import torch

        with torch.no_grad():
            return torch.cat([self.encode(to_tensor(image)) for image in images])


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as a (1, 3, H, W) float tensor in [0, 1]."""
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def resolve_clip_name(name: str, pretrained: str | None) -> str:
    """Map an open_clip (architecture, tag) pair to its transformers twin; other names pass through."""
    if (name, pretrained) in OPEN_CLIP_TO_HF:
        return OPEN_CLIP_TO_HF[(name, pretrained)]
    if "/" in name or name.startswith((".", "~")) or Path(name).exists():
        return name

    if name in EMBEDDED:
        return name
    known = ", ".join(f"{a}/{t}" for a, t in OPEN_CLIP_TO_HF)
    raise InputError(
        f"unknown CLIP model {name!r} (pretrained {pretrained!r})",
        hint=f"use a Hugging Face CLIP id, a local folder, tiny-clip, or one of: {known}",
    )


def _preprocessing(folder: Path, config: Any) -> tuple[int, tuple, tuple]:
    size = int(config.vision_config.image_size)
    mean, std = CLIP_MEAN, CLIP_STD
    for name in ("rare_clip.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            mean = tuple(data.get("image_mean", mean))
            std = tuple(data.get("image_std", std))
            size = int(data.get("image_size", size))
            break
    return size, mean, std


def load_clip(name: str, manager: DeviceManager, pretrained: str | None = None) -> ClipEncoder:
    """Load (once per process) a CLIP encoder in fp32 on the manager's device, frozen and in eval mode.

    fp32 because it is small next to the diffusion model and its gradients steer the seed.
    """

    target = resolve_clip_name(name, pretrained)
    ref = resolve(target, kind="clip")
    key = ("clip", ref.source, ref.location, manager.device)

    def load() -> ClipEncoder:
        import torch
        from transformers import CLIPModel

        with quiet_libraries():
            folder = _hub_folder(ref.location) if ref.source == "hub" else Path(ref.location)
            model = CLIPModel.from_pretrained(folder, torch_dtype=torch.float32)
            tokenizer = _tokenizer(folder) or clip_tokenizer()
        model.requires_grad_(False).eval().to(manager.device)
        size, mean, std = _preprocessing(folder, model.config)
        return ClipEncoder(target, model, tokenizer, size, mean, std, manager, twin_of=ref.twin_of)

    return MODEL_CACHE.get(key, load)


def _tokenizer(folder: Path) -> Any:
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        return None
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder)


def _hub_folder(repo_id: str) -> Path:

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors"]))
    except Exception as exc:
        raise RareError(
            f"cannot load CLIP model {repo_id}: {str(exc).splitlines()[0]}",
            hint="download it once while online, or pass --clip-model tiny-clip offline",
        ) from exc
