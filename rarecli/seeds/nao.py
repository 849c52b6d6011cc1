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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rarecli.seeds.prior import chi_log_norm_const, chi_nll

if TYPE_CHECKING:
    import torch

LAMBDA = 1.0
# Added under the square root of a segment length so that a zero-length segment has a finite
# gradient; 1e-30 on squared lengths of order 1-1e4 changes nothing measurable in float64.
_TINY = 1e-30


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
    length = torch.sqrt((seg * seg).sum(-1) + _TINY)
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


# --- solver --------------------------------------------------------------------------------------------


@dataclass
class SolveInfo:
    objective: float  # final objective, exact hinge (float64)
    iterations: int  # Newton steps over all continuation stages
    converged: bool  # every stage met the relative criterion (or no descent step was left)


def _weight(r: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-log chi_d(r) and its first two derivatives in r."""
    with np.errstate(divide="ignore"):
        w = -(d - 1) * np.log(r) + 0.5 * r * r + chi_log_norm_const(d)
        return w, r - (d - 1) / r, 1.0 + (d - 1) / (r * r)


def _hinge(length: np.ndarray, eps: np.ndarray, smooth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """max(0, l - eps) (or its softplus of width smooth * eps) and its first two derivatives in l."""
    if smooth <= 0:
        return np.maximum(length - eps, 0.0), (length > eps).astype(np.float64), np.zeros_like(length)
    width = smooth * np.maximum(eps, 1e-300)
    x = (length - eps) / width
    sig = 0.5 * (1.0 + np.tanh(0.5 * x))
    return width * np.logaddexp(0.0, x), sig, sig * (1.0 - sig) / width


def path_derivatives(
    points: np.ndarray, d: int, eps: np.ndarray, lam: float = LAMBDA, smooth: float = 0.0, hessian: bool = True
) -> tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Sum of `path_cost` over P polylines (P, n, D), its gradient (P, n, D) and each polyline's Hessian
    as blocks: diagonal (P, n, D, D) and upper off-diagonal (P, n-1, D, D) (point j with point j+1; the
    Hessian is block-tridiagonal because a point only meets its two neighbours). Analytic, in numpy
    float64: the reduced problems are tiny, so interpreter overhead, not arithmetic, is what costs.

    Segment term T = l w(r) + lam h(l - eps) with s = p_{j+1} - p_j, m = (p_j + p_{j+1}) / 2:
    dT/ds = (w + lam h') s/l, dT/dm = l w' m/r; the second derivatives follow, then the chain rule
    through ds/dp = (-I, I) and dm/dp = (I/2, I/2).
    """
    P, n, D = points.shape
    s = points[:, 1:] - points[:, :-1]
    m = 0.5 * (points[:, 1:] + points[:, :-1])
    length = np.sqrt((s * s).sum(-1) + _TINY)
    r = np.sqrt((m * m).sum(-1))
    w, w1, w2 = _weight(r, d)
    h, h1, h2 = _hinge(length, np.asarray(eps, dtype=np.float64).reshape(P, 1), smooth)
    value = float((length * w).sum() + lam * h.sum())
    a = w + lam * h1  # dT/dl
    with np.errstate(invalid="ignore", divide="ignore"):
        g_s = (a / length)[..., None] * s
        g_m = (length * w1 / r)[..., None] * m
    grad = np.zeros_like(points)
    grad[:, 1:] += g_s + 0.5 * g_m
    grad[:, :-1] += 0.5 * g_m - g_s
    if not hessian:
        return value, grad, None
    eye = np.eye(D)
    sh = s / length[..., None]
    mh = m / r[..., None]
    ss = sh[..., :, None] * sh[..., None, :]
    mm = mh[..., :, None] * mh[..., None, :]
    h_ss = (a / length)[..., None, None] * (eye - ss) + (lam * h2)[..., None, None] * ss
    h_mm = length[..., None, None] * (w2[..., None, None] * mm + (w1 / r)[..., None, None] * (eye - mm))
    h_sm = w1[..., None, None] * sh[..., :, None] * mh[..., None, :]
    h_ms = np.swapaxes(h_sm, -1, -2)
    diag = np.zeros((P, n, D, D))
    diag[:, :-1] += h_ss - 0.5 * (h_sm + h_ms) + 0.25 * h_mm
    diag[:, 1:] += h_ss + 0.5 * (h_sm + h_ms) + 0.25 * h_mm
    off = -h_ss - 0.5 * h_sm + 0.5 * h_ms + 0.25 * h_mm
    return value, grad, (diag, off)


def dense_hessian(diag: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Assemble `path_derivatives`' blocks into dense (P, n*D, n*D) Hessians (for checks)."""
    P, n, D, _ = diag.shape
    dense = np.zeros((P, n, n, D, D))
    j = np.arange(n)
    dense[:, j, j] = diag
    dense[:, j[:-1], j[:-1] + 1] = off
    dense[:, j[:-1] + 1, j[:-1]] = np.swapaxes(off, -1, -2)
    return dense.transpose(0, 1, 3, 2, 4).reshape(P, n * D, n * D)


# Up to this many unknowns per polyline a dense solve beats the block elimination's Python loop (above
# it, multi-threaded BLAS on a busy machine makes dense solves slow and erratic).
_DENSE_MAX = 128


def _block_tridiagonal_solve(diag: np.ndarray, off: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve A x = rhs for P symmetric block-tridiagonal A (diag (P, m, D, D), off (P, m-1, D, D) the
    blocks A[j, j+1]; rhs (P, m, D, R)) by block elimination. Raises LinAlgError unless every A is
    positive definite (each pivot block must have a Cholesky factor)."""
    P, m, D, _ = diag.shape
    if m * D <= _DENSE_MAX:
        dense = dense_hessian(diag, off)
        np.linalg.cholesky(dense)  # positive-definiteness check
        return np.linalg.solve(dense, rhs.reshape(P, m * D, -1)).reshape(rhs.shape)
    pivots = np.empty_like(diag)
    pivots_inv = np.empty_like(diag)
    y = np.empty_like(rhs)
    pivots[:, 0], y[:, 0] = diag[:, 0], rhs[:, 0]
    pivots_inv[:, 0] = np.linalg.inv(pivots[:, 0])
    for j in range(1, m):
        coupling = np.swapaxes(off[:, j - 1], -1, -2) @ pivots_inv[:, j - 1]  # A[j, j-1] S_{j-1}^-1
        pivots[:, j] = diag[:, j] - coupling @ off[:, j - 1]
        y[:, j] = rhs[:, j] - coupling @ y[:, j - 1]
        pivots_inv[:, j] = np.linalg.inv(pivots[:, j])
    # A is positive definite iff every pivot is; one batched Cholesky checks them all.
    np.linalg.cholesky(pivots)
    x = np.empty_like(rhs)
    x[:, m - 1] = pivots_inv[:, m - 1] @ y[:, m - 1]
    for j in range(m - 2, -1, -1):
        x[:, j] = pivots_inv[:, j] @ (y[:, j] - off[:, j] @ x[:, j + 1])
    return x


class _Polylines:
    """P polylines of n points: point 0 of each is a fixed start; point n-1 is a fixed end, or (for a
    centroid) one free point c shared by all of them, which also pays -log chi_d(||c||).

    The unknowns x are the P x (n-2) interior points, then c. The Hessian is block-tridiagonal within a
    polyline and the polylines meet only at c, so a Newton step costs one block elimination per
    polyline plus a D x D Schur complement for c: linear in n and P.
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray | None, n: int, d: int, eps: np.ndarray) -> None:
        self.starts, self.ends, self.n, self.d, self.eps = starts, ends, n, d, eps
        self.P, self.D = starts.shape
        self.size = self.P * (n - 2) * self.D
        self.shared = ends is None

    def points(self, x: np.ndarray) -> np.ndarray:
        P, D = self.P, self.D
        free = x[: self.size].reshape(P, self.n - 2, D)
        end = np.broadcast_to(x[self.size :], (P, D)) if self.shared else self.ends
        return np.concatenate([self.starts[:, None], free, end[:, None]], axis=1)

    def _prior(self, c: np.ndarray) -> tuple[float, float, float, float]:
        r = float(np.sqrt(c @ c))
        w, w1, w2 = (float(v[0]) for v in _weight(np.array([r]), self.d))
        return r, w, w1, w2

    def value(self, x: np.ndarray, smooth: float) -> float:
        value, _, _ = path_derivatives(self.points(x), self.d, self.eps, smooth=smooth, hessian=False)
        return value + (self._prior(x[self.size :])[1] if self.shared else 0.0)

    def newton_system(self, x: np.ndarray, smooth: float) -> tuple[float, np.ndarray, tuple]:
        value, grad, (diag, off) = path_derivatives(self.points(x), self.d, self.eps, smooth=smooth)
        g = grad[:, 1:-1].ravel()
        blocks = (diag[:, 1:-1], off[:, 1:-1])
        if not self.shared:
            return value, g, (*blocks, None, None)
        c = x[self.size :]
        r, w, w1, w2 = self._prior(c)
        ch = c / r
        eye = np.eye(self.D)
        C = diag[:, -1].sum(0) + w2 * np.outer(ch, ch) + (w1 / r) * (eye - np.outer(ch, ch))
        gc = grad[:, -1].sum(0) + w1 * ch
        # The last interior point of each polyline is the only one coupled to c.
        return value + w, np.concatenate([g, gc]), (*blocks, off[:, -1], C)

    def step(self, g: np.ndarray, system: tuple, mu: float) -> np.ndarray | None:
        """Solve (H + mu I) dx = -g; None when H + mu I is not positive definite."""
        diag, off, coupling, C = system
        P, D, m = self.P, self.D, self.n - 2
        diag = diag + mu * np.eye(D)
        gF = g[: self.size].reshape(P, m, D, 1)
        try:
            if not self.shared:
                return -_block_tridiagonal_solve(diag, off, gF).ravel()
            B = np.zeros((P, m, D, D))
            B[:, -1] = coupling
            Y = _block_tridiagonal_solve(diag, off, np.concatenate([B, gF], axis=-1))
            YB, Yg = Y[..., :D], Y[..., D]  # (P, m, D, D), (P, m, D)
            schur = C + mu * np.eye(D) - np.einsum("pij,pik->jk", coupling, YB[:, -1])
            np.linalg.cholesky(schur)
            dc = np.linalg.solve(schur, -g[self.size :] + np.einsum("pij,pi->j", coupling, Yg[:, -1]))
        except np.linalg.LinAlgError:
            return None
        dF = -Yg - YB @ dc
        return np.concatenate([dF.ravel(), dc])


# Continuation on the hinge: the exact objective has kinks where a segment is exactly eps long, and the
# optimum often sits on one (the first segment leaving an off-shell seed). Each stage solves the
# objective with the hinge smoothed to a softplus of width smooth * eps (which only ever adds, at most
# smooth * eps * ln 2 per segment) and warm-starts the next, sharper one.
SMOOTHING = (1e-4, 1e-6, 1e-8)


def newton(
    problem: _Polylines, x: np.ndarray, rtol: float = 1e-12, max_iter: int = 500, smoothing=SMOOTHING
) -> tuple[np.ndarray, SolveInfo]:
    """Levenberg-Marquardt-damped Newton with the exact Hessian, through the continuation stages.

    Damping follows the gain ratio (Nielsen's rule). A stage stops when two accepted steps in a row
    lower the objective by at most `rtol` times its value (relative: NAO's losses range from ~1e2 on
    the shell to ~1e5 off it), or when no descent step is left at float64 precision.
    """
    iterations, converged = 0, True
    for smooth in smoothing:
        f = problem.value(x, smooth)
        mu, nu, calm, done = None, 2.0, 0, False
        for _ in range(max_iter):
            _, g, system = problem.newton_system(x, smooth)
            scale = float(np.abs(np.diagonal(system[0], axis1=-2, axis2=-1)).max())
            mu = 1e-6 * scale if mu is None else mu
            accepted = None
            while mu < 1e20 * max(scale, 1.0):
                dx = problem.step(g, system, mu)
                if dx is not None:
                    f_new = problem.value(x + dx, smooth)
                    predicted = 0.5 * (mu * float(dx @ dx) - float(g @ dx))
                    if math.isfinite(f_new) and f_new < f and predicted > 0:
                        rho = (f - f_new) / predicted
                        mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                        nu = 2.0
                        accepted = (x + dx, f_new)
                        break
                mu *= nu
                nu *= 2.0
            iterations += 1
            if accepted is None:
                done = True  # no descent step left at float64 precision: a (possibly kinked) minimum
                break
            (x, f), f_prev = accepted, f
            if f_prev - f <= rtol * abs(f):
                calm += 1
                if calm >= 2:
                    done = True
                    break
            else:
                calm = 0
        converged = converged and done
    return x, SolveInfo(objective=problem.value(x, 0.0), iterations=iterations, converged=converged)


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
