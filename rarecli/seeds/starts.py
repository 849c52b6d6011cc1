"""Where NAO-SeedSelect's refinements start: the NAO centroid of the references' inverted seeds, and
points on the NAO paths from the centroid towards each of them (pure seed geometry).

NAO: Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for text-to-image
generation", NeurIPS 2023 (arXiv 2306.08687). The authors run a refinement from every point of every
path; `nao_start_points` picks n well-spread ones instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rarecli.errors import InputError
from rarecli.seeds.centroid import nao_centroid

if TYPE_CHECKING:
    import torch


def nao_centroid_and_paths(seeds: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The NAO centroid of `seeds` (k, ...) and the k NAO paths, each as (n, ...) points ordered from
    the seed to the centroid."""
    result = nao_centroid(seeds)
    centroid = result.centroid.reshape(seeds.shape[1:]).float().cpu()
    paths = []
    for path in result.paths:
        p = path.reshape(-1, *seeds.shape[1:]).float().cpu()
        # Orientation is normalised here rather than assumed: seed first, centroid last.
        if (p[0] - centroid).norm() < (p[-1] - centroid).norm():
            p = p.flip(0)
        paths.append(p)
    return centroid, paths


SPREADS = ("half", "whole")


def _van_der_corput(m: int) -> float:
    """0.5, 0.25, 0.75, 0.125, ...: the m-th of a sequence of fractions that fill (0, 1) evenly."""
    x, denom = 0.0, 1.0
    while m:
        denom *= 2
        m, bit = divmod(m, 2)
        x += bit / denom
    return x


def nao_start_points(
    centroid: torch.Tensor, paths: list[torch.Tensor], n: int, names: list[str], spread: str = "half"
) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """Where NAO-SeedSelect's refinements start: image 0 at the centroid; each further image on the
    paths, round-robin over the references, at well-spread arc-length fractions of the way from the
    centroid towards that reference's inverted seed (the nearest path point not used yet; the
    centroid's own end of a path is never reused).

    `spread="half"` keeps to the half nearer the centroid (1/4, 1/8, 3/8, 1/16, ...), since beyond it an
    image drifts towards one reference; `"whole"` spreads over the whole path (1/2, 1/4, 3/4, ...) but
    never starts at a reference's own inverted seed, which would redraw that reference. When those run
    out, the remaining path points are used, nearest to the centroid first; InputError when the paths
    hold fewer than n - 1 points. Image i's start does not depend on n. The authors run a refinement
    from every point of every path; this picks n well-spread ones instead."""
    import torch

    if spread not in SPREADS:
        raise InputError(f"unknown NAO start spread {spread!r}", hint="use one of: " + ", ".join(SPREADS))
    scale = 0.5 if spread == "half" else 1.0
    first_free = 0 if spread == "half" else 1  # "whole": a path's point 0 is the reference's own seed
    starts: list[tuple[torch.Tensor, dict[str, Any]]] = [(centroid, {"kind": "nao-centroid"})]
    from_centroid = []
    for path in paths:
        seg = (path[1:] - path[:-1]).flatten(1).norm(dim=1)
        arc = torch.cat([torch.zeros(1), seg.cumsum(0)])
        from_centroid.append(arc[-1] - arc)
    used: set[tuple[int, int]] = set()

    def add(j: int, p: int, fraction: float) -> None:
        used.add((j, p))
        meta = {"kind": "nao-path", "reference": names[j], "fraction_from_centroid": fraction, "point": p}
        starts.append((paths[j][p], meta))

    # Fractions get finer with m; after a few rounds every free point near the centroid has been offered.
    for m in range(1, 8 * max(len(p) for p in paths) if paths else 1):
        if len(starts) >= n:
            break
        fraction = scale * _van_der_corput(m)
        for j, path in enumerate(paths):
            if len(starts) >= n:
                break
            total = float(from_centroid[j][0])
            p = int((from_centroid[j] - fraction * total).abs().argmin())
            if first_free <= p < len(path) - 1 and (j, p) not in used:
                add(j, p, fraction)
    if len(starts) < n:
        rest = sorted(
            (float(d[p]), j, p)
            for j, d in enumerate(from_centroid)
            for p in range(first_free, len(d) - 1)
            if (j, p) not in used
        )
        for dist, j, p in rest[: n - len(starts)]:
            total = float(from_centroid[j][0])
            add(j, p, dist / total if total > 0 else 0.0)
    if len(starts) < n:
        raise InputError(
            f"nao-seedselect can start at most {len(starts)} images from these {len(paths)} references' paths "
            f"(asked for {n})",
            hint="lower --num-images, or add reference images",
        )
    return starts
