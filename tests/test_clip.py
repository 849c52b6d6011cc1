"""The CLIP encoder used by the semantic loss and the offline judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rarecli.backbones.clip import OPEN_CLIP_TO_HF, load_clip, resolve_clip_name
from rarecli.errors import InputError


@pytest.fixture
def clip(cpu):
    return load_clip("tiny-clip", cpu)


def test_pil_and_tensor_paths_agree(clip):
    """References (PIL) and generated images (tensors) must be embedded the same way."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    from_pil = clip.encode_pil([Image.fromarray(arr)])
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float().div(255).unsqueeze(0)
    with torch.no_grad():
        from_tensor = clip.encode(tensor)
    assert torch.allclose(from_pil, from_tensor, atol=1e-5)
    assert torch.allclose(from_pil.norm(dim=-1), torch.ones(1))


def test_encoding_is_differentiable_and_frozen(clip):
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    clip.encode(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())


def test_different_images_embed_differently(clip):
    a = clip.encode_pil([Image.new("RGB", (32, 32), (255, 0, 0))])
    b = clip.encode_pil([Image.new("RGB", (32, 32), (0, 0, 255))])
    assert not torch.allclose(a, b)
    assert clip.encode_text(["a frog", "a cat"]).shape == (2, a.shape[-1])


def test_names_resolve_explicitly():
    assert resolve_clip_name("ViT-H-14", "laion2b_s32b_b79k") == OPEN_CLIP_TO_HF[("ViT-H-14", "laion2b_s32b_b79k")]
    assert resolve_clip_name("openai/clip-vit-base-patch32", None) == "openai/clip-vit-base-patch32"
    assert resolve_clip_name("tiny-clip", None) == "tiny-clip"
    with pytest.raises(InputError, match="unknown CLIP model"):
        resolve_clip_name("ViT-Q-99", "nothing")


def test_loaded_once_per_process(cpu, clip):
    assert load_clip("tiny-clip", cpu) is clip
