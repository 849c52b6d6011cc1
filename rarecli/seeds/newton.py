"""The solver behind NAO's paths and centroids: a damped Newton method with the exact Hessian, on
polylines in the reduced coordinates of the seeds' span (see `rarecli.seeds.nao` for the objective
and why its optimum lies in the span).

Newton matters here: the objective is nearly flat along the path (points slide freely) and across its
zig-zags (only midpoints are scored), so first-order methods crawl or stop early; Newton converges to
float64 precision in tens of steps. The Hessian of a polyline is block tridiagonal (a point couples only
to its neighbours), so a step costs O(n k^3) rather than a dense solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rarecli.seeds.prior import chi_log_norm_const

LAMBDA = 1.0
# Added under the square root of a segment length so that a zero-length segment has a finite
# gradient; 1e-30 on squared lengths of order 1-1e4 changes nothing measurable in float64.
TINY = 1e-30


@dataclass
class SolveInfo:
    objective: float  # final objective, exact hinge (float64)
    iterations: int  # Newton steps over all continuation stages
    converged: bool  # every stage met the relative criterion (or no descent step was left)


# Added under the square root of a segment length so that a zero-length segment has a finite
# gradient; 1e-30 on squared lengths of order 1-1e4 changes nothing measurable in float64.
TINY = 1e-30


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
    length = np.sqrt((s * s).sum(-1) + TINY)
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
