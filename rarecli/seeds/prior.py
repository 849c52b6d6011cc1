"""The norm prior of Gaussian seeds: the chi distribution with d degrees of freedom.

A seed z ~ N(0, I_d) has ||z|| ~ chi_d, which concentrates on a thin shell of radius about sqrt(d - 1)
(standard deviation about 1/sqrt(2)). NAO (Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space
exploration for text-to-image generation", NeurIPS 2023, arXiv 2306.08687) scores seeds, paths and
centroids by this density:

    log chi_d(r) = (d - 1) ln r - r^2 / 2 - [(d/2 - 1) ln 2 + ln Gamma(d/2)]

Everything here is float64: for d = 16,384 the three terms are each near 8e4 and cancel to about 1, so
float32 (7 significant digits) would lose about 1e-2 of the answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def chi_log_norm_const(d: int) -> float:
    """(d/2 - 1) ln 2 + ln Gamma(d/2): the log of chi_d's normalising constant."""
    if d < 1:
        raise ValueError(f"the chi distribution needs d >= 1 (got {d})")
    return (d / 2.0 - 1.0) * math.log(2.0) + math.lgamma(d / 2.0)


def chi_log_pdf(r: torch.Tensor, d: int) -> torch.Tensor:
    """log chi_d(r) in float64 (differentiable). -inf at r = 0 for d > 1."""
    import torch

    r64 = r.to(torch.float64) if r.device.type != "mps" else r.cpu().to(torch.float64)
    return (d - 1) * torch.log(r64) - 0.5 * r64 * r64 - chi_log_norm_const(d)


def chi_nll(r: torch.Tensor, d: int) -> torch.Tensor:
    """-log chi_d(r) in float64: the cost NAO integrates along a path."""
    return -chi_log_pdf(r, d)


def chi_mode(d: int) -> float:
    """The radius where chi_d peaks, sqrt(d - 1): where NAO pulls paths and centroids."""
    return math.sqrt(max(d - 1, 0))


def seed_norms(z: torch.Tensor, batch_dims: int = 0) -> torch.Tensor:
    """Euclidean norms (float64) of the seeds in `z`, whose first `batch_dims` dimensions index seeds."""
    import torch

    flat = z.reshape(*z.shape[:batch_dims], -1)
    if flat.device.type == "mps":
        flat = flat.cpu()
    return torch.linalg.vector_norm(flat.to(torch.float64), dim=-1)


def seed_nll(z: torch.Tensor, batch_dims: int = 0) -> torch.Tensor:
    """-log chi_d(||z||) of each seed in `z` (float64); d is the number of elements of one seed."""
    d = math.prod(z.shape[batch_dims:])
    return chi_nll(seed_norms(z, batch_dims), d)
