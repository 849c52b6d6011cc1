"""Paths between seeds: LERP, SLERP, their norm-corrected variants, and NAO.

NAO: Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image
generation", NeurIPS 2023 (arXiv 2306.08687). A Gaussian seed in R^d lies near the shell
||z|| ~ sqrt(d); LERP cuts through the inside of that shell (the midpoint of two independent seeds has
norm ~ sqrt(d/2)), where the model has never seen a seed. NAO instead takes the polyline that minimises
its length weighted by -log chi_d(||z||) (rarecli/seeds/nao.py has the objective and the solver).

Public functions (all torch; heavy imports happen inside them):

    lerp(z0, z1, t, *, batch_dims=0, rescale=None) -> Tensor
    slerp(z0, z1, t, *, batch_dims=0, rescale=None, dot_threshold=0.9995) -> Tensor
    nao_path(z0, z1, n_points=50, *, batch_dims=0, generator=None) -> Tensor       (n_points, *z0.shape)
    nao_interpolate(z0, z1, n, *, n_points=50, batch_dims=0, generator=None) -> Tensor   (n, *z0.shape)
    interpolate(z0, z1, n, method="nao", **kw) -> (Tensor (n, *z0.shape), positions (n,))
    path_objective(path) -> float          NAO's objective J of a path (n, *seed_shape), float64
    path_nll(path) -> Tensor               -log chi_d(||p||) of every point of a path, float64

Shapes: seeds may have any shape ((4, 64, 64) for SD2.1-base, (16, 128, 128) for SD3); d is the number
of elements of one seed. With `batch_dims=b`, the first b dimensions of z0 and z1 index independent
pairs. A path has its position index first: t of shape (T,) gives (T, *z0.shape); a float t gives
z0.shape. Results keep z0's device and dtype; the arithmetic is float64 (on the CPU for MPS tensors).
`generator` (a CPU torch.Generator) only matters for degenerate inputs (exactly opposite seeds, whose
NAO path must leave their common line in some direction); every result is deterministic.

Norm-corrected variants (`rescale`): "endpoints" rescales each point to the norm interpolated linearly
between ||z0|| and ||z1||; "sqrt-d" rescales it to sqrt(d), the typical norm of a Gaussian seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from rarecli.errors import InputError
from rarecli.seeds.nao import default_eps, path_cost, resample_arc_length, solve_path
from rarecli.seeds.prior import seed_nll
from rarecli.seeds.span import Span, work_device

if TYPE_CHECKING:
    import torch

    from rarecli.seeds.span import Span

Rescale = Literal["endpoints", "sqrt-d"] | None
PATH_METHODS = ("lerp", "slerp", "lerp-norm", "slerp-norm", "nao")
N_POINTS = 50


def check_seeds(tensors: Sequence[torch.Tensor], names: Sequence[str] | None = None) -> None:
    """InputError unless the seeds share one shape and hold only finite numbers."""
    import torch

    names = list(names) if names is not None else [f"seed {i + 1}" for i in range(len(tensors))]
    for name, t in zip(names, tensors, strict=True):
        if not torch.is_floating_point(t):
            raise InputError(f"{name}: a seed must be a floating-point tensor (got {t.dtype})")
        if not torch.isfinite(t).all():
            raise InputError(f"{name} holds NaN or Inf values")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        listed = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(names, tensors, strict=True))
        raise InputError(
            f"seeds of different shapes ({listed})", hint="use seeds made for the same model and image size"
        )


def _flat_pairs(z0: torch.Tensor, z1: torch.Tensor, batch_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, d) float64 views of both (B = 1 without batch dims), on a device that has float64."""
    import torch

    check_seeds([z0, z1], ["z0", "z1"])
    if not 0 <= batch_dims < z0.dim():
        raise ValueError(f"batch_dims must be in [0, {z0.dim() - 1}] for shape {tuple(z0.shape)}")
    dev = work_device(z0)
    return (
        z0.reshape(-1, math.prod(z0.shape[batch_dims:])).to(dev, torch.float64),
        z1.reshape(-1, math.prod(z1.shape[batch_dims:])).to(dev, torch.float64),
    )


def _positions(t: float | Sequence[float] | torch.Tensor) -> tuple[torch.Tensor, bool]:
    import torch

    tt = torch.as_tensor(t, dtype=torch.float64).cpu()
    if tt.dim() > 1:
        raise ValueError("t must be a number or a 1-D sequence of numbers")
    return tt.reshape(-1), tt.dim() == 0


def _finish(flat: torch.Tensor, like: torch.Tensor, scalar_t: bool) -> torch.Tensor:
    """(T, B, d) float64 -> (T, *like.shape) (or like.shape for a scalar t) in like's dtype and device."""
    out = flat.reshape(flat.shape[0], *like.shape).to(like.device, like.dtype)
    return out[0] if scalar_t else out


