"""SeedSelect and NAO-SeedSelect: optimise the initial noise so the image matches reference images.

- SeedSelect: Samuel, Ben-Ari, Raviv, Darshan, Chechik, "Generating images of rare concepts using
  pre-trained diffusion models", AAAI 2024 (arXiv 2304.14530). A rare concept is often drawable from
  *some* seed; SeedSelect finds one by back-propagating a CLIP (semantic) + VAE-latent (appearance)
  loss against a few reference images through the denoising loop into the seed. The diffusion model
  is never fine-tuned.
- NAO-SeedSelect: Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for
  text-to-image generation", NeurIPS 2023 (arXiv 2306.08687). The references are DDIM-inverted to seeds
  (`rarecli.methods.inversion`), their NAO centroid and the NAO paths to it are computed
  (`rarecli.seeds.nao`), and short SeedSelect refinements (5 iterations, lr 0.05 -> 0.005, guidance 1)
  start from the centroid and from points on those paths.

Pieces: `ddim` (the differentiable, checkpointed DDIM loop), `seedopt` (the loss and the optimiser),
`references` (reading the folder, bootstrap subsets, targets). This module ties them together:
`prepare` computes what a run needs once (a `Session`), and `run` optimises its images in batches and
writes, per image: the optimised seed (safetensors), the PNG rendered from it, and `<stem>.run.json`.

Where this departs from the authors' code, on purpose:
- weight decay 0 (theirs: AdamW's default 0.01, which shrinks the seed's norm off the Gaussian shell);
- every reference is used (theirs: two, by directory order), and for several images each SeedSelect
  image gets its own bootstrap resample of the references (the first image: all of them once);
- the prompt's underscores become spaces (ImageNet-style class names such as `tiger_cat` were passed raw);
- text embeddings and reference targets are computed once per run, and the denoising loop is
  checkpointed per step, so memory does not grow with `--inner-steps`;
- the best seed seen is kept (theirs: whatever the last step left), the run stops early on a plateau,
  and everything is saved: seed, image rendered from it, loss curve.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import family_of, pipelines_for, sampler_label
from rarecli.errors import InputError
from rarecli.seeds.starts import nao_centroid_and_paths, nao_start_points

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rarecli.backbones.loading import LoadedPipeline
    from rarecli.methods.references import Reference
    from rarecli.methods.seedopt import OptimResult

METHODS = ("sd", "seedselect", "nao-seedselect")
# The paper's defaults per method: (iterations, learning rate, guidance).
DEFAULTS = {"seedselect": (30, 0.1, 7.5), "nao-seedselect": (5, 0.05, 1.0)}
PAPER_CLIP = ("ViT-H-14", "laion2b_s32b_b79k")


@dataclass
class SeedSelectConfig:
    prompt: str
    refs: Path | None
    method: str = "seedselect"
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    iters: int | None = None  # None: 30 for seedselect, 5 for nao-seedselect
    lr: float | None = None  # None: 0.1 for seedselect, 0.05 for nao-seedselect
    inner_steps: int = 20
    guidance: float | None = None  # None: 7.5 for seedselect, 1 for nao-seedselect
    semantic_weight: float = 10.0
    appearance_weight: float = 1.0
    weight_decay: float = 0.0
    patience: int | None = 8
    clip_model: str = "auto"
    clip_pretrained: str | None = "laion2b_s32b_b79k"
    num_images: int = 1
    batch_size: int | None = None  # None: up to 4 images per batch
    seed: int = 0
    out: Path = Path("out/seedselect")
    checkpointing: bool = True
    inversion_steps: int = 50
    inversion_cache: bool = True


@dataclass
class SeedSelectResult:
    images: list[Path]
    seeds: list[Path]
    runs: list[Path] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [str(p) for p in self.images],
            "seeds": [str(p) for p in self.seeds],
            "runs": [str(p) for p in self.runs],
            "losses": self.losses,
            "interrupted": self.interrupted,
        }


def clean_prompt(prompt: str) -> str:
    """Underscores to spaces (class names like `tiger_cat`), whitespace collapsed; empty is an error."""
    text = re.sub(r"\s+", " ", prompt.replace("_", " ")).strip()
    if not text:
        raise InputError("the prompt is empty", hint='name the concept, e.g. rare seedselect "tiger cat" --refs DIR')
    return text


def resolve_clip(config: SeedSelectConfig) -> tuple[str, str | None]:
    """`auto`: an embedded backbone's own CLIP (tiny-sd -> tiny-clip), else the paper's ViT-H-14."""
    if config.clip_model != "auto":
        return config.clip_model, config.clip_pretrained
    from rarecli.backbones.registry import EMBEDDED

    entry = EMBEDDED.get(config.model)
    if entry is not None and entry.clip:
        return entry.clip, None
    return PAPER_CLIP


def _validate(config: SeedSelectConfig) -> None:
    if config.method not in METHODS:
        raise InputError(f"unknown method {config.method!r}", hint="use one of: " + ", ".join(METHODS))
    checks = [
        (config.iters is None or config.iters >= 1, f"--iters must be >= 1 (got {config.iters})"),
        (config.lr is None or config.lr > 0, f"--lr must be > 0 (got {config.lr})"),
        (config.inner_steps >= 1, f"--inner-steps must be >= 1 (got {config.inner_steps})"),
        (config.num_images >= 1, f"--num-images must be >= 1 (got {config.num_images})"),
        (config.batch_size is None or config.batch_size >= 1, f"--batch-size must be >= 1 (got {config.batch_size})"),
        (config.guidance is None or config.guidance >= 0, f"--guidance must be >= 0 (got {config.guidance})"),
        (config.semantic_weight >= 0 and config.appearance_weight >= 0, "loss weights must be >= 0"),
        (config.semantic_weight + config.appearance_weight > 0, "at least one loss weight must be > 0"),
        (config.weight_decay >= 0, f"--weight-decay must be >= 0 (got {config.weight_decay})"),
        (config.patience is None or config.patience >= 1, f"--patience must be >= 1 (got {config.patience})"),
        (config.inversion_steps >= 1, f"inversion steps must be >= 1 (got {config.inversion_steps})"),
        (config.seed >= 0, f"--seed must be >= 0 (got {config.seed})"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def run(config: SeedSelectConfig, manager) -> SeedSelectResult:
    """Run `config.method` and write its outputs under `config.out`; see the module docstring.

    All input checks (prompt, options, reference folder) happen before any model is loaded, and no
    file is written unless the run gets to the end of at least one optimisation.
    """
    _validate(config)
    prompt = clean_prompt(config.prompt)
    if config.method == "sd":
        return _plain(config, prompt, manager)
    session = prepare(config, manager)
    result = SeedSelectResult([], [], [], [])
    size = config.batch_size or min(4, config.num_images)
    queue = [session.plans[i : i + size] for i in range(0, len(session.plans), size)]
    while queue:
        batch = queue.pop(0)
        try:
            interrupted = session.run_batch(batch, result)
        except Exception as exc:
            if not _is_oom(exc) or len(batch) == 1:
                raise
            _free_cuda()
            from rarecli.log import warn

            size = len(batch) // 2
            warn(f"out of GPU memory with {len(batch)} images per batch; retrying with {size}")
            remaining = batch + [plan for later in queue for plan in later]
            queue = [remaining[i : i + size] for i in range(0, len(remaining), size)]
            continue
        if interrupted:
            result.interrupted = True
            break
    return result


@dataclass
class ImagePlan:
    """One image to produce: where its seed starts and which references it matches."""

    index: int
    seed: int  # the integer in the output name (and the noise seed for seedselect)
    start: torch.Tensor  # (C, h, w)
    start_meta: dict[str, Any]
    subset: list[int]


def prepare(config: SeedSelectConfig, manager) -> Session:
    """Everything a SeedSelect / NAO-SeedSelect run computes once: the checks, the pipeline and CLIP,
    the text embeddings, the references' targets and where each image's seed starts (NAO: the
    inversions and the centroid). `run` writes files from it; an evaluation can optimise and render
    in memory (`Session.optimise`, `Session.render`)."""
    from rarecli.backbones.clip import load_clip
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.log import info
    from rarecli.methods.ddim import DdimSchedule, encode_text
    from rarecli.methods.references import compute_targets, load_references

    _validate(config)
    if config.method == "sd":
        raise InputError("--method sd has no optimisation to prepare", hint="use seedselect or nao-seedselect")
    prompt = clean_prompt(config.prompt)
    refs = load_references(config.refs)
    iters_default, lr_default, guidance_default = DEFAULTS[config.method]
    iters = config.iters or iters_default
    lr = config.lr if config.lr is not None else lr_default
    guidance = config.guidance if config.guidance is not None else guidance_default
    started = time.perf_counter()
    loaded = load_pipeline(
        config.model, manager, config.revision, families=pipelines_for(config.method), purpose="seedselect"
    )
    shape = latent_shape(loaded.ref)
    clip_name, clip_tag = resolve_clip(config)
    clip = load_clip(clip_name, manager, clip_tag)
    text = encode_text(loaded, prompt, guidance)
    schedule = DdimSchedule.from_pipeline(loaded.pipe, config.inner_steps)
    info(f"{len(refs)} reference image(s); CLIP {clip.name}; {config.method} on {config.model}")
    targets = compute_targets(loaded, clip, refs, shape[1:], config.seed)
    if config.method == "seedselect":
        plans = _seedselect_plans(config, shape, len(refs))
    else:
        plans = _nao_plans(config, loaded, refs, prompt, shape)
    settings = {
        "method": config.method,
        "iters": iters,
        "lr": lr,
        "lr_schedule": "divided by 10 from the 4th iteration",
        "weight_decay": config.weight_decay,
        "optimizer": "AdamW",
        "inner_steps": config.inner_steps,
        "guidance": guidance,
        "scheduler": "DDIM (eta 0, no clipping)",
        "semantic_weight": config.semantic_weight,
        "appearance_weight": config.appearance_weight,
        "semantic_step_weights": list(_weights(config.inner_steps)),
        "patience": config.patience,
        "clip_model": clip.name,
        "checkpointing": config.checkpointing,
        "device": manager.device,
        "dtype": manager.dtype,
        "mixed_precision": manager.device.startswith("cuda") and manager.dtype in ("fp16", "bf16"),
    }
    if config.method == "nao-seedselect":
        settings["inversion"] = {"steps": config.inversion_steps, "guidance": 1.0, "latent": "VAE posterior mean"}
    setup_seconds = time.perf_counter() - started
    return Session(config, prompt, refs, loaded, clip, text, schedule, targets, settings, setup_seconds, plans)


def _weights(inner_steps: int) -> tuple[float, ...]:
    from rarecli.methods.seedopt import semantic_weights

    return semantic_weights(inner_steps)


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _seedselect_plans(config: SeedSelectConfig, shape: tuple[int, ...], k: int) -> list[ImagePlan]:
    from rarecli.methods.references import bootstrap_subsets
    from rarecli.seeds.noise import noise_from_seed

    subsets = bootstrap_subsets(k, config.num_images, config.seed)
    plans = []
    for i in range(config.num_images):
        seed = config.seed + i
        plans.append(ImagePlan(i, seed, noise_from_seed(seed, shape), {"kind": "noise", "seed": seed}, subsets[i]))
    return plans


def _nao_plans(
    config: SeedSelectConfig, loaded: LoadedPipeline, refs: list[Reference], prompt: str, shape: tuple[int, ...]
) -> list[ImagePlan]:
    from rarecli.log import warn
    from rarecli.methods.inversion import InversionSettings, invert_references

    inverted = invert_references(
        loaded, refs, prompt, shape[1:], InversionSettings(config.inversion_steps, 1.0), config.inversion_cache
    )
    if len(refs) == 1:
        warn("one reference image: NAO-SeedSelect starts from its inverted seed (a centroid needs two or more)")
        starts = [(inverted[0], {"kind": "inversion", "reference": refs[0].path.name})] * config.num_images
    else:
        centroid, paths = nao_centroid_and_paths(inverted)
        starts = nao_start_points(centroid, paths, config.num_images, [r.path.name for r in refs])
    every = list(range(len(refs)))
    return [ImagePlan(i, config.seed + i, start.reshape(shape), meta, every) for i, (start, meta) in enumerate(starts)]


@dataclass
class Session:
    """A prepared run (see `prepare`): optimise batches of its plans, render seeds, write outputs."""

    config: SeedSelectConfig
    prompt: str
    refs: list[Reference]
    loaded: LoadedPipeline
    clip: Any
    text: Any
    schedule: Any
    targets: Any
    settings: dict[str, Any]
    setup_seconds: float
    plans: list[ImagePlan]

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
        """Optimise one batch of plans together, in memory (the seeds are independent: see seedopt)."""
        import torch

        from rarecli.methods.seedopt import Objective, optimise

        device = self.loaded.manager.device
        objective = Objective(
            self.loaded,
            self.clip,
            self.text,
            self.schedule,
            torch.stack([self.targets.clip_centroid(p.subset) for p in batch]).to(device),
            torch.stack([self.targets.latent_mean(p.subset) for p in batch]).to(device),
            self.config.semantic_weight,
            self.config.appearance_weight,
            self.config.checkpointing,
        )
        return optimise(
            objective,
            torch.stack([p.start for p in batch]),
            iters=self.iters,
            lr=float(self.settings["lr"]),
            weight_decay=self.config.weight_decay,
            patience=self.config.patience,
            on_iteration=on_iteration,
            snapshot_at=snapshot_at,
        )

    def render(self, seeds: torch.Tensor) -> list[Image.Image]:
        """The images the pipeline's DDIM loop draws from `seeds` (B, C, h, w) at this run's settings."""
        from rarecli.methods.ddim import render, to_pil

        return to_pil(render(self.loaded, seeds, self.text, self.schedule))

    def run_batch(self, batch: list[ImagePlan], result: SeedSelectResult) -> bool:
        """Optimise one batch with a progress bar and write its images; True when Ctrl-C stopped it."""
        from rarecli.log import info, progress, progress_enabled

        bars = progress_enabled()
        iters = self.iters
        label = f"{self.config.method} " + (
            f"image {batch[0].index + 1}" if len(batch) == 1 else f"images {batch[0].index + 1}-{batch[-1].index + 1}"
        )
        with progress(label, total=iters, status="") as bar:

            def report(it: int, terms: Any, seconds: float) -> None:
                status = f"loss {float(terms.total.detach().mean()):.4f}  {seconds:.2f}s/it"
                bar.advance(status=status)
                if not bars:  # logs and CI: one line per iteration instead of a bar
                    info(f"{label}: iteration {it + 1}/{iters} {status}")

            out = self.optimise(batch, on_iteration=report)
        self._write(batch, out, result)
        return out.interrupted

    def _write(self, batch: list[ImagePlan], out: Any, result: SeedSelectResult) -> None:
        from rarecli.io.atomic import write_text_new
        from rarecli.io.images import a1111_parameters, save_numbered_png
        from rarecli.log import info
        from rarecli.methods.references import describe_subset
        from rarecli.methods.sample import settings_text
        from rarecli.seeds.files import save_seed

        config, loaded = self.config, self.loaded
        images = self.render(out.best_seeds)
        peak = out.peak_memory
        for j, plan in enumerate(batch):
            best = out.best[j]
            meta = {
                "command": "seedselect",
                "method": config.method,
                "prompt": self.prompt,
                **({"prompt_given": config.prompt} if config.prompt != self.prompt else {}),
                "seed": plan.seed,
                "start": plan.start_meta,
                **loaded.ref.to_meta(),
                "refs": describe_subset(self.refs, plan.subset),
                "hyper": self.settings,
                "loss": best,
                "initial_loss": out.initial[j],
                "iterations": out.iterations,
                "interrupted": out.interrupted,
            }
            # SeedSelect renders with its own DDIM loop, whatever scheduler the pipeline ships.
            settings = settings_text("DDIM", config.inner_steps, self.settings["guidance"], plan.seed, config.model)
            settings["Method"] = config.method
            png = save_numbered_png(
                config.out,
                images[j],
                seed=plan.seed,
                method=config.method,
                prompt=self.prompt,
                parameters=a1111_parameters(self.prompt, settings),
                rare=meta,
            )
            seed_path = save_seed(png.with_suffix(".safetensors"), out.best_seeds[j], meta)
            spi = out.seconds_per_iteration
            run_doc = {
                **meta,
                "image": png.name,
                "seed_file": seed_path.name,
                "all_refs": [r.to_meta() for r in self.refs],
                "loss_curve": out.curve[j],
                "seconds_per_iteration": spi,
                "iteration_seconds": out.iteration_seconds,
                "setup_seconds": self.setup_seconds,
                "batch": {"size": len(batch), "images": [p.index for p in batch]},
                "peak_memory": peak,
                "stopped_early": out.stopped_early,
            }
            run_path = write_text_new(
                png.with_name(png.stem + ".run.json"), json.dumps(run_doc, indent=2, default=str) + "\n"
            )
            result.images.append(png)
            result.seeds.append(seed_path)
            result.runs.append(run_path)
            result.losses.append({"image": str(png), "initial": out.initial[j], "best": best})
            memory = _format_bytes(peak.get("bytes"))
            info(
                f"image {plan.index + 1}: loss {out.initial[j]['total']:.4f} -> {best['total']:.4f} "
                f"(best at iteration {best['iteration'] + 1}/{out.iterations}), "
                f"{spi:.2f} s/iteration, peak memory {memory}" + (" [interrupted]" if out.interrupted else "")
            )


def _format_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _plain(config: SeedSelectConfig, prompt: str, manager) -> SeedSelectResult:
    """`--method sd`: the plain-sampling baseline (the model's own pipeline from integer seeds)."""
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.io.images import a1111_parameters, save_numbered_png
    from rarecli.log import progress
    from rarecli.methods.sample import sample, settings_text
    from rarecli.seeds.files import save_seed
    from rarecli.seeds.noise import noise_from_seed

    loaded = load_pipeline(
        config.model, manager, config.revision, families=pipelines_for("seedselect"), purpose="seedselect"
    )
    shape = latent_shape(loaded.ref)
    guidance = family_of(loaded.family).guidance if config.guidance is None else config.guidance
    images, seeds = [], []
    with progress("sampling", total=config.num_images) as bar:
        for i in range(config.num_images):
            seed = config.seed + i
            noise = noise_from_seed(seed, shape)
            image = sample(loaded, prompt, noise, steps=config.inner_steps, guidance=guidance)
            meta = {
                "command": "seedselect",
                "method": "sd",
                "prompt": prompt,
                "seed": seed,
                **loaded.ref.to_meta(),
                "hyper": {**asdict(config), "guidance": guidance},
            }
            settings = settings_text(
                sampler_label(loaded.pipe.scheduler), config.inner_steps, guidance, seed, config.model
            )
            path = save_numbered_png(
                config.out,
                image,
                seed=seed,
                method="sd",
                prompt=prompt,
                parameters=a1111_parameters(prompt, settings),
                rare=meta,
            )
            images.append(path)
            seeds.append(save_seed(path.with_suffix(".safetensors"), noise, meta))
            bar.advance()
    return SeedSelectResult(images, seeds)


__all__ = [
    "DEFAULTS",
    "METHODS",
    "ImagePlan",
    "SeedSelectConfig",
    "Session",
    "SeedSelectResult",
    "clean_prompt",
    "nao_start_points",
    "prepare",
    "resolve_clip",
    "run",
]
