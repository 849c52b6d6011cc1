"""Orthonormal coordinates for the span of a few seeds, from their Gram matrix (float64).

NAO's objectives (Samuel et al., NeurIPS 2023, arXiv 2306.08687) depend on the points only through
norms and pairwise distances, i.e. through inner products. So every problem whose fixed points are k
seeds can be solved in k coordinates and mapped back (see rarecli/seeds/nao.py for why the optimum lies
in that span). This module is that change of variables:

    G = A A^T = U diag(lam) U^T        (A: the m seeds as rows, m x d)
    coords of seed i   = row i of U_r diag(sqrt(lam_r))
    basis vector j     = sum_i U_ij a_i / sqrt(lam_j)      (orthonormal in R^d)

Only the m x m Gram matrix and one (points x m) @ (m x d) product touch the full dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rarecli.errors import InputError

if TYPE_CHECKING:
    import torch

# Eigenvalues of the unit atoms' Gram below this fraction of the largest are treated as zero (a float64
# Gram of float32 seeds is accurate to about 1e-7 relative, so smaller directions are rounding, not
# geometry). The rank is decided on unit-length atoms: the span does not depend on the atoms' scales,
# and seeds whose norms differ by 1e7 would otherwise lose the small one to the tolerance.
_RANK_RTOL = 1e-9
# Random directions tried when widening a span; each one is orthogonal to the span, so one suffices
# unless the space is exhausted.
_MAX_TRIES = 8


def work_device(t: torch.Tensor) -> torch.device:
    """Where float64 work on `t` can run: its own device, except MPS (no float64) -> CPU."""
    import torch

    return torch.device("cpu") if t.device.type == "mps" else t.device


@dataclass
class Span:
    atoms: torch.Tensor  # (m, d) float64: the seeds (plus any directions added to reach min_dim)
    weights: torch.Tensor  # (m, r) float64, CPU: basis vector j = sum_i weights[i, j] * atoms[i]
    coords: torch.Tensor  # (m, r) float64, CPU: coordinates of each atom in that basis

    @property
    def dim(self) -> int:
        return int(self.coords.shape[1])

    @classmethod
    def of(cls, vectors: torch.Tensor, min_dim: int = 1, generator: torch.Generator | None = None) -> Span:
        """The span of the rows of `vectors` (k, d), widened with random directions to `min_dim`.

        A random extra direction matters when the seeds are collinear: the best path from z to -z goes
        around the origin, which needs a second dimension the two seeds alone do not span.
        """
        import torch

        atoms = vectors.to(work_device(vectors), torch.float64)
        d = atoms.shape[1]
        span = cls._from_atoms(atoms)
        target = min(min_dim, d)
        scale = float(torch.linalg.vector_norm(atoms, dim=-1).max()) or 1.0
        for _ in range(_MAX_TRIES * max(1, target - span.dim)):
            if span.dim >= target:
                break
            extra = torch.randn(d, generator=generator, dtype=torch.float64).to(atoms.device)
            if span.dim:  # orthogonal to the span, at the atoms' scale, so the tolerance cannot drop it
                basis = span.to_full(torch.eye(span.dim, dtype=torch.float64))
                extra = extra - (basis @ extra) @ basis
            norm = float(torch.linalg.vector_norm(extra))
            if norm > 0:
                atoms = torch.cat([atoms, (extra * scale / norm)[None]], dim=0)
                span = cls._from_atoms(atoms)
        if span.dim < target:
            raise InputError(f"cannot find {target} independent directions for these seeds (found {span.dim})")
        return span

    @classmethod
    def _from_atoms(cls, atoms: torch.Tensor) -> Span:
        import torch

        norms = torch.linalg.vector_norm(atoms, dim=-1).cpu()
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        units = atoms / safe.to(atoms.device)[:, None]
        gram = (units @ units.T).cpu()
        lam, u = torch.linalg.eigh(gram)
        top = float(lam.max()) if lam.numel() else 0.0
        keep = lam > _RANK_RTOL * top if top > 0 else torch.zeros_like(lam, dtype=torch.bool)
        lam, u = lam[keep], u[:, keep]
        # Basis vector j = sum_i u_ij unit_i / sqrt(lam_j) = sum_i (u_ij / (|a_i| sqrt(lam_j))) a_i; atom i's
        # coordinates are |a_i| times its unit vector's.
        weights = u / lam.sqrt() / safe[:, None]
        coords = u * lam.sqrt() * norms[:, None]
        return cls(atoms=atoms, weights=weights, coords=coords)

    def to_full(self, y: torch.Tensor) -> torch.Tensor:
        """Coordinates (..., r) -> points (..., d) in float64 on the atoms' device."""
        w = (y.to(self.weights) @ self.weights.T).to(self.atoms.device)
        return w @ self.atoms
