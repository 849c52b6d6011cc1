"""NAO the authors' way: Adam on every coordinate of every path point, for tests and benchmarks.

Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image generation",
NeurIPS 2023 (arXiv 2306.08687). Their published implementation optimises all n x d numbers of the
polyline (48 x 16,384 for SD2.1-base) with Adam at lr 0.01, starting on the chord plus tiny noise, and
stops when the loss changed by less than 1e-3 (paths) or 1e-2 (centroids) for 10 (5) steps in a row.
This module repeats that recipe on the same objective as rarecli/seeds/nao.py (with the log-density
in float64, which their code does in float32), so that benchmarks/perf_geometry.py can time both side by
side. Nothing in the CLI uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rarecli.seeds.nao import SolveInfo, centroid_cost, default_eps, path_cost, straight_line

if TYPE_CHECKING:
    import torch


def _noise(shape: tuple[int, ...], scale: float, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    return scale * torch.randn(shape, generator=generator, dtype=torch.float64)


def _adam(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], lr: float, tol: float, window: int, max_steps: int
) -> SolveInfo:
    """Adam with the authors' absolute stopping rule: |loss change| < tol for `window` steps in a row."""
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    prev: float | None = None
    calm, steps, converged = 0, 0, False
    while steps < max_steps:
        steps += 1
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        cur = float(loss.detach())
        if prev is not None and abs(prev - cur) < tol:
            calm += 1
            if calm >= window:
                converged = True
                break
        else:
            calm = 0
        prev = cur
    with torch.no_grad():
        final = float(loss_fn())
    return SolveInfo(objective=final, iterations=steps, converged=converged)


def reference_path(
    a: torch.Tensor,
    b: torch.Tensor,
    n: int = 50,
    generator: torch.Generator | None = None,
    lr: float = 0.01,
    tol: float = 1e-3,
    window: int = 10,
    max_steps: int = 10_000,
) -> tuple[torch.Tensor, SolveInfo]:
    """NAO path by Adam on all n x d numbers (a, b: flat seeds (d,)); returns ((n, d) path, info)."""
    import torch

    d = a.numel()
    eps = default_eps(a, b, n)
    line = straight_line(a, b, n)[1:-1]
    noise = _noise(tuple(line.shape), 1e-4 * float(torch.linalg.vector_norm((a - b).double())) / n, generator)
    free = (line + noise.to(line.dtype)).clone().requires_grad_(True)

    def loss() -> torch.Tensor:
        return path_cost(torch.cat([a[None], free, b[None]]), d, eps)

    info = _adam(loss, [free], lr, tol, window, max_steps)
    with torch.no_grad():
        return torch.cat([a[None], free, b[None]]), info


def reference_centroid(
    seeds: torch.Tensor,
    c0: torch.Tensor,
    n: int = 50,
    generator: torch.Generator | None = None,
    lr: float = 0.01,
    tol: float = 1e-2,
    window: int = 5,
    max_steps: int = 10_000,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, SolveInfo]:
    """NAO centroid by Adam on the centroid and every path point (seeds: (k, d) flat; the authors start
    c0 at the SLERP midpoint for two seeds, else the Euclidean mean). `eps` (k,) overrides
    2 ||s_i - c0|| / n, so that a different start can optimise the very same objective as
    rarecli.seeds.nao.solve_centroid. Returns (centroid, paths, info)."""
    import torch

    k, d = seeds.shape
    eps = default_eps(seeds, c0[None].expand_as(seeds), n) if eps is None else eps
    lines = torch.stack([straight_line(seeds[i], c0, n)[1:-1] for i in range(k)])
    spread = float(torch.linalg.vector_norm((seeds - c0[None]).double(), dim=-1).mean())
    free = (lines + _noise(tuple(lines.shape), 1e-4 * spread / n, generator).to(lines.dtype)).requires_grad_(True)
    c = c0.clone().requires_grad_(True)

    def assemble() -> torch.Tensor:
        return torch.cat([seeds[:, None], free, c[None, None].expand(k, 1, -1)], dim=1)

    def loss() -> torch.Tensor:
        return centroid_cost(assemble(), c, d, eps)

    info = _adam(loss, [free, c], lr, tol, window, max_steps)
    with torch.no_grad():
        return c.detach().clone(), assemble(), info
