"""Centroids of seeds: Euclidean, rescaled and spherical means, and the NAO centroid.

NAO: Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image
generation", NeurIPS 2023 (arXiv 2306.08687). The Euclidean mean of k independent Gaussian seeds has
norm ~ sqrt(d/k), far inside the shell where seeds live; the NAO centroid is the point c minimising
the sum, over the seeds, of the NAO path cost from the seed to c, plus -log chi_d(||c||), optimised
jointly with those paths (rarecli/seeds/nao.py). It is what NAO-SeedSelect starts from.

Public API:

    centroid(seeds, method="nao", *, batch_dims=0, n_points=50, generator=None) -> Tensor
        method: "euclidean" (mean), "rescaled" (mean rescaled to the seeds' mean norm),
        "spherical" (normalised mean of the unit vectors, rescaled to the seeds' mean norm), "nao".
        seeds: a (k, *seed_shape) tensor or a sequence of k tensors of one shape; with batch_dims=b,
        seeds is (k, *batch, *seed_shape) and one centroid per batch entry comes back.
        Returns (*batch, *seed_shape) in the seeds' dtype and device.

    nao_centroid(seeds, n_points=50, *, generator=None) -> NaoCentroid
        NaoCentroid.centroid:  Tensor (*seed_shape)
        NaoCentroid.paths:     list of k Tensors (n_points, *seed_shape); paths[i] runs from seeds[i]
                               (exactly) to the centroid (exactly): the optimised NAO paths, for methods
                               that walk from the seeds towards the centroid (NAO-SeedSelect)
        NaoCentroid.objective: float, the centroid objective at the solution (float64)
        NaoCentroid.converged: bool, whether the solver met its relative stopping criterion

The solve runs in the k-dimensional span of the seeds (rarecli/seeds/span.py), in float64, and is
deterministic; `generator` only matters for degenerate inputs (seeds whose span is a line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rarecli.errors import InputError
from rarecli.seeds.nao import centroid_cost, default_eps, solve_centroid
from rarecli.seeds.paths import check_seeds
from rarecli.seeds.span import Span, work_device

if TYPE_CHECKING:
    import torch

CENTROID_METHODS = ("euclidean", "rescaled", "spherical", "nao")


@dataclass
class NaoCentroid:
    centroid: torch.Tensor
    paths: list[torch.Tensor]
    objective: float
    converged: bool


def _stack(seeds: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    import torch

    items = list(seeds.unbind(0)) if isinstance(seeds, torch.Tensor) else list(seeds)
    if len(items) < 2:
        raise InputError(f"a centroid needs at least two seeds (got {len(items)})")
    check_seeds(items)
    return torch.stack(items)


def _flat(stacked: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """(k, *batch, *seed) -> (B, k, d) float64 on a device with float64."""
    import torch

    if not 0 <= batch_dims < stacked.dim() - 1:
        raise ValueError(f"batch_dims must be in [0, {stacked.dim() - 2}] for shape {tuple(stacked.shape)}")
    k = stacked.shape[0]
    d = math.prod(stacked.shape[1 + batch_dims :])
    return stacked.reshape(k, -1, d).transpose(0, 1).to(work_device(stacked), torch.float64)


def _rescaled(direction: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """`direction` (B, d) rescaled to the seeds' (B, k, d) mean norm."""
    import torch

    target = torch.linalg.vector_norm(seeds, dim=-1).mean(-1, keepdim=True)
    norm = torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
    return torch.where(norm > 0, direction * target / norm.clamp_min(1e-300), direction)


def _start(seeds: torch.Tensor) -> torch.Tensor:
    """The solver's starting centroid for (k, D) seeds: the spherical mean (on the shell, unlike the
    Euclidean mean the authors start from for k >= 3)."""
    return _spherical(seeds[None])[0]


def _spherical(seeds: torch.Tensor) -> torch.Tensor:
    import torch

    units = seeds / torch.linalg.vector_norm(seeds, dim=-1, keepdim=True).clamp_min(1e-300)
    return _rescaled(units.mean(1), seeds)


