"""Recipes for the embedded tiny detector and segmenter that R2F+ masks objects with: GroundingDINO
and SAM, the transformers classes the authors use, with tiny configs and seeded random weights.

Like the tiny diffusion backbones they prove the code path offline on a CPU: their boxes and masks are
arbitrary. Each recipe returns a bundle of model and processor that `registry.ensure_built` saves into
one folder, which then loads through `AutoModelFor...from_pretrained` / `AutoProcessor.from_pretrained`
exactly as `IDEA-Research/grounding-dino-tiny` or `facebook/sam-vit-base` do.
"""

from __future__ import annotations

import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SEED = 1234
IMAGE_SIZE = 64  # the tiny pipelines draw 64x64


@dataclass
class Bundle:
    model: Any
    processor: Any

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)


def _word_piece_tokenizer() -> Any:
    """A BERT WordPiece tokenizer over single characters (any lower-case phrase tokenizes)."""
    from transformers import BertTokenizerFast

    pieces = list(string.ascii_lowercase + string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *pieces, *(f"##{p}" for p in pieces)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.txt"
        path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(path), do_lower_case=True, model_max_length=64)


def build_tiny_grounding_dino() -> Bundle:
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = _word_piece_tokenizer()
    backbone = SwinConfig(
        image_size=IMAGE_SIZE, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        window_size=4, out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    text = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, use_timm_backbone=False, d_model=32,  # GroupNorm(32, d_model)
        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_queries=10, num_feature_levels=3, encoder_n_points=2, decoder_n_points=2,
        max_text_len=64,
    )  # fmt: skip
    torch.manual_seed(_SEED)
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": IMAGE_SIZE, "longest_edge": IMAGE_SIZE})
    return Bundle(model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_tiny_sam() -> Bundle:
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(
        hidden_size=16, output_channels=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
        image_size=IMAGE_SIZE, patch_size=8, global_attn_indexes=[1], window_size=4, num_pos_feats=8,
    )  # fmt: skip
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=IMAGE_SIZE, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
    )
    torch.manual_seed(_SEED)
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    image_processor = SamImageProcessor(
        size={"longest_edge": IMAGE_SIZE},
        pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        mask_size={"longest_edge": IMAGE_SIZE // 4},
        mask_pad_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4},
    )
    return Bundle(model, SamProcessor(image_processor=image_processor))
