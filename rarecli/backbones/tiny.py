"""Recipes for the embedded tiny backbones: real diffusers/transformers classes, tiny configs,
seeded random weights.

They make every command runnable offline on a CPU in seconds. Their images are noise-like by
design: they prove the code paths, not image quality. Each recipe returns an unsaved pipeline;
`registry.ensure_built` saves it in the diffusers layout and everything loads it back through
`from_pretrained`, exactly like a real model.
"""

from __future__ import annotations

from typing import Any

from rarecli.backbones.tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer, t5_tokenizer

# Bump when a recipe changes: the cache folder name carries it, so old builds are never reused.
RECIPE_VERSION = 1
_SEED = 1234


def _clip_text_config(projection: bool, hidden: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=hidden if projection else 512,
        hidden_act="quick_gelu",
    )


def _vae(**overrides):
    """Four blocks, so images are 8x the latent size as in real SD."""
    from diffusers import AutoencoderKL

    config = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    return AutoencoderKL(**{**config, **overrides})


def sd21_ddim_scheduler() -> Any:
    """SD2.1-base's DDIM settings (what SeedSelect uses)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_tiny_sd() -> Any:
    """StableDiffusionPipeline shaped like SD2.1-base at 1/8 scale: 64x64 images, 4x8x8 seeds."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(_SEED)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = _vae()
    text_encoder = CLIPTextModel(_clip_text_config(projection=False))
    scheduler = sd21_ddim_scheduler()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl() -> Any:
    """StableDiffusionXLPipeline with two CLIP text encoders and the text-time micro-conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(_SEED)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + 32,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    vae = _vae()
    text_encoder = CLIPTextModel(_clip_text_config(projection=False))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(projection=True))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_sd3() -> Any:
    """StableDiffusion3Pipeline: MMDiT transformer, two CLIP encoders and a T5 encoder, flow matching."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(_SEED)
    t5_tok = t5_tokenizer()
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        pos_embed_max_size=16,
    )
    # SD3's VAE has 16 latent channels and no quant convs.
    vae = _vae(
        latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=CLIPTextModelWithProjection(_clip_text_config(projection=True)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(projection=True)),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5,
        tokenizer_3=t5_tok,
    )


def build_tiny_flux() -> Any:
    """FluxPipeline as FLUX.1-schnell is: double- and single-stream blocks, CLIP (pooled) + T5 (sequence),
    no guidance embedding, flow matching without dynamic shifting, 16-channel latents packed 2x2."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(_SEED)
    t5_tok = t5_tokenizer()
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )  # fmt: skip
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=False,
        axes_dims_rope=(2, 2, 4),  # sums to attention_head_dim
    )  # fmt: skip
    vae = _vae(
        latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=CLIPTextModel(_clip_text_config(projection=False)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
    )


def build_tiny_clip() -> Any:
    """A transformers CLIPModel (image + text towers) for the semantic loss and the offline judge."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    torch.manual_seed(_SEED)
    text = _clip_text_config(projection=True).to_dict()
    text["projection_dim"] = 32
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
        hidden_act="quick_gelu",
    )
    config = CLIPConfig(text_config=text, vision_config=vision.to_dict(), projection_dim=32)
    return CLIPModel(config)
