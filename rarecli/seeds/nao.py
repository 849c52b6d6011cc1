"""NAO's objectives and their solver in the span of the seeds.

Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image generation",
NeurIPS 2023 (arXiv 2306.08687).

Path objective (a polyline p_0 .. p_{n-1} with fixed ends; segment j has length l_j and midpoint m_j):

    J = sum_j l_j * (-log chi_d(||m_j||))  +  lam * sum_j max(0, l_j - eps),   eps = 2 ||p_0 - p_{n-1}|| / n

i.e. the path's length weighted by how unlikely its points are under the seeds' norm prior, plus a
penalty on segments much longer than the straight line's, which keeps points from bunching up.
Centroid objective: the sum of the path objectives from every seed to c, plus -log chi_d(||c||).

Why k coordinates suffice. J depends on the points only through norms and distances, so it is
invariant under every orthogonal map that fixes the seeds. (1) Its gradient with respect to p_i is a
combination of p_i's neighbours, midpoints and differences, so at a configuration inside the span of
the seeds the gradient lies in that span: the span is invariant under gradient flow and a stationary
point of the restricted problem is a stationary point of the full one. (2) A reflection through the
span maps any optimum to another optimum with the same cost, so a unique optimum lies in the span. The
authors optimise all n x d numbers (48 x 16,384 for SD2.1-base); solving the same objective in k
coordinates is orders of magnitude faster, and tests/test_seed_geometry.py checks that it reaches the
same path and cost as a full-dimensional optimisation (rarecli/seeds/reference.py holds the authors'
full-dimensional Adam recipe, for the benchmark).

Differences from the authors' code, on purpose: float64 log-density; relative stopping (their absolute
thresholds of 1e-3 / 1e-2 mean very different things when an off-shell loss is 1e3-1e5); a damped Newton
method with the exact Hessian in the reduced coordinates instead of Adam on every pixel. Newton matters
here: the objective is nearly flat along the path (points slide freely) and across its zig-zags (only
midpoints are scored), so first-order methods crawl or stop early; Newton converges to float64 precision
in tens of steps. The start is the great-circle arc between the ends with interpolated norms (already
on the shell) rather than the chord plus noise, and a centroid starts at the spherical mean rather than
the Euclidean one (whose norm is sqrt(d/k)); eps_i = 2 ||s_i - c0|| / n uses that start c0.

Known property of the discrete objective (not of the solver): it has many local optima of nearly equal
cost (within ~1e-4 relative at d = 16,384). Next to an end that is off the shell, vertices zig-zag across
it so that the scored midpoints sit on it, and neighbouring vertices may even merge (a zero-length
segment costs nothing). Different starts can land in different such optima; the paths they describe
differ by well under 1e-4 of the distance between the ends once read off by arc length.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from rarecli.seeds.newton import LAMBDA, TINY, SolveInfo, _Polylines, newton
from rarecli.seeds.prior import chi_nll

if TYPE_CHECKING:
    import torch


# --- objectives (any dimension: reduced coordinates or full seeds) ----------------------------------


def path_cost(
    points: torch.Tensor, d: int, eps: torch.Tensor | float, lam: float = LAMBDA, smooth: float = 0.0
) -> torch.Tensor:
    """J for polylines `points` (..., n, D); `d` is the seed dimension the chi prior is taken in.

    Works on reduced coordinates (D = k) and on full seeds (D = d) alike: only norms and distances enter.
    `smooth` > 0 replaces the hinge max(0, x) by its softplus upper bound of width smooth * eps (at most
    smooth * eps * ln 2 more per segment), for the solver's continuation; 0 is the exact objective.
    """
    import torch

    seg = points[..., 1:, :] - points[..., :-1, :]
    length = torch.sqrt((seg * seg).sum(-1) + TINY)
    mid = 0.5 * (points[..., 1:, :] + points[..., :-1, :])
    radius = torch.sqrt((mid * mid).sum(-1))
    length = length.to(torch.float64)
    eps_t = torch.as_tensor(eps, dtype=torch.float64, device=points.device).unsqueeze(-1)
    if smooth > 0:
        width = smooth * eps_t.clamp_min(1e-300)
        hinge = width * torch.nn.functional.softplus((length - eps_t) / width)
    else:
        hinge = torch.relu(length - eps_t)
    return (length * chi_nll(radius, d)).sum(-1) + lam * hinge.sum(-1)


def default_eps(start: torch.Tensor, end: torch.Tensor, n: int) -> torch.Tensor:
    """eps = 2 ||start - end|| / n, over the last dimension (float64)."""
    import torch

    diff = (start - end).to(torch.float64)
    return 2.0 * torch.linalg.vector_norm(diff, dim=-1) / n


def centroid_cost(
    paths: torch.Tensor, centroid: torch.Tensor, d: int, eps: torch.Tensor, lam: float = LAMBDA, smooth: float = 0.0
) -> torch.Tensor:
    """Sum of path costs (paths: (k, n, D), each ending at the centroid) plus -log chi_d(||c||)."""
    import torch

    r = torch.sqrt((centroid.to(torch.float64) ** 2).sum(-1))
    return path_cost(paths, d, eps, lam, smooth).sum() + chi_nll(r, d)


def straight_line(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """n evenly spaced points from a to b (endpoints included), shape (n, D)."""
    import torch

    t = torch.linspace(0.0, 1.0, n, dtype=a.dtype, device=a.device)[:, None]
    return (1 - t) * a[None] + t * b[None]


def arc(a: torch.Tensor, b: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points from a to b along the great circle, with norms interpolated linearly (float64, (n, D)).

    The solver's start: already on the shell, so Newton only has to refine it. (The authors start on
    the chord, whose middle is a factor sqrt(2) inside the shell with losses near 1e5, and Adam spends most
    of its steps getting back.) Nearly parallel seeds give the chord; nearly opposite ones a half circle
    through a random direction orthogonal to a, which needs D >= 2.
    """
    import torch

    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    ua, ub = a / na, b / nb
    cos = float(ua @ ub)
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)[:, None]
    if cos > 0.9995 or a.numel() < 2:
        return straight_line(a, b, n)
    if cos < -0.9995:
        u = torch.randn(a.shape, generator=generator, dtype=torch.float64)
        u = u - (u @ ua) * ua
        u = u / torch.linalg.vector_norm(u)
        directions = torch.cos(math.pi * t) * ua + torch.sin(math.pi * t) * u
    else:
        theta = math.acos(cos)
        directions = (torch.sin((1 - t) * theta) * ua + torch.sin(t * theta) * ub) / math.sin(theta)
    out = directions * ((1 - t) * na + t * nb)
    out[0], out[-1] = a, b
    return out