def _rescale(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, how: Rescale) -> torch.Tensor:
    """Rescale (T, B, d) points to the interpolated endpoint norm or to sqrt(d)."""
    import torch

    if how is None:
        return points
    norms = torch.linalg.vector_norm(points, dim=-1, keepdim=True)
    if how == "endpoints":
        na, nb = torch.linalg.vector_norm(a, dim=-1), torch.linalg.vector_norm(b, dim=-1)
        tt = t.to(points.device)[:, None]
        target = ((1 - tt) * na[None] + tt * nb[None])[..., None]
    elif how == "sqrt-d":
        target = torch.full_like(norms, math.sqrt(points.shape[-1]))
    else:
        raise ValueError(f"rescale must be None, 'endpoints' or 'sqrt-d' (got {how!r})")
    # A point at the origin (LERP half-way between z and -z) has no direction to rescale; leave it.
    return torch.where(norms > 0, points * target / norms.clamp_min(1e-300), points)


def lerp(
    z0: torch.Tensor,
    z1: torch.Tensor,
    t: float | Sequence[float] | torch.Tensor,
    *,
    batch_dims: int = 0,
    rescale: Rescale = None,
) -> torch.Tensor:
    """Linear interpolation (1 - t) z0 + t z1, optionally norm-corrected (NAO paper's baselines)."""
    a, b = _flat_pairs(z0, z1, batch_dims)
    tt, scalar = _positions(t)
    tt_dev = tt.to(a.device)[:, None, None]
    points = (1 - tt_dev) * a[None] + tt_dev * b[None]
    points[tt == 0], points[tt == 1] = a, b  # exact endpoints
    return _finish(_rescale(points, a, b, tt, rescale), z0, scalar)


def slerp(
    z0: torch.Tensor,
    z1: torch.Tensor,
    t: float | Sequence[float] | torch.Tensor,
    *,
    batch_dims: int = 0,
    rescale: Rescale = None,
    dot_threshold: float = 0.9995,
) -> torch.Tensor:
    """Spherical interpolation: sin((1-t)θ)/sin θ z0 + sin(tθ)/sin θ z1, θ the angle between the seeds.

    Falls back to LERP where cos θ > dot_threshold (nearly parallel seeds), as the implementations NAO
    compares against do. Nearly opposite seeds (cos θ < -dot_threshold) are refused: every great
    half-circle joins them, so the path is undefined, and the LERP fallback would pass through the
    all-zero seed.
    """
    import torch

    a, b = _flat_pairs(z0, z1, batch_dims)
    tt, scalar = _positions(t)
    na, nb = torch.linalg.vector_norm(a, dim=-1), torch.linalg.vector_norm(b, dim=-1)
    cos = ((a * b).sum(-1) / (na * nb).clamp_min(1e-300)).clamp(-1.0, 1.0)
    opposite = (cos < -dot_threshold) & (na > 0) & (nb > 0)
    if bool(opposite.any()):
        where = "" if opposite.numel() == 1 else f" (in {int(opposite.sum())} of {opposite.numel()} entries)"
        raise InputError(
            f"the seeds point in opposite directions{where}: SLERP between them is undefined",
            hint="use --method nao, whose path goes around the origin, or seeds that are not opposite",
        )
    theta = torch.arccos(cos)[None, :]  # (1, B)
    tt_dev = tt.to(a.device)[:, None]  # (T, 1)
    use_lerp = (cos.abs() > dot_threshold)[None, :] | (na == 0)[None, :] | (nb == 0)[None, :]
    sin = torch.sin(theta).clamp_min(1e-300)
    w0 = torch.where(use_lerp, 1 - tt_dev, torch.sin((1 - tt_dev) * theta) / sin)
    w1 = torch.where(use_lerp, tt_dev.expand_as(w0), torch.sin(tt_dev * theta) / sin)
    points = w0[..., None] * a[None] + w1[..., None] * b[None]
    points[tt == 0], points[tt == 1] = a, b
    return _finish(_rescale(points, a, b, tt, rescale), z0, scalar)


def _nao_pair(
    a: torch.Tensor, b: torch.Tensor, n_points: int, generator: torch.Generator | None
) -> tuple[Span, torch.Tensor] | None:
    """Solve one pair (flat float64 seeds) in the span of a and b: (span, (n_points, r) coordinates),
    or None when a == b (the path is then the seed itself)."""
    import torch

    if torch.equal(a, b):
        return None
    if float(torch.linalg.vector_norm(a)) == 0.0 or float(torch.linalg.vector_norm(b)) == 0.0:
        raise InputError("a seed is all zeros: NAO's norm prior gives it zero likelihood")
    span = Span.of(torch.stack([a, b]), min_dim=2, generator=generator)
    coords, _ = solve_path(span.coords[0], span.coords[1], n_points, a.numel(), generator=generator)
    return span, coords


def _map_path(span: Span | None, coords: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, n: int):
    """Coordinates -> full seeds with the ends set to the inputs exactly."""
    if span is None:
        return a[None].expand(n, -1).clone()
    full = span.to_full(coords)
    full[0], full[-1] = a, b
    return full


