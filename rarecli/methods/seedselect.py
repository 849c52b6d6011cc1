"""SeedSelect (Samuel et al., "Generating images of rare concepts using pre-trained diffusion models",
AAAI 2024, arXiv 2304.14530) and NAO-SeedSelect (Samuel et al., "Norm-guided latent space exploration
for text-to-image generation", NeurIPS 2023, arXiv 2306.08687).

Only the plain-sampling baseline (`method="sd"`) is here so far; the optimisation lands with issue 5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import InputError, NotImplementedYet


@dataclass
class SeedSelectConfig:
    prompt: str
    refs: Path | None
    method: str = "seedselect"
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    inner_steps: int = 20
    guidance: float | None = None
    num_images: int = 1
    seed: int = 0
    out: Path = Path("out/seedselect")


@dataclass
class SeedSelectResult:
    images: list[Path]
    seeds: list[Path]

    def to_json(self) -> dict[str, Any]:
        return {"images": [str(p) for p in self.images], "seeds": [str(p) for p in self.seeds]}


def run(config: SeedSelectConfig, manager) -> SeedSelectResult:
    if not config.prompt.strip():
        raise InputError("the prompt is empty")
    if config.method != "sd":
        raise NotImplementedYet(f"seedselect --method {config.method}", "issue 5")
    return _plain(config, manager)


def _plain(config: SeedSelectConfig, manager) -> SeedSelectResult:
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.io.images import a1111_parameters, save_numbered_png
    from rarecli.log import progress
    from rarecli.methods.sample import DEFAULT_GUIDANCE, sample, settings_text
    from rarecli.seeds.files import save_seed
    from rarecli.seeds.noise import noise_from_seed

    loaded = load_pipeline(
        config.model, manager, config.revision, families={"StableDiffusionPipeline"}, purpose="seedselect"
    )
    shape = latent_shape(loaded.ref)
    guidance = DEFAULT_GUIDANCE["StableDiffusionPipeline"] if config.guidance is None else config.guidance
    images, seeds = [], []
    with progress("sampling", total=config.num_images) as bar:
        for i in range(config.num_images):
            seed = config.seed + i
            noise = noise_from_seed(seed, shape)
            image = sample(loaded, config.prompt, noise, steps=config.inner_steps, guidance=guidance)
            meta = {
                "command": "seedselect",
                "method": "sd",
                "prompt": config.prompt,
                "seed": seed,
                **loaded.ref.to_meta(),
                "hyper": {**asdict(config), "guidance": guidance},
            }
            settings = settings_text(loaded.family, config.inner_steps, guidance, seed, config.model)
            path = save_numbered_png(
                config.out,
                image,
                seed=seed,
                method="sd",
                prompt=config.prompt,
                parameters=a1111_parameters(config.prompt, settings),
                rare=meta,
            )
            images.append(path)
            seeds.append(save_seed(path.with_suffix(".safetensors"), noise, meta))
            bar.advance()
    return SeedSelectResult(images, seeds)
