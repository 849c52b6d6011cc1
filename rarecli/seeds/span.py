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

if TYPE_CHECKING:
    import torch

# Eigenvalues below this fraction of the largest are treated as zero (float64 Gram of float32 seeds
# is accurate to about 1e-7 relative, so smaller directions are rounding, not geometry).
_RANK_RTOL = 1e-9


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
        while span.dim < min(min_dim, d):
            extra = torch.randn(d, generator=generator, dtype=torch.float64).to(atoms.device)
            atoms = torch.cat([atoms, extra[None]], dim=0)
            span = cls._from_atoms(atoms)
        return span

    @classmethod
    def _from_atoms(cls, atoms: torch.Tensor) -> Span:
        import torch

        gram = (atoms @ atoms.T).cpu()
        lam, u = torch.linalg.eigh(gram)
        top = float(lam.max()) if lam.numel() else 0.0
        keep = lam > _RANK_RTOL * top if top > 0 else torch.zeros_like(lam, dtype=torch.bool)
        lam, u = lam[keep], u[:, keep]
        return cls(atoms=atoms, weights=u / lam.sqrt(), coords=u * lam.sqrt())

    def to_full(self, y: torch.Tensor) -> torch.Tensor:
        """Coordinates (..., r) -> points (..., d) in float64 on the atoms' device."""
        w = (y.to(self.weights) @ self.weights.T).to(self.atoms.device)
        return w @ self.atoms
