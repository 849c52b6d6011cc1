"""How long `rare --help` and `import rarecli` take, optionally side by side with another revision.

    python benchmarks/perf_startup.py --out out/bench/perf_startup.json [--against REV] [--runs 40]

With `--against REV` the revision is checked out in a temporary git worktree and both trees run the same
commands through this checkout's Python, interleaved (one run of each, in turn), with OMP_NUM_THREADS=1,
and the JSON gives each median and the ratio. Two modes: with bytecode caches (as an installed wheel runs)
and without (PYTHONDONTWRITEBYTECODE=1, every module compiled from source each time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "rare --help": "import sys; sys.argv = ['rare', '--help']; from rarecli.cli.app import main; main()",
    "import rarecli": "import rarecli",
}


def _once(tree: Path, code: str, bytecode: bool) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def measure(trees: dict[str, Path], runs: int) -> dict:
    out: dict = {}
    for bytecode in (True, False):
        mode = "bytecode" if bytecode else "no_bytecode"
        for name, code in COMMANDS.items():
            for tree in trees.values():  # one warm-up each (writes the bytecode caches)
                _once(tree, code, bytecode)
            seconds: dict[str, list[float]] = {label: [] for label in trees}
            for _ in range(runs):
                for label, tree in trees.items():
                    seconds[label].append(_once(tree, code, bytecode))
            row = {label: round(statistics.median(s), 4) for label, s in seconds.items()}
            if "against" in row:
                row["ratio_this_over_against"] = round(row["this"] / row["against"], 3)
            out.setdefault(mode, {})[name] = row
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--against", help="a git revision to measure side by side")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    trees = {"this": REPO}
    scratch = Path(tempfile.mkdtemp(prefix="rare-startup-"))
    try:
        if args.against:
            worktree = scratch / "against"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.against],
                           check=True, capture_output=True)  # fmt: skip
            trees["against"] = worktree
        result = {
            "what": "median wall seconds of a fresh Python process, interleaved runs, OMP_NUM_THREADS=1",
            "runs": args.runs,
            "against": args.against,
            "python": sys.version.split()[0],
            "results": measure(trees, args.runs),
        }
    finally:
        if "against" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["against"])],
                           check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
