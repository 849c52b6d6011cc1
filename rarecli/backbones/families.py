"""Model families: the one place for what a family is (defaults, sampler, latent shape, text encoders,
R2F level table, precision policy).

A family is a diffusers pipeline class. Every command looks its facts up here, so a new family is added
by one entry. Which methods run on a family is each method's own fact (`MethodSpec.families`); what a
particular checkpoint of a family needs is in `rarecli.backbones.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rarecli.errors import InputError


@dataclass(frozen=True)
class DtypePolicy:
    """Which precision a family's components run in, and why: one fact per family, applied by the
    device manager when a pipeline is placed (`DeviceManager.place`).

    Whatever crosses between components (text embeddings into the denoiser, latents into the VAE) is
    cast to the receiving component's dtype at its entry (`rarecli.runtime.precision`)."""

    # What `--dtype auto` means on CUDA: the first of these the GPU runs (bf16 needs compute capability
    # 8.0, Ampere and newer). The CPU and MPS always run fp32.
    auto: tuple[str, ...]
    # Components kept in fp32 when the rest runs in fp16 (bf16 has fp32's exponent range: none needed).
    fp32_under_fp16: tuple[str, ...]
    why: str  # the reason for both, with where each fact comes from


# A pipeline class rare has no entry for: bf16 where the GPU has it, else fp16, nothing kept in fp32.
DEFAULT_DTYPE = DtypePolicy(("bf16", "fp16"), (), "no family entry: the usual half precision, nothing in fp32")


@dataclass(frozen=True)
class Family:
    key: str  # short name used in metadata and tables: sd, sdxl, sd3
    pipeline: str  # the diffusers pipeline class
    label: str
    denoiser: str  # subfolder holding the denoiser config (its sample_size and in_channels give the seed shape)
    guidance: float  # the CFG the papers sample this family with
    steps: int  # the pipeline's own default number of steps (plain sampling's default)
    # Its text encoders (SD: CLIP; SDXL: two CLIPs; SD3: two CLIPs and T5; FLUX: CLIP and T5), which decides
    # how its pipeline's `encode_prompt` is called (`rarecli.backbones.encoding`).
    text_encoders: int = 1
    # Whether it samples with classifier-free guidance (FLUX.1 is guidance-distilled: no unconditional
    # prediction, so methods that blend guidance cannot run on it).
    cfg: bool = True
    # R2F (Park et al., ICLR 2025): visual-detail level -> the step at which the frequent stand-in stops
    # guiding, at 50 steps. SD3 and SDXL are the paper's tables. SD 1.x/2.x is not covered by the paper;
    # it uses the SDXL table, since both are UNet, epsilon-prediction latent models sampled on a similar
    # discrete schedule, and SDXL's shorter guidance keeps more steps for the rare prompt.
    r2f_level_stops: tuple[int, ...] | None = None
    # The pipeline's `callback_on_step_end` tensor that holds the pooled text embeddings, if any.
    pooled_embeds: str | None = None
    # The scheduler R2F samples with when it is not the pipeline's own: (class name, config overrides).
    r2f_scheduler: tuple[str, dict[str, Any]] | None = None
    # Longest text-encoder sequence the paper used (SD3: T5 at 77 tokens).
    max_sequence_length: int | None = None
    # Components that hold a T5 encoder the pipeline can run without (`--no-t5`): SD3's third encoder.
    optional_t5: tuple[str, ...] = ()
    # FLUX: the pipeline takes its latents packed in 2x2 patches, (batch, tokens, 4 * channels); the seed
    # stays (channels, h, w), and its channels are the VAE's latent channels.
    packed_latents: bool = False
    # Native image side when the denoiser's config gives none (FLUX's transformer has no sample_size).
    native_size: int | None = None
    dtype: DtypePolicy = DEFAULT_DTYPE


