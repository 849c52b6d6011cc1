"""SeedSelect's objective and its optimiser: gradients through the denoising loop into the seed only.

Samuel, Ben-Ari, Raviv, Darshan, Chechik, "Generating images of rare concepts using pre-trained
diffusion models", AAAI 2024 (arXiv 2304.14530); the short refinements of NAO-SeedSelect are from
Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image
generation", NeurIPS 2023 (arXiv 2306.08687).

Loss of a seed z (per image of a batch; the batch loss is the sum, so every seed gets exactly the
gradient of its own loss and a batch optimises its seeds independently):

    semantic   = sum_j w_j * (1 - cos(CLIP(decode(x_j)), c))   over the last three inner steps j,
                 w = (0.05, 0.25, 0.7), c = the normalised mean of the references' CLIP embeddings
    appearance = mean((x_final - m)^2),  m = the mean of the references' VAE latents
    total      = 10 * semantic + 1 * appearance

With fewer than three inner steps, the last weights are used and renormalised to sum to 1.

Optimiser: AdamW, lr 0.1 divided by 10 from the 4th iteration (the authors' schedule), but weight
decay 0 by default: AdamW's decoupled decay multiplies the seed by (1 - lr * wd) every step, pulling
its norm off the Gaussian shell the diffusion model was trained on (the authors' 0.01 is AdamW's
default, not a choice). The best seed seen (lowest total loss, per image) is kept, training stops early
after `patience` iterations without a relative improvement of 1e-4 on any image, and Ctrl-C stops the
loop and keeps the best seeds found so far.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rarecli.errors import RareError
from rarecli.log import warn
from rarecli.methods.ddim import checkpointed, decode, denoise_step, trajectory

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.clip import ClipEncoder
    from rarecli.backbones.loading import LoadedPipeline
    from rarecli.methods.ddim import DdimSchedule, TextConditioning

SEMANTIC_STEP_WEIGHTS = (0.05, 0.25, 0.7)
LR_DROP_AT = 3  # 0-based: the 4th iteration onwards runs at lr / 10
PLATEAU_RTOL = 1e-4


def semantic_weights(inner_steps: int) -> tuple[float, ...]:
    w = SEMANTIC_STEP_WEIGHTS[-min(len(SEMANTIC_STEP_WEIGHTS), inner_steps) :]
    s = sum(w)
    return tuple(x / s for x in w)


@dataclass
class LossTerms:
    total: torch.Tensor  # (B,)
    semantic: torch.Tensor  # (B,)
    appearance: torch.Tensor  # (B,)
    final: torch.Tensor  # (B, C, h, w) the last latent of the trajectory


@dataclass
class Objective:
    """SeedSelect's loss for a batch of seeds against per-image reference targets."""

    loaded: LoadedPipeline
    clip: ClipEncoder
    text: TextConditioning
    schedule: DdimSchedule
    clip_targets: torch.Tensor  # (B, D) normalised CLIP centroids
    latent_targets: torch.Tensor  # (B, C, h, w) mean reference latents
    semantic_weight: float = 10.0
    appearance_weight: float = 1.0
    checkpoint: bool = True
    keep_last: int = 0  # with checkpointing, the last steps whose activations are kept (not recomputed)

    def step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Inner denoising step `i` from `x` (what one checkpoint segment computes)."""
        return denoise_step(self.loaded, x, i, self.text, self.schedule)

    def semantic(self, latents: torch.Tensor, clip_targets: torch.Tensor) -> torch.Tensor:
        """1 - cosine between the decoded latents' CLIP embeddings and the targets, per image."""

        embedding = self.clip.encode(decode(self.loaded, latents))
        return 1.0 - (embedding * clip_targets).sum(-1)

    def __call__(self, seeds: torch.Tensor) -> LossTerms:
        import torch

        n = len(self.schedule)
        weights = semantic_weights(n)
        first = n - len(weights)
        grad = seeds.requires_grad and torch.is_grad_enabled()
        semantic_at = checkpointed(self.semantic, self.checkpoint and grad)
        semantic = torch.zeros(seeds.shape[0], device=seeds.device)
        x = seeds
        for i, x in trajectory(
            self.loaded, seeds, self.text, self.schedule, checkpoint=self.checkpoint, keep_last=self.keep_last
        ):
            if i >= first:
                semantic = semantic + weights[i - first] * semantic_at(x, self.clip_targets)
        appearance = ((x - self.latent_targets) ** 2).mean(dim=tuple(range(1, x.dim())))
        total = self.semantic_weight * semantic + self.appearance_weight * appearance
        return LossTerms(total, semantic, appearance, x)


@dataclass
class OptimResult:
    best_seeds: torch.Tensor  # (B, C, h, w) on the CPU, fp32
    best: list[dict[str, float]]  # per image: iteration, total, semantic, appearance
    initial: list[dict[str, float]]  # per image: the loss of the starting seed
    curve: list[list[dict[str, float]]]  # per image, per iteration: total, semantic, appearance, lr
    iteration_seconds: list[float]
    peak_memory: dict[str, Any]
    interrupted: bool = False
    stopped_early: bool = False
    iterations: int = 0
    # The iteration (0-based) at which some image's loss was NaN or inf: the run stopped there and kept
    # each image's best finite seed.
    non_finite_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # k -> the best seeds (B, C, h, w) a run with `iters=k` would have returned (0: the starting seeds).
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def seconds_per_iteration(self) -> float | None:
        s = self.iteration_seconds
        return sum(s) / len(s) if s else None


