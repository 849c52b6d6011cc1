"""Seed-space geometry (NAO, Samuel et al., NeurIPS 2023): real math at d = 4 x 64 x 64 = 16,384.

The solver works in the span of the seeds; `test_reduced_solve_equals_full_dimensional_*` is the proof
that this loses nothing against optimising every coordinate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rarecli.errors import InputError
from rarecli.seeds import nao, newton
from rarecli.seeds.centroid import centroid, centroid_objective, nao_centroid
from rarecli.seeds.paths import (
    interpolate,
    lerp,
    nao_interpolate,
    nao_path,
    path_nll,
    path_objective,
    slerp,
)
from rarecli.seeds.prior import chi_log_pdf, chi_mode, seed_norms
from rarecli.seeds.span import Span

SHAPE = (4, 64, 64)
D = 4 * 64 * 64
scipy_stats = pytest.importorskip("scipy.stats")


def chi_interval(d: int, mass: float = 0.99) -> tuple[float, float]:
    lo, hi = scipy_stats.chi.ppf([(1 - mass) / 2, (1 + mass) / 2], d)
    return float(lo), float(hi)


def gaussian(seed: int, shape=SHAPE, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def flat_norms(path: torch.Tensor) -> torch.Tensor:
    return seed_norms(path, batch_dims=1)


# --- the prior --------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 256, D, 16 * 128 * 128])
def test_chi_log_pdf_matches_scipy_in_float64(d):
    r = torch.tensor([0.5, math.sqrt(d) - 3, math.sqrt(d), math.sqrt(d) + 2.5], dtype=torch.float32).abs()
    ours = chi_log_pdf(r, d)
    assert ours.dtype == torch.float64
    ref = scipy_stats.chi.logpdf(r.double().numpy(), d)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-9)


# --- the solver's derivatives and linear algebra -------------------------------------------------------


@pytest.mark.parametrize("smooth", [0.0, 1e-2])
def test_analytic_gradient_and_hessian_match_autograd(smooth):
    g = torch.Generator().manual_seed(0)
    points = 8 * torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    eps = torch.tensor([3.0, 9.0], dtype=torch.float64)

    def f(x):
        return nao.path_cost(x, 64, eps, smooth=smooth).sum()

    value, grad, (diag, off) = newton.path_derivatives(points.numpy(), 64, eps.numpy(), smooth=smooth)
    x = points.clone().requires_grad_(True)
    f(x).backward()
    hess = torch.autograd.functional.hessian(f, points)
    dense_ref = torch.stack([hess[i, :, :, i].reshape(18, 18) for i in range(2)]).numpy()
    assert value == pytest.approx(float(f(points)), rel=1e-13)
    np.testing.assert_allclose(grad, x.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(newton.dense_hessian(diag, off), dense_ref, atol=1e-9)


def test_newton_step_with_shared_centroid_matches_dense_solve(monkeypatch):
    """The block elimination + Schur complement solves the same system as a dense solve of the full
    Hessian (autograd) of the centroid objective, and refuses an indefinite one."""
    monkeypatch.setattr(newton, "_DENSE_MAX", 0)  # force the block-tridiagonal path
    rng = np.random.default_rng(0)
    k, dim, n, d = 3, 3, 7, 64
    starts = 8 * rng.standard_normal((k, dim))
    problem = newton._Polylines(starts, None, n, d, np.full(k, 2.0))
    x = np.concatenate([8 * rng.standard_normal(k * (n - 2) * dim), 8 * rng.standard_normal(dim)])
    split = k * (n - 2) * dim

    def f(xt):
        c = xt[split:]
        pts = torch.cat(
            [torch.from_numpy(starts)[:, None], xt[:split].reshape(k, n - 2, dim), c[None, None].expand(k, 1, dim)], 1
        )
        return nao.centroid_cost(pts, c, d, torch.full((k,), 2.0, dtype=torch.float64), smooth=1e-2)

    xt = torch.from_numpy(x)
    hess = torch.autograd.functional.hessian(f, xt).numpy()
    value, g, system = problem.newton_system(x, 1e-2)
    assert value == pytest.approx(float(f(xt)), rel=1e-12)
    np.testing.assert_allclose(g, torch.func.grad(f)(xt).numpy(), atol=1e-9)
    lowest = float(np.linalg.eigvalsh(hess).min())
    mu = abs(lowest) + 10.0
    step = problem.step(g, system, mu)
    np.testing.assert_allclose(step, np.linalg.solve(hess + mu * np.eye(len(x)), -g), atol=1e-10)
    if lowest < 0:
        assert problem.step(g, system, 0.0) is None


# --- the reduction: k coordinates lose nothing -------------------------------------------------------


def _out_of_span(points: torch.Tensor, seeds: torch.Tensor) -> float:
    q, _ = torch.linalg.qr(seeds.T)
    return float(torch.linalg.vector_norm(points - (points @ q) @ q.T, dim=-1).max())


@pytest.mark.parametrize("pair", [0, 1])
def test_reduced_solve_equals_full_dimensional_path(pair):
    """NAO path in 2 coordinates == the same objective optimised over all n x d numbers from a start
    with large components outside span(a, b): same cost, same path, and the full optimum lies in the span."""
    d, n = 64, 12
    g = torch.Generator().manual_seed(pair)
    a, b = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    reduced = nao_path(a, b, n).to(torch.float64)

    start = nao.straight_line(a, b, n)[1:-1] + 0.3 * torch.randn(n - 2, d, generator=g, dtype=torch.float64)
    assert _out_of_span(start, torch.stack([a, b])) > 1.0
    full, info = nao.solve_path(a, b, n, d, init=start)
    assert info.converged

    assert path_objective(reduced) == pytest.approx(info.objective, rel=1e-8)
    assert _out_of_span(full, torch.stack([a, b])) < 1e-5
    scale = float(torch.linalg.vector_norm(a - b))
    even_reduced, _ = nao.resample_arc_length(reduced, 20)
    even_full, _ = nao.resample_arc_length(full, 20)
    assert float(torch.linalg.vector_norm(even_reduced - even_full, dim=-1).max()) < 1e-5 * scale


def test_reduced_solve_equals_full_dimensional_centroid():
    d, n, k = 64, 8, 3
    g = torch.Generator().manual_seed(7)
    seeds = torch.randn(k, d, generator=g, dtype=torch.float64)
    reduced = nao_centroid(list(seeds), n_points=n)
    assert reduced.converged

    c0 = centroid(list(seeds), "spherical")
    start = torch.stack([nao.straight_line(s, c0, n)[1:-1] for s in seeds])
    start = start + 0.3 * torch.randn(start.shape, generator=g, dtype=torch.float64)
    assert _out_of_span(start.reshape(-1, d), seeds) > 1.0
    # c starts where the reduced solve starts it: eps_i = 2 ||s_i - c0|| / n is part of the objective.
    c_full, paths_full, _, info = nao.solve_centroid(seeds, c0, n, d, init=start)
    assert info.converged

    assert reduced.objective == pytest.approx(info.objective, rel=1e-8)
    assert centroid_objective(list(seeds), reduced) == pytest.approx(reduced.objective, rel=1e-10)
    assert float(torch.linalg.vector_norm(reduced.centroid - c_full)) < 1e-5 * float(torch.linalg.vector_norm(c_full))
    assert _out_of_span(paths_full.reshape(-1, d), seeds) < 1e-5


# --- must show: paths ----------------------------------------------------------------------------------


def test_endpoints_are_the_inputs_exactly_and_a_seed_with_itself_is_itself():
    a, b = gaussian(1), gaussian(2)
    for path in (nao_interpolate(a, b, 8), nao_path(a, b), lerp(a, b, torch.linspace(0, 1, 5))):
        assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.equal(slerp(a, b, [0.0, 1.0])[0], a) and torch.equal(slerp(a, b, [0.0, 1.0])[1], b)
    same = nao_interpolate(a, a, 5)
    assert same.shape == (5, *SHAPE)
    assert all(torch.equal(s, a) for s in same)


@pytest.mark.parametrize("pair", [(1, 2), (3, 4)])
def test_nao_path_stays_on_the_chi_shell_where_lerp_does_not(pair):
    a, b = gaussian(pair[0]), gaussian(pair[1])
    lo, hi = chi_interval(D)
    path = nao_interpolate(a, b, 8)
    norms = flat_norms(path)
    assert bool(((norms > lo) & (norms < hi)).all()), (norms, lo, hi)
    # The optimised polyline itself, not only the frames read off it, stays on the shell.
    raw = flat_norms(nao_path(a, b))
    assert bool(((raw > lo) & (raw < hi)).all())

    midpoint = float(flat_norms(lerp(a, b, 0.5)[None])[0])
    assert not lo < midpoint < hi
    assert midpoint == pytest.approx(math.sqrt(D / 2), rel=0.02)

    t = torch.linspace(0, 1, 8)
    nll_nao = float(path_nll(path).mean())
    assert nll_nao < float(path_nll(lerp(a, b, t)).mean())
    assert nll_nao < float(path_nll(slerp(a, b, t)).mean())
    # and NAO's own objective prefers its path to the SLERP arc through the same 50 positions
    assert path_objective(nao_path(a, b)) < path_objective(slerp(a, b, torch.linspace(0, 1, 50)))


def test_nao_frames_are_evenly_spaced_by_arc_length():
    a, b = gaussian(5), gaussian(6)
    path = nao_interpolate(a, b, 9).reshape(9, -1).double()
    steps = torch.linalg.vector_norm(path[1:] - path[:-1], dim=-1)
    assert float(steps.max() / steps.min()) < 1.02


def test_path_from_b_to_a_is_the_path_from_a_to_b_reversed():
    a, b = gaussian(11), gaussian(12)
    forward = nao_interpolate(a, b, 8).double()
    backward = nao_interpolate(b, a, 8).double()
    gap = torch.linalg.vector_norm((forward - backward.flip(0)).reshape(8, -1), dim=-1).max()
    assert float(gap) < 1e-4 * float(torch.linalg.vector_norm(a - b))


def test_opposite_seeds_go_around_the_origin_deterministically():
    a = gaussian(21)
    lo, hi = chi_interval(D)
    p1 = nao_interpolate(a, -a, 6, generator=torch.Generator().manual_seed(0))
    p2 = nao_interpolate(a, -a, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p1, p2)
    norms = flat_norms(p1)
    assert bool(((norms > lo) & (norms < hi)).all()), norms
    assert float(flat_norms(lerp(a, -a, 0.5)[None])[0]) == 0.0


def test_norm_corrected_baselines():
    a, b = gaussian(31), gaussian(32)
    t = torch.linspace(0, 1, 7)
    na, nb = float(torch.linalg.vector_norm(a.double())), float(torch.linalg.vector_norm(b.double()))
    expected = torch.tensor([(1 - x) * na + x * nb for x in t.tolist()], dtype=torch.float64)
    for fn in (lerp, slerp):
        torch.testing.assert_close(flat_norms(fn(a, b, t, rescale="endpoints")), expected, rtol=1e-6, atol=0)
        torch.testing.assert_close(
            flat_norms(fn(a, b, t, rescale="sqrt-d"))[1:-1], torch.full((5,), math.sqrt(D), dtype=torch.float64)
        )
    # SLERP of two seeds of equal norm keeps that norm; it falls back to LERP for (nearly) parallel seeds.
    b_eq = b * (na / nb)
    torch.testing.assert_close(
        flat_norms(slerp(a, b_eq, t)), torch.full((7,), na, dtype=torch.float64), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(slerp(a, 2 * a, t), lerp(a, 2 * a, t))


# --- must show: centroids ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 5])
def test_nao_centroid_is_on_the_shell_while_the_mean_shrinks(k):
    seeds = [gaussian(100 + i) for i in range(k)]
    lo, hi = chi_interval(D)
    result = nao_centroid(seeds)
    assert result.converged
    r = float(flat_norms(result.centroid[None])[0])
    assert lo < r < hi
    mean = float(flat_norms(centroid(seeds, "euclidean")[None])[0])
    assert mean == pytest.approx(math.sqrt(D / k), rel=0.03)
    # The paths NAO-SeedSelect walks: each from its seed (exactly) to the centroid (exactly), on the shell.
    assert len(result.paths) == k
    for seed, path in zip(seeds, result.paths, strict=True):
        assert path.shape == (50, *SHAPE)
        assert torch.equal(path[0], seed) and torch.equal(path[-1], result.centroid)
        norms = flat_norms(path)
        assert bool(((norms > lo) & (norms < hi)).all())
    # It is central: no seed is much nearer to it than another.
    dists = [float(torch.linalg.vector_norm((s - result.centroid).double())) for s in seeds]
    assert max(dists) / min(dists) < 1.1
    # `centroid(method="nao")` is the same point.
    torch.testing.assert_close(centroid(seeds, "nao"), result.centroid)


def test_centroid_does_not_depend_on_the_order_of_the_seeds():
    seeds = [gaussian(200 + i) for i in range(4)]
    c1 = centroid(seeds, "nao").double()
    c2 = centroid(seeds[::-1], "nao").double()
    # The discrete objective has near-equal local optima (differing by ~1e-4 of its value), so the
    # tolerance is a small fraction of the seed-to-centroid distance rather than float precision.
    spread = min(float(torch.linalg.vector_norm(s.double() - c1)) for s in seeds)
    assert float(torch.linalg.vector_norm(c1 - c2)) < 1e-3 * spread


def test_rescaled_and_spherical_means_have_the_mean_norm():
    seeds = [gaussian(300 + i) for i in range(4)]
    target = float(torch.stack([torch.linalg.vector_norm(s.double()) for s in seeds]).mean())
    for method in ("rescaled", "spherical"):
        assert float(flat_norms(centroid(seeds, method)[None])[0]) == pytest.approx(target, rel=1e-6)


# --- shapes, batches, dtypes, determinism, bad input ---------------------------------------------------


def test_batched_equals_one_by_one_and_dtype_device_are_kept():
    a, b, c = gaussian(41, (3, 8, 8)), gaussian(42, (3, 8, 8)), gaussian(43, (3, 8, 8))
    za, zb = torch.stack([a, b]), torch.stack([b, c])
    batched = nao_interpolate(za, zb, 5, batch_dims=1)
    assert batched.shape == (5, 2, 3, 8, 8)
    torch.testing.assert_close(batched[:, 0], nao_interpolate(a, b, 5))
    torch.testing.assert_close(batched[:, 1], nao_interpolate(b, c, 5))
    t = torch.linspace(0, 1, 4)
    torch.testing.assert_close(slerp(za, zb, t, batch_dims=1)[:, 1], slerp(b, c, t))
    assert slerp(za, zb, 0.3, batch_dims=1).shape == (2, 3, 8, 8)

    stacked = torch.stack([torch.stack([a, b, c]), torch.stack([c, a, b])], dim=1)  # (k=3, batch=2, ...)
    cb = centroid(stacked, "nao", batch_dims=1)
    assert cb.shape == (2, 3, 8, 8)
    torch.testing.assert_close(cb[0], centroid([a, b, c], "nao"), rtol=1e-5, atol=1e-5)

    for dtype in (torch.float64, torch.bfloat16):
        out = nao_interpolate(a.to(dtype), b.to(dtype), 4)
        assert out.dtype == dtype and out.device == a.device
    assert nao_centroid([a.double(), b.double(), c.double()]).centroid.dtype == torch.float64


def test_same_input_same_output():
    a, b = gaussian(51), gaussian(52)
    assert torch.equal(nao_interpolate(a, b, 6), nao_interpolate(a, b, 6))
    seeds = [gaussian(60 + i) for i in range(3)]
    assert torch.equal(nao_centroid(seeds).centroid, nao_centroid(seeds).centroid)


def test_sd3_sized_seeds_work():
    a, b = gaussian(71, (16, 128, 128)), gaussian(72, (16, 128, 128))
    path = nao_interpolate(a, b, 3)
    lo, hi = chi_interval(16 * 128 * 128)
    norms = flat_norms(path)
    assert path.shape == (3, 16, 128, 128) and bool(((norms > lo) & (norms < hi)).all())


def test_bad_input_is_a_clear_error():
    a = gaussian(81, (4, 8, 8))
    with pytest.raises(InputError, match="different shapes"):
        nao_interpolate(a, gaussian(82, (4, 8, 9)), 4)
    with pytest.raises(InputError, match="NaN or Inf"):
        lerp(a, a.clone().fill_(float("nan")), 0.5)
    with pytest.raises(InputError, match="NaN or Inf"):
        centroid([a, a.clone().fill_(float("inf"))], "euclidean")
    with pytest.raises(InputError, match="at least two seeds"):
        centroid([a], "nao")
    with pytest.raises(InputError, match="at least 2 steps"):
        nao_interpolate(a, gaussian(83, (4, 8, 8)), 1)
    with pytest.raises(InputError, match="unknown"):
        interpolate(a, a, 4, "bezier")
    with pytest.raises(InputError, match="all zeros"):
        nao_interpolate(a, torch.zeros_like(a), 4)


def test_span_coordinates_reproduce_the_seeds():
    seeds = torch.stack([gaussian(90 + i, (64,), torch.float64) for i in range(3)])
    span = Span.of(seeds)
    assert span.dim == 3
    torch.testing.assert_close(span.to_full(span.coords), seeds, rtol=0, atol=1e-10)
    torch.testing.assert_close(span.coords @ span.coords.T, seeds @ seeds.T, rtol=1e-12, atol=1e-9)
    collinear = Span.of(torch.stack([seeds[0], -2 * seeds[0]]), min_dim=2, generator=torch.Generator().manual_seed(0))
    assert collinear.dim == 2
    assert chi_mode(D) == pytest.approx(math.sqrt(D - 1))
