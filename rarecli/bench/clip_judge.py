"""The `clipscore` judge: offline, no API. CLIPScore (Hessel et al., EMNLP 2021) is
2.5 * max(cos(image, text), 0) with a CLIP model (default open_clip ViT-H-14 laion2b_s32b_b79k, loaded
through transformers); on the 0-100 scale an image scores 100 * min(CLIPScore, 1). It measures something
related to, but not the same as, the GPT-4o rubric: compare clipscore runs with clipscore runs only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rarecli.backbones.clip import OPEN_CLIP_TO_HF, load_clip
from rarecli.bench.verdict import Verdict
from rarecli.io.images import read_rgb

DEFAULT_CLIP = "ViT-H-14/laion2b_s32b_b79k"

CLIPSCORE_WEIGHT = 2.5  # Hessel et al.'s w: rescales CLIP cosines (rarely above 0.4) towards [0, 1]


def split_clip_spec(spec: str) -> tuple[str, str | None]:
    """`ARCH/TAG` for an open_clip pair we map (ViT-H-14/laion2b_s32b_b79k); anything else is a
    Hugging Face CLIP id, a local folder or tiny-clip."""

    if spec.count("/") == 1:
        arch, tag = spec.split("/")
        if (arch, tag) in OPEN_CLIP_TO_HF:
            return arch, tag
    return spec, None


class ClipScoreJudge:
    def __init__(self, model: str, manager: Any) -> None:

        name, pretrained = split_clip_spec(model)
        self.model = model
        self.encoder = load_clip(name, manager, pretrained)

    def __call__(self, image_path: Path, prompt: str) -> Verdict:

        image = read_rgb(image_path)
        cosine = float((self.encoder.encode_pil([image]) * self.encoder.encode_text([prompt])).sum())
        clipscore = CLIPSCORE_WEIGHT * max(cosine, 0.0)
        return Verdict(100.0 * min(clipscore, 1.0), {"cosine": cosine, "clipscore": clipscore})


class ClipScoreKind:
    """The `clipscore` judge's description (see the module docstring)."""

    name = "clipscore"
    summary = "offline CLIPScore on the 0-100 scale (compare clipscore runs only)"
    protocols = ("rare",)
    online = False
    uses_device = True  # the diffusion model is freed before it loads

    def default_model(self, definition: Any, protocol: str) -> str:
        return DEFAULT_CLIP

    def protocol_for(self, definition: Any, protocol: str) -> None:
        return None

    def identity(self, model: str, definition: Any, protocol: Any) -> dict[str, Any]:
        return {"name": self.name, "model": model, "per_image": f"100 * min({CLIPSCORE_WEIGHT} * max(cos, 0), 1)"}

    def build(self, model: str, definition: Any, manager: Any, base_url: str | None, protocol: Any) -> ClipScoreJudge:
        return ClipScoreJudge(model, manager)

    def endpoint(self, base_url: str | None) -> str | None:
        return None

    def scale(self, identity: dict[str, Any]) -> str:
        return self.name