def nao_path(
    z0: torch.Tensor,
    z1: torch.Tensor,
    n_points: int = N_POINTS,
    *,
    batch_dims: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The optimised NAO polyline from z0 to z1: (n_points, *z0.shape), ends exactly z0 and z1.

    Its points are not evenly spaced (the objective hardly cares how they sit along the path); use
    `nao_interpolate` for frames.
    """
    import torch

    if n_points < 3:
        raise InputError(f"a NAO path needs at least 3 points (got {n_points})")
    a, b = _flat_pairs(z0, z1, batch_dims)
    out = []
    for i in range(a.shape[0]):
        solved = _nao_pair(a[i], b[i], n_points, generator)
        span, coords = solved if solved is not None else (None, None)
        out.append(_map_path(span, coords, a[i], b[i], n_points))
    return _finish(torch.stack(out, dim=1), z0, False)


def nao_interpolate(
    z0: torch.Tensor,
    z1: torch.Tensor,
    n: int,
    *,
    n_points: int = N_POINTS,
    batch_dims: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n seeds evenly spaced by arc length along the NAO path from z0 to z1: (n, *z0.shape).

    The path is optimised with `n_points` points (the authors use 50) and resampled by arc length, so
    the frames step evenly (reading them straight off the optimised points, as the authors do, makes
    them bunch up: the objective hardly depends on how points sit along the path). Ends are exactly z0
    and z1; z0 == z1 gives n copies of z0.
    """
    import torch

    if n < 2:
        raise InputError(f"interpolation needs at least 2 steps, the two ends (got {n})")
    if n_points < 3:
        raise InputError(f"a NAO path needs at least 3 points (got {n_points})")
    a, b = _flat_pairs(z0, z1, batch_dims)
    out = []
    for i in range(a.shape[0]):
        solved = _nao_pair(a[i], b[i], n_points, generator)
        if solved is None:
            out.append(a[i][None].expand(n, -1).clone())
            continue
        span, coords = solved
        # Frames are read off the polyline through the segment midpoints, the points NAO's objective
        # scores: next to an off-shell end, the optimised vertices zig-zag across the shell (only the
        # midpoints need to sit on it), and that zig-zag would count as path length.
        curve = torch.cat([coords[:1], 0.5 * (coords[1:] + coords[:-1]), coords[-1:]])
        even, _ = resample_arc_length(curve, n)
        out.append(_map_path(span, even, a[i], b[i], n))
    return _finish(torch.stack(out, dim=1), z0, False)


def interpolate(
    z0: torch.Tensor,
    z1: torch.Tensor,
    n: int,
    method: str = "nao",
    *,
    n_points: int = N_POINTS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeds from z0 to z1 (ends included) by `method` (one of PATH_METHODS), and their positions in
    [0, 1]: the interpolation parameter t for LERP/SLERP, the arc-length fraction for NAO."""
    import torch

    if n < 2:
        raise InputError(f"interpolation needs at least 2 steps, the two ends (got {n})")
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    if method == "nao":
        return nao_interpolate(z0, z1, n, n_points=n_points, generator=generator), t
    fn = {"lerp": lerp, "slerp": slerp, "lerp-norm": lerp, "slerp-norm": slerp}.get(method)
    if fn is None:
        raise InputError(f"unknown interpolation method {method!r}", hint="use one of: " + ", ".join(PATH_METHODS))
    path = fn(z0, z1, t, rescale="endpoints" if method.endswith("-norm") else None)
    _refuse_zero_points(path, method)
    return path, t


def _refuse_zero_points(path: torch.Tensor, method: str) -> None:
    """InputError if a point of a path between nonzero seeds is (numerically) the all-zero seed: no
    sampler can start from it, and rescaling cannot give it a direction."""
    import torch

    norms = torch.linalg.vector_norm(path.reshape(path.shape[0], -1).double(), dim=-1)
    ends = float(torch.minimum(norms[0], norms[-1]))
    inner = (norms < 1e-6 * ends).nonzero().flatten().tolist()
    if ends > 0 and inner:
        raise InputError(
            f"step {inner[0] + 1} of the {method} path is the all-zero seed: the seeds point in opposite directions",
            hint="use --method nao, whose path goes around the origin",
        )


def path_nll(path: torch.Tensor) -> torch.Tensor:
    """-log chi_d(||p||) of every point of a path (T, *seed_shape), float64."""

    return seed_nll(path, batch_dims=1)


def path_objective(path: torch.Tensor, eps: float | None = None) -> float:
    """NAO's objective J of a path (T, *seed_shape) in float64 (eps defaults to 2 ||p_0 - p_-1|| / T)."""
    import torch

    flat = path.reshape(path.shape[0], -1).to(torch.float64)
    if flat.device.type == "mps":
        flat = flat.cpu()
    e = default_eps(flat[0], flat[-1], flat.shape[0]) if eps is None else eps
    return float(path_cost(flat, flat.shape[1], e))
