"""NAO seed geometry at SD2.1-base size (d = 4 x 64 x 64 = 16,384) on the CPU: our solver in the span of
the seeds versus the authors' full-dimensional recipe on the same objective, timed side by side.

NAO: Samuel et al., "Norm-guided latent space exploration for text-to-image generation", NeurIPS 2023
(arXiv 2306.08687). The authors run Adam (lr 0.01) on every coordinate of every path point, starting on
the chord (and, for a centroid of k >= 3 seeds, at the Euclidean mean), and stop when the loss changed by
less than 1e-3 (paths) / 1e-2 (centroids) for 10 / 5 steps. rarecli.seeds.reference repeats that; both
results are scored with the same float64 objective.

    python benchmarks/perf_geometry.py --out out/bench/perf_geometry.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

SHAPE = (4, 64, 64)


def _timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def _warm_up() -> None:
    """Pay one-time costs (lazy imports, allocator, first BLAS calls) for both methods before timing."""
    import torch

    from rarecli.seeds.centroid import nao_centroid
    from rarecli.seeds.paths import nao_path
    from rarecli.seeds.reference import reference_centroid, reference_path

    g = torch.Generator().manual_seed(99)
    a, b, c = (torch.randn(64, generator=g) for _ in range(3))
    nao_path(a, b, 12)
    nao_centroid([a, b, c], n_points=8)
    reference_path(a, b, 12, max_steps=20)
    reference_centroid(torch.stack([a, b, c]), (a + b + c) / 3, 8, max_steps=20)


def bench_path(n: int, repeats: int, max_steps: int) -> dict:
    import torch

    from rarecli.seeds.noise import noise_from_seed
    from rarecli.seeds.paths import nao_interpolate, nao_path, path_objective
    from rarecli.seeds.reference import reference_path

    a, b = noise_from_seed(0, SHAPE), noise_from_seed(1, SHAPE)
    ours, times = _timed(lambda: nao_path(a, b, n), repeats)
    _, frame_times = _timed(lambda: nao_interpolate(a, b, 8, n_points=n), repeats)
    start = time.perf_counter()
    theirs, info = reference_path(
        a.reshape(-1), b.reshape(-1), n, generator=torch.Generator().manual_seed(0), max_steps=max_steps
    )
    adam_seconds = time.perf_counter() - start
    ours_seconds = statistics.median(times)
    ours_objective, theirs_objective = path_objective(ours), path_objective(theirs)
    return {
        "seeds": [0, 1],
        "n_points": n,
        "ours": {
            "seconds_median": ours_seconds,
            "seconds": times,
            "objective": ours_objective,
            "nao_interpolate_8_frames_seconds_median": statistics.median(frame_times),
        },
        "authors_adam_full_dimensional": {
            "seconds": adam_seconds,
            "objective": theirs_objective,
            "adam_steps": info.iterations,
            "stopped_by_their_rule": info.converged,
            "parameters": (n - 2) * a.numel(),
        },
        "speedup": adam_seconds / ours_seconds,
        "objective_ours_minus_theirs": ours_objective - theirs_objective,
    }


def bench_centroid(k: int, n: int, repeats: int, max_steps: int) -> dict:
    import torch

    from rarecli.seeds.centroid import NaoCentroid, centroid, centroid_objective, nao_centroid
    from rarecli.seeds.nao import default_eps
    from rarecli.seeds.noise import noise_from_seed
    from rarecli.seeds.paths import slerp
    from rarecli.seeds.reference import reference_centroid

    seeds = [noise_from_seed(10 + i, SHAPE) for i in range(k)]
    ours, times = _timed(lambda: nao_centroid(seeds, n_points=n), repeats)
    flat = torch.stack([s.reshape(-1) for s in seeds])
    # Same objective for both: eps_i from our start (the spherical mean); Adam starts where the authors do.
    eps = default_eps(flat.double(), centroid(seeds, "spherical").reshape(1, -1).double(), n)
    # The authors' start: the SLERP midpoint of two seeds, else the Euclidean mean.
    c0 = slerp(flat[0], flat[1], 0.5) if k == 2 else flat.mean(0)
    start = time.perf_counter()
    c, paths, info = reference_centroid(
        flat, c0, n, generator=torch.Generator().manual_seed(0), max_steps=max_steps, eps=eps
    )
    adam_seconds = time.perf_counter() - start
    theirs = NaoCentroid(c.reshape(SHAPE), [p.reshape(n, *SHAPE) for p in paths], info.objective, info.converged)
    ours_seconds = statistics.median(times)
    ours_objective = centroid_objective(seeds, ours)
    theirs_objective = centroid_objective(seeds, theirs)
    norm = lambda t: float(torch.linalg.vector_norm(t.double()))  # noqa: E731
    return {
        "k": k,
        "seeds": [10 + i for i in range(k)],
        "n_points": n,
        "ours": {
            "seconds_median": ours_seconds,
            "seconds": times,
            "objective": ours_objective,
            "centroid_norm": norm(ours.centroid),
            "converged": ours.converged,
        },
        "authors_adam_full_dimensional": {
            "seconds": adam_seconds,
            "objective": theirs_objective,
            "centroid_norm": norm(theirs.centroid),
            "adam_steps": info.iterations,
            "stopped_by_their_rule": info.converged,
            "parameters": k * (n - 2) * flat.shape[1] + flat.shape[1],
        },
        "euclidean_mean_norm": norm(flat.mean(0)),
        "speedup": adam_seconds / ours_seconds,
        "objective_ours_minus_theirs": ours_objective - theirs_objective,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write (replaced if it exists).")
    parser.add_argument("--points", type=int, default=50, help="Polyline points (the paper's 50).")
    parser.add_argument("--k", type=int, default=3, help="Seeds in the centroid benchmark.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats of our solver (median reported).")
    parser.add_argument(
        "--max-steps", type=int, default=10_000, help="Adam step cap (the authors' 10,000); their rule may stop sooner."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for both methods (torch and BLAS). One by default: on a shared machine extra threads "
        "mostly wait for each other (the Adam baseline ran 8x slower with 2 threads on a busy 2-core box).",
    )
    args = parser.parse_args(argv)
    # BLAS reads these when numpy/torch load, which happens below, after this.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    _warm_up()
    started = time.perf_counter()
    report = {
        "benchmark": "perf_geometry",
        "what": "NAO path and centroid at d = 4x64x64 on the CPU: span-reduced Newton (ours) vs the authors' "
        "full-dimensional Adam, same float64 objective, same process, one after the other",
        "shape": list(SHAPE),
        "d": 4 * 64 * 64,
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "interpolation": bench_path(args.points, args.repeats, args.max_steps),
        "centroid": bench_centroid(args.k, args.points, args.repeats, args.max_steps),
    }
    report["total_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from rarecli.io.atomic import write_text_replace

    write_text_replace(args.out, json.dumps(report, indent=2) + "\n")
    for part in ("interpolation", "centroid"):
        r = report[part]
        print(
            f"{part}: ours {r['ours']['seconds_median']:.3f} s (J={r['ours']['objective']:.4f}), "
            f"authors' Adam {r['authors_adam_full_dimensional']['seconds']:.1f} s "
            f"(J={r['authors_adam_full_dimensional']['objective']:.4f}, {r['authors_adam_full_dimensional']['adam_steps']} steps): "
            f"{r['speedup']:.0f}x faster",
            file=sys.stderr,
        )
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