# The SD 1.x/2.x and SDXL VAEs (the same kl-f8 architecture) decode to NaN or black images in fp16:
# their activations exceed fp16's range (the SDXL VAE's measured in madebyollin/sdxl-vae-fp16-fix's
# model card; diffusers' AutoencoderKL documents `force_upcast` for this, and its SDXL pipeline upcasts the
# VAE itself). bf16 has fp32's range, so the same card decodes correctly in bf16; SeedSelect also
# back-propagates through the VAE, where fp16 would need loss scaling that bf16 does not.
_KL_F8_VAE = (
    "auto is bf16 where the GPU has it: every component then runs in half precision with fp32's range "
    "(no fp32 VAE, no loss scaling for SeedSelect's gradients); else fp16, with the VAE in fp32, since the "
    "SD/SDXL VAE overflows in fp16 (madebyollin/sdxl-vae-fp16-fix model card; diffusers' AutoencoderKL "
    "force_upcast and StableDiffusionXLPipeline.upcast_vae)"
)
SD_DTYPE = DtypePolicy(("bf16", "fp16"), ("vae",), _KL_F8_VAE)
SDXL_DTYPE = DtypePolicy(("bf16", "fp16"), ("vae",), _KL_F8_VAE)
# SD3's VAE (16 latent channels, a new training) runs in fp16: the model card loads the whole pipeline
# with torch_dtype=torch.float16 and diffusers' StableDiffusion3Pipeline decodes in the transformer's
# dtype with no upcast path, despite `force_upcast: true` in the VAE's config.
SD3_DTYPE = DtypePolicy(
    ("fp16",),
    (),
    "auto is fp16, as the stabilityai/stable-diffusion-3-medium-diffusers model card runs it; every "
    "component, the VAE included, runs in fp16 (diffusers' StableDiffusion3Pipeline has no VAE upcast)",
)
# FLUX.1 is released and run in bf16 (both model cards load it with torch_dtype=torch.bfloat16). diffusers
# clips fp16 activations in its FLUX transformer and T5 path to make fp16 run at all (huggingface/diffusers
# #9097, "Flux fp16 inference fix"), and its FLUX docs ("Running FP16 inference") say the text encoders'
# clipped activations change the image, so under fp16 they run in fp32.
FLUX_DTYPE = DtypePolicy(
    ("bf16", "fp16"),
    ("text_encoder", "text_encoder_2"),
    "auto is bf16, the dtype FLUX.1 is released and run in (black-forest-labs model cards); under fp16 "
    "(GPUs without bf16) the CLIP and T5 text encoders run in fp32, as diffusers' FLUX docs advise, since "
    "their activations overflow fp16 (diffusers #9097)",
)

R2F_REFERENCE_STEPS = 50  # the level tables are stated at 50 steps and scaled to others

FAMILIES: dict[str, Family] = {
    f.pipeline: f
    for f in (
        Family(
            "sd",
            "StableDiffusionPipeline",
            "Stable Diffusion 1.x/2.x",
            denoiser="unet",
            guidance=7.5,
            steps=50,
            r2f_level_stops=(0, 3, 5, 10, 20, 30),
            dtype=SD_DTYPE,
        ),
        Family(
            "sdxl",
            "StableDiffusionXLPipeline",
            "Stable Diffusion XL",
            denoiser="unet",
            guidance=5.0,
            steps=50,
            r2f_level_stops=(0, 3, 5, 10, 20, 30),
            pooled_embeds="add_text_embeds",
            text_encoders=2,
            r2f_scheduler=("DPMSolverMultistepScheduler", {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"}),
            dtype=SDXL_DTYPE,
        ),
        Family(
            "sd3",
            "StableDiffusion3Pipeline",
            "Stable Diffusion 3",
            denoiser="transformer",
            guidance=7.0,
            steps=28,
            r2f_level_stops=(0, 5, 10, 20, 30, 40),
            pooled_embeds="pooled_prompt_embeds",
            text_encoders=3,
            max_sequence_length=77,
            optional_t5=("text_encoder_3", "tokenizer_3"),
            dtype=SD3_DTYPE,
        ),
        Family(
            "flux",
            "FluxPipeline",
            "FLUX.1",
            denoiser="transformer",
            # The pipeline's default; FLUX.1-schnell (no guidance embedding) ignores it, and there is no CFG.
            guidance=3.5,
            steps=28,
            max_sequence_length=512,
            cfg=False,
            text_encoders=2,
            packed_latents=True,
            native_size=1024,
            dtype=FLUX_DTYPE,
        ),
    )
}
_BY_KEY = {f.key: f for f in FAMILIES.values()}


def find_family(name: str) -> Family | None:
    """The family of a pipeline class name (or of a family key: sd, sdxl, sd3); None if unknown."""
    return FAMILIES.get(name) or _BY_KEY.get(name)


def pipelines_of(names: Iterable[str]) -> frozenset[str]:
    """The pipeline classes of families named by class or key (sd, sdxl, sd3, flux); unknown names stay."""
    return frozenset(f.pipeline if (f := find_family(n)) is not None else n for n in names)


def family_of(name: str) -> Family:
    """As `find_family`, but an unknown name is an InputError that lists the families rare knows."""
    family = find_family(name)
    if family is None:
        raise InputError(
            f"{name} is not a model family rare knows",
            hint="rare supports " + ", ".join(f"{f.label} ({f.pipeline})" for f in FAMILIES.values()),
        )
    return family


# Scheduler class -> the name A1111-style tools show (the `Sampler:` field of a PNG's parameters).
_SAMPLER_NAMES = {
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PNDM",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "FlowMatchEulerDiscreteScheduler": "FlowMatchEuler",
    "LMSDiscreteScheduler": "LMS",
}


def sampler_label(scheduler: Any) -> str:
    """What a scheduler instance is called in the `parameters` text (DPM-Solver++ says its variant)."""
    name = type(scheduler).__name__
    if name == "DPMSolverMultistepScheduler":
        config = scheduler.config
        karras = " Karras" if config.get("use_karras_sigmas") else ""
        variant = "DPM++ 2M" if config.get("algorithm_type") == "dpmsolver++" else "DPM 2M"
        return variant + karras
    return _SAMPLER_NAMES.get(name, name)