def solve_path(
    a: torch.Tensor,
    b: torch.Tensor,
    n: int,
    d: int,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rtol: float = 1e-12,
) -> tuple[torch.Tensor, SolveInfo]:
    """The NAO path between a and b (float64 CPU tensors of D numbers: reduced coordinates, or whole
    seeds with D = d): (n, D) points with a and b as ends, and solver info.

    Start: `init` (the n - 2 interior points), else `arc(a, b, n)`.
    """
    import torch

    if n < 3:
        raise ValueError(f"a NAO path needs at least 3 points (got {n})")
    eps = default_eps(a, b, n).reshape(1).numpy()
    if init is None:
        init = arc(a, b, n, generator)[1:-1]
    problem = _Polylines(a[None].numpy(), b[None].numpy(), n, d, eps)
    x, info = newton(problem, init.to(torch.float64).numpy().ravel().copy(), rtol=rtol)
    return torch.from_numpy(problem.points(x)[0].copy()), info


def solve_centroid(
    seeds: torch.Tensor,
    c0: torch.Tensor,
    n: int,
    d: int,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rtol: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SolveInfo]:
    """The NAO centroid of `seeds` (k, D) jointly with the k paths seed -> centroid, from start c0.

    Paths start as `init` ((k, n - 2, D) interior points), else as `arc(seed_i, c0, n)`.
    Returns (centroid (D,), paths (k, n, D) each from seed i to the centroid, eps (k,), info).
    eps_i = 2 ||s_i - c0|| / n is fixed at the start so that the objective is one fixed function.
    """
    import torch

    if n < 3:
        raise ValueError(f"NAO centroid paths need at least 3 points (got {n})")
    k = seeds.shape[0]
    eps = default_eps(seeds, c0[None].expand_as(seeds), n)
    if init is None:
        init = torch.stack([arc(seeds[i], c0, n, generator)[1:-1] for i in range(k)])
    problem = _Polylines(seeds.numpy(), None, n, d, eps.numpy())
    x, info = newton(problem, np.concatenate([init.to(torch.float64).numpy().ravel(), c0.numpy()]), rtol=rtol)
    paths = torch.from_numpy(problem.points(x).copy())
    return paths[0, -1].clone(), paths, eps, info


# --- arc-length resampling -----------------------------------------------------------------------------


def resample_arc_length(points: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """m points evenly spaced by arc length along the polyline `points` (n, D), ends included.

    The optimised polyline's points slide freely along the path (the objective barely depends on how
    they are spaced), so reading frames off it directly gives uneven steps; this fixes the spacing.
    Returns (points (m, D), positions (m,) in [0, 1] as fractions of the path length).
    """
    import torch

    seg = torch.linalg.vector_norm(points[1:] - points[:-1], dim=-1)
    cum = torch.cat([seg.new_zeros(1), torch.cumsum(seg, 0)])
    total = cum[-1]
    pos = torch.linspace(0.0, 1.0, m, dtype=points.dtype, device=points.device)
    if float(total) == 0.0:
        return points[:1].expand(m, -1).clone(), pos
    target = pos * total
    j = torch.searchsorted(cum, target, right=True).clamp(1, points.shape[0] - 1) - 1
    frac = ((target - cum[j]) / seg[j].clamp_min(1e-300)).clamp(0.0, 1.0)[:, None]
    out = points[j] + frac * (points[j + 1] - points[j])
    out[0], out[-1] = points[0], points[-1]
    return out, pos