def peak_memory(manager: Any) -> dict[str, Any]:
    """Peak GPU memory allocated by torch on CUDA; on the CPU the process's peak resident set size
    (a high-water mark of the whole process since it started, models included)."""
    peak = manager.peak_memory_bytes()
    if peak is not None:
        return {"kind": "cuda_max_allocated", "bytes": peak}
    try:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"kind": "process_peak_rss", "bytes": int(rss if sys.platform == "darwin" else rss * 1024)}
    except (ImportError, OSError):
        return {"kind": "unavailable", "bytes": None}


def optimise(
    objective: Objective,
    init: torch.Tensor,
    *,
    iters: int,
    lr: float,
    weight_decay: float = 0.0,
    patience: int | None = None,
    on_iteration: Callable[[int, LossTerms, float], None] | None = None,
    snapshot_at: Collection[int] = (),
) -> OptimResult:
    """Optimise the seeds `init` (B, C, h, w) with AdamW; return the best seed of each image.

    `snapshot_at`: iteration counts k at which to keep a copy of the best seeds, i.e. what the same
    run with `iters=k` would have returned (k=0: the starting seeds), so an evaluation can measure
    how quality grows with iterations from one run. A count past an early stop gets the final seeds
    (a longer budget would have stopped there too).

    Ctrl-C (KeyboardInterrupt) stops the loop: the best seeds so far are returned with
    `interrupted=True`, unless no iteration has finished yet (then it propagates).
    """
    import torch

    loaded = objective.loaded
    manager = loaded.manager
    seed = torch.nn.Parameter(init.detach().to(manager.device, torch.float32).clone())
    opt = torch.optim.AdamW([seed], lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(manager.autocast_device, enabled=manager.loss_scaling)
    b = init.shape[0]
    best_total = [float("inf")] * b
    best_seeds = init.detach().to("cpu", torch.float32).clone()
    best: list[dict[str, float]] = [{} for _ in range(b)]
    initial: list[dict[str, float]] = []
    curve: list[list[dict[str, float]]] = [[] for _ in range(b)]
    seconds: list[float] = []
    stale = 0
    interrupted = stopped = False
    non_finite_at = None
    done = 0
    wanted = set(snapshot_at)
    snapshots: dict[int, torch.Tensor] = {0: best_seeds.clone()} if 0 in wanted else {}
    manager.reset_peak_memory()
    try:
        for it in range(iters):
            current_lr = lr / 10 if it >= LR_DROP_AT else lr
            for group in opt.param_groups:
                group["lr"] = current_lr
            with manager.timed() as timing:
                opt.zero_grad(set_to_none=True)
                terms = objective(seed)
                scaler.scale(terms.total.sum()).backward()
                evaluated = seed.detach().to("cpu", torch.float32).clone()  # the seeds these losses belong to
                scaler.step(opt)
                scaler.update()
            seconds.append(timing["seconds"])
            improved = False
            total, semantic, appearance = (t.detach().cpu() for t in (terms.total, terms.semantic, terms.appearance))
            finite = torch.isfinite(total)
            if not bool(finite.all()):
                never = [j + 1 for j in range(b) if not finite[j] and best_total[j] == float("inf")]
                if never:
                    raise RareError(
                        f"the loss of image(s) {', '.join(map(str, never))} is {float(total[never[0] - 1])} at "
                        f"iteration {it + 1}, before any finite value: there is no seed to keep",
                        hint="lower --guidance or --lr; under --dtype fp16 try bf16 or fp32",
                    )
                warn(
                    f"the loss turned non-finite at iteration {it + 1}; stopping with each image's best finite seed"
                )
                non_finite_at = it
                break
            for j in range(b):
                row = {
                    "total": float(total[j]),
                    "semantic": float(semantic[j]),
                    "appearance": float(appearance[j]),
                    "lr": current_lr,
                }
                curve[j].append(row)
                if it == 0:
                    initial.append({k: row[k] for k in ("total", "semantic", "appearance")})
                if row["total"] < best_total[j] - PLATEAU_RTOL * abs(best_total[j]) or best_total[j] == float("inf"):
                    improved = True
                if row["total"] < best_total[j]:
                    best_total[j] = row["total"]
                    best_seeds[j] = evaluated[j]
                    best[j] = {"iteration": it, **{k: row[k] for k in ("total", "semantic", "appearance")}}
            done = it + 1
            if done in wanted:
                snapshots[done] = best_seeds.clone()
            if on_iteration is not None:
                on_iteration(it, terms, timing["seconds"])
            stale = 0 if improved else stale + 1
            if patience is not None and stale >= patience and done < iters:
                stopped = True
                break
    except KeyboardInterrupt:
        if done == 0:
            # Said, as a user who stops a run expects its best seed so far: there is none yet.
            warn("stopped before the first iteration finished: no seed to keep")
            raise
        interrupted = True
    if stopped or non_finite_at is not None:
        snapshots.update({k: best_seeds.clone() for k in wanted if k > done})
    return OptimResult(
        best_seeds=best_seeds,
        best=best,
        initial=initial,
        curve=curve,
        iteration_seconds=seconds,
        peak_memory=peak_memory(manager),
        interrupted=interrupted,
        stopped_early=stopped,
        iterations=done,
        snapshots=snapshots,
        non_finite_at=non_finite_at,
    )