def _nao_one(
    seeds: torch.Tensor, n_points: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """NAO centroid of (k, d) float64 seeds: (centroid (d,), paths (k, n, d), objective, converged)."""
    import torch

    k = seeds.shape[0]
    if bool((seeds == seeds[0]).all()):
        return seeds[0].clone(), seeds[0].expand(k, n_points, -1).clone(), 0.0, True
    if bool((torch.linalg.vector_norm(seeds, dim=-1) == 0).any()):
        raise InputError("a seed is all zeros: NAO's norm prior gives it zero likelihood")
    span = Span.of(seeds, min_dim=2, generator=generator)
    coords = span.coords[:k]
    c0 = _start(coords)
    if float(torch.linalg.vector_norm(c0)) < 1e-9 * float(torch.linalg.vector_norm(coords, dim=-1).mean()):
        # The unit vectors cancel (e.g. z and -z): any direction off their line is as good; pick one.
        u = torch.randn(coords.shape[1], generator=generator, dtype=torch.float64)
        c0 = _rescaled(u[None], coords[None])[0]
    c, paths, _, info = solve_centroid(coords, c0, n_points, seeds.shape[1], generator=generator)
    full_c = span.to_full(c)
    full_paths = span.to_full(paths)
    full_paths[:, 0] = seeds
    full_paths[:, -1] = full_c
    return full_c, full_paths, info.objective, info.converged


def nao_centroid(
    seeds: torch.Tensor | Sequence[torch.Tensor],
    n_points: int = 50,
    *,
    generator: torch.Generator | None = None,
) -> NaoCentroid:
    """The NAO centroid of k >= 2 seeds and the optimised path from every seed to it (module docstring)."""
    if n_points < 3:
        raise InputError(f"NAO centroid paths need at least 3 points (got {n_points})")
    stacked = _stack(seeds)
    shape = tuple(stacked.shape[1:])
    flat = _flat(stacked, 0)[0]
    c, paths, objective, converged = _nao_one(flat, n_points, generator)
    out = stacked.dtype, stacked.device
    return NaoCentroid(
        centroid=c.reshape(shape).to(out[1], out[0]),
        paths=[p.reshape(n_points, *shape).to(out[1], out[0]) for p in paths.unbind(0)],
        objective=objective,
        converged=converged,
    )


def centroid(
    seeds: torch.Tensor | Sequence[torch.Tensor],
    method: str = "nao",
    *,
    batch_dims: int = 0,
    n_points: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The centroid of k >= 2 seeds by `method` (module docstring)."""
    import torch

    if method not in CENTROID_METHODS:
        raise InputError(f"unknown centroid method {method!r}", hint="use one of: " + ", ".join(CENTROID_METHODS))
    if method == "nao" and n_points < 3:
        raise InputError(f"NAO centroid paths need at least 3 points (got {n_points})")
    stacked = _stack(seeds)
    flat = _flat(stacked, batch_dims)  # (B, k, d)
    if method == "euclidean":
        out = flat.mean(1)
    elif method == "rescaled":
        out = _rescaled(flat.mean(1), flat)
    elif method == "spherical":
        out = _spherical(flat)
    else:
        out = torch.stack([_nao_one(flat[i], n_points, generator)[0] for i in range(flat.shape[0])])
    if method != "nao":
        _refuse_cancelled(out, flat, method)
    return out.reshape(stacked.shape[1:]).to(stacked.device, stacked.dtype)


def _refuse_cancelled(out: torch.Tensor, seeds: torch.Tensor, method: str) -> None:
    """InputError if a (B, d) mean of (B, k, d) nonzero seeds is (numerically) the origin: the seeds
    cancel out, so the mean has no direction (and, rescaled, none to give a norm to)."""
    import torch

    scale = torch.linalg.vector_norm(seeds, dim=-1).mean(-1)
    cancelled = (torch.linalg.vector_norm(out, dim=-1) < 1e-6 * scale) & (scale > 0)
    if bool(cancelled.any()):
        where = "" if cancelled.numel() == 1 else f" (in {int(cancelled.sum())} of {cancelled.numel()} entries)"
        raise InputError(
            f"the seeds cancel out{where}: their {method} centroid is the all-zero seed",
            hint="use --method nao, whose centroid of opposite seeds is defined, or drop a seed",
        )


def centroid_objective(seeds: torch.Tensor | Sequence[torch.Tensor], result: NaoCentroid) -> float:
    """The NAO centroid objective of `result` for `seeds`, in float64, with eps_i = 2 ||s_i - c0|| / n
    taken from the solver's start c0 as the solver does (for comparing solutions)."""
    import torch

    flat = _flat(_stack(seeds), 0)[0]
    n = result.paths[0].shape[0]
    span = Span.of(flat, min_dim=2)
    c0 = span.to_full(_start(span.coords[: flat.shape[0]]))
    paths = torch.stack([p.reshape(n, -1).to(flat) for p in result.paths])
    eps = default_eps(flat, c0[None].expand_as(flat), n)
    return float(centroid_cost(paths, result.centroid.reshape(-1).to(flat), flat.shape[1], eps))
