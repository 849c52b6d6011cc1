"""A prepared SeedSelect / NAO-SeedSelect run (`Session`): what a run computes once, before optimising.

The checks, the pipeline and CLIP, the text embeddings, the references' targets, and where each image's
seed starts: SeedSelect from Gaussian noise of seed, seed+1, ...; NAO-SeedSelect from the NAO centroid
of the references' DDIM-inverted seeds and points on the NAO paths to it (`rarecli.seeds.starts`).
A session optimises batches of its images and renders seeds in memory; `method` writes nothing either,
`run` is what writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rarecli.backbones.clip import ClipEncoder, load_clip
from rarecli.backbones.loading import LoadedPipeline, latent_shape, load_pipeline
from rarecli.errors import InputError
from rarecli.log import info, warn
from rarecli.methods import registry
from rarecli.methods.ddim import DdimSchedule, TextConditioning, encode_text, render, to_pil
from rarecli.methods.inversion import InversionSettings, invert_references
from rarecli.methods.seedselect.config import DEFAULTS, SeedSelectConfig, clean_prompt, resolve_clip
from rarecli.methods.seedselect.memory import choose
from rarecli.methods.seedselect.objective import Objective, OptimResult, optimise, semantic_weights
from rarecli.methods.seedselect.options import NaoSeedSelectOptions, SeedSelectOptions
from rarecli.methods.seedselect.references import (
    Reference,
    ReferenceTargets,
    bootstrap_subsets,
    compute_targets,
    load_references,
)
from rarecli.runtime.device import DeviceManager
from rarecli.seeds.noise import noise_from_seed
from rarecli.seeds.starts import nao_centroid_and_paths, nao_start_points

if TYPE_CHECKING:
    import torch
    from PIL import Image


class SetupPhases:
    """Seconds per named phase of a set-up, each synchronised with the device (GPU work counted)."""

    def __init__(self, manager: DeviceManager) -> None:
        self.manager = manager
        self.seconds: dict[str, float] = {}

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        with self.manager.timed() as timing:
            yield
        self.seconds[name] = round(timing["seconds"], 4)


@dataclass
class ImagePlan:
    """One image to produce: where its seed starts and which references it matches."""

    index: int
    seed: int  # the integer in the output name (and the noise seed for seedselect)
    start: torch.Tensor  # (C, h, w)
    start_meta: dict[str, Any]
    subset: list[int]


def prepare(config: SeedSelectConfig, manager: DeviceManager) -> Session:
    """Everything a SeedSelect / NAO-SeedSelect run computes once: the checks, the pipeline and CLIP,
    the text embeddings, the references' targets and where each image's seed starts (NAO: the
    inversions and the centroid). `run` writes files from it; an evaluation can optimise and render
    in memory (`Session.optimise`, `Session.render`)."""

    if not isinstance(config.options, SeedSelectOptions):
        raise InputError(f"--method {config.method} has no optimisation to prepare", hint="use seedselect or nao-seedselect")
    options = config.options
    nao = isinstance(options, NaoSeedSelectOptions)
    prompt = clean_prompt(config.prompt)
    refs = load_references(config.refs)
    iters_default, lr_default, guidance_default = DEFAULTS[config.method]
    iters = options.iters or iters_default
    lr = options.lr if options.lr is not None else lr_default
    guidance = config.guidance if config.guidance is not None else guidance_default
    phases = SetupPhases(manager)
    with phases("load_pipeline"):
        loaded = load_pipeline(
            config.model, manager, config.revision, families=registry.spec(config.method).families, purpose=config.method
        )
    manager = loaded.manager  # with --dtype auto resolved for the model's family
    phases.manager = manager
    shape = latent_shape(loaded.ref, config.height, config.width)
    clip_name, clip_tag = resolve_clip(config)
    with phases("load_clip"):
        clip = load_clip(clip_name, manager, clip_tag)
    with phases("encode_prompt"):
        text = encode_text(loaded, prompt, guidance)
        schedule = DdimSchedule.from_pipeline(loaded.pipe, config.inner_steps)
    info(f"{len(refs)} reference image(s); CLIP {clip.name}; {config.method} on {config.model}")
    with phases("reference_targets"):
        targets = compute_targets(loaded, clip, refs, shape[1:], config.seed)
    with phases("inversion_and_centroid" if nao else "start_points"):
        plans = _nao_plans(config, loaded, refs, prompt, shape) if nao else _seedselect_plans(config, shape, len(refs))
    settings = {
        "method": config.method,
        "iters": iters,
        "lr": lr,
        "lr_schedule": "divided by 10 from the 4th iteration",
        "weight_decay": options.weight_decay,
        "optimizer": "AdamW",
        "inner_steps": config.inner_steps,
        "guidance": guidance,
        "scheduler": "DDIM (eta 0, no clipping)",
        "semantic_weight": options.semantic_weight,
        "appearance_weight": options.appearance_weight,
        "semantic_step_weights": list(semantic_weights(config.inner_steps)),
        "patience": options.patience,
        "clip_model": clip.name,
        **({"clip_weights": f"random: architecture twin of {clip.twin_of}"} if clip.twin_of else {}),
        "checkpointing": options.checkpointing,
        "device": manager.device,
        "dtype": manager.dtype,
        "mixed_precision": manager.mixed_precision,
    }
    if nao:
        settings["inversion"] = {"steps": options.inversion_steps, "guidance": 1.0, "latent": "VAE posterior mean"}  # type: ignore[attr-defined]
        settings["nao_starts"] = options.nao_starts
    info(f"set-up {phases.total:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in phases.seconds.items()) + ")")
    return Session(
        config, prompt, refs, loaded, clip, text, schedule, targets, settings, phases.total, plans, phases.seconds
    )


def _seedselect_plans(config: SeedSelectConfig, shape: tuple[int, ...], k: int) -> list[ImagePlan]:

    subsets = bootstrap_subsets(k, config.num_images, config.seed)
    plans = []
    for i in range(config.num_images):
        seed = config.seed + i
        plans.append(ImagePlan(i, seed, noise_from_seed(seed, shape), {"kind": "noise", "seed": seed}, subsets[i]))
    return plans


def _nao_plans(
    config: SeedSelectConfig, loaded: LoadedPipeline, refs: list[Reference], prompt: str, shape: tuple[int, ...]
) -> list[ImagePlan]:

    inverted = invert_references(
        loaded, refs, prompt, shape[1:], InversionSettings(config.options.inversion_steps, 1.0), config.options.inversion_cache
    )
    if len(refs) == 1:
        warn("one reference image: NAO-SeedSelect starts from its inverted seed (a centroid needs two or more)")
        starts = [(inverted[0], {"kind": "inversion", "reference": refs[0].path.name})] * config.num_images
    else:
        centroid, paths = nao_centroid_and_paths(inverted)
        starts = nao_start_points(centroid, paths, config.num_images, [r.path.name for r in refs], config.options.nao_starts)
    every = list(range(len(refs)))
    return [ImagePlan(i, config.seed + i, start.reshape(shape), meta, every) for i, (start, meta) in enumerate(starts)]


@dataclass
class Session:
    """A prepared run (see `prepare`): optimise batches of its plans, render seeds, write outputs."""

    config: SeedSelectConfig
    prompt: str
    refs: list[Reference]
    loaded: LoadedPipeline
    clip: ClipEncoder
    text: TextConditioning
    schedule: DdimSchedule
    targets: ReferenceTargets
    settings: dict[str, Any]
    setup_seconds: float
    plans: list[ImagePlan]
    # Where the set-up time went: loading, CLIP, the prompt, the references, the start points.
    setup_phases: dict[str, float] = field(default_factory=dict)

    @property
    def iters(self) -> int:
        return int(self.settings["iters"])

    def optimise(
        self,
        batch: list[ImagePlan],
        *,
        on_iteration: Callable[[int, Any, float], None] | None = None,
        snapshot_at: Collection[int] = (),
    ) -> OptimResult:
        """Optimise one batch of plans together, in memory (the seeds are independent: see objective)."""
        import torch

        device = self.loaded.manager.device
        objective = Objective(
            self.loaded,
            self.clip,
            self.text,
            self.schedule,
            torch.stack([self.targets.clip_centroid(p.subset) for p in batch]).to(device),
            torch.stack([self.targets.latent_mean(p.subset) for p in batch]).to(device),
            self.config.options.semantic_weight,
            self.config.options.appearance_weight,
        )
        starts = torch.stack([p.start for p in batch])
        choice = choose(self.config.options.checkpointing, objective, starts.to(device))
        objective.checkpoint = choice.enabled
        if self.config.options.checkpointing == "auto":
            info(f"checkpointing {'on' if choice.enabled else 'off'} ({choice.reason})")
        result = optimise(
            objective,
            starts,
            iters=self.iters,
            lr=float(self.settings["lr"]),
            weight_decay=self.config.options.weight_decay,
            patience=self.config.options.patience,
            on_iteration=on_iteration,
            snapshot_at=snapshot_at,
        )
        result.extra["checkpointing"] = choice.to_json()
        return result

    def render(self, seeds: torch.Tensor) -> list[Image.Image]:
        """The images the pipeline's DDIM loop draws from `seeds` (B, C, h, w) at this run's settings."""

        return to_pil(render(self.loaded, seeds, self.text, self.schedule))
