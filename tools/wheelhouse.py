"""Gather rare's wheel and the wheels of its dependencies, torch excepted, for an offline GPU machine.

Clusters of this field often have no internet. This folder is what such a machine needs besides its own
CUDA build of torch: rare's wheel plus every dependency at the version this checkout's environment runs
(the versions CI tests), as wheels for the target Python and platform.

    python tools/wheelhouse.py --out wheelhouse                        # Python 3.12, manylinux x86-64
    python tools/wheelhouse.py --out wheelhouse --python-version 3.11 --platform manylinux_2_28_aarch64
    # on the GPU machine, after installing its CUDA torch:
    pip install --no-index --find-links wheelhouse rarecli
    pip install --no-index --no-deps wheelhouse/open_clip_torch-*.whl   # the CLIP vocabulary, without torchvision

`--skip NAME` leaves out packages the target already has (`--skip numpy --skip pillow`); torch and its
CUDA libraries (nvidia-*, triton, cuda-*) are always left out, since the machine's own build is the one
that matches its driver.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALWAYS_SKIPPED = ("torch", "triton", "nvidia-*", "cuda-*")
GLIBC_MINORS = (17, 24, 27, 28, 31, 34, 35)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_args(platforms: list[str]) -> list[str]:
    """pip's --platform flags: each manylinux tag asked for, plus the older glibc tags it implies."""
    out: list[str] = []
    for tag in platforms:
        m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
        tags = [tag]
        if m:
            top, arch = int(m.group(1)), m.group(2)
            tags = [f"manylinux_2_{n}_{arch}" for n in GLIBC_MINORS if n <= top]
            if arch == "x86_64":
                tags += ["manylinux2014_x86_64", "manylinux1_x86_64"]
            elif arch == "aarch64":
                tags += ["manylinux2014_aarch64"]
        for t in tags:
            out += ["--platform", t]
    return out


def environment_pins(python: str) -> dict[str, str]:
    """name -> version of what this environment runs (the versions CI tested)."""
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {canonical(p["name"]): p["version"].split("+")[0] for p in json.loads(listed.stdout)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "wheelhouse")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", action="append", default=None, help="default: manylinux_2_28_x86_64")
    parser.add_argument("--skip", action="append", default=[], help="a package the target already has (glob)")
    parser.add_argument("--extra", action="append", default=[], help="another requirement to add, e.g. ftfy")
    parser.add_argument(
        "--without-deps",
        action="append",
        default=["open_clip_torch"],
        help="a package taken alone, at this environment's version (default: open_clip_torch, whose wheel "
        "carries the CLIP BPE vocabulary rare's tokenizers read; its torchvision is not needed)",
    )
    parser.add_argument("--python", default=sys.executable, help="the environment whose versions are pinned")
    args = parser.parse_args(argv)
    platforms = platform_args(args.platform or ["manylinux_2_28_x86_64"])
    skipped = tuple(canonical(s) for s in (*ALWAYS_SKIPPED, *args.skip))
    args.out.mkdir(parents=True, exist_ok=True)
    pip = [args.python, "-m", "pip", "--disable-pip-version-check"]
    target = ["--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp", *platforms]

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp, str(REPO)], check=True)
        (wheel,) = Path(tmp).glob("rarecli-*.whl")
        pins = environment_pins(args.python)
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(
            "".join(f"{n}=={v}\n" for n, v in pins.items() if n != "rarecli" and not fnmatch_any(n, skipped))
        )
        report = Path(tmp) / "report.json"
        # Resolve the whole set for the target as pip would install it there (nothing is installed).
        subprocess.run(
            [*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
             "--target", str(Path(tmp) / "unused"), "-c", str(constraints), *target, str(wheel), *args.extra],
            check=True,
        )  # fmt: skip
        wanted = []
        for item in json.loads(report.read_text())["install"]:
            name, version = canonical(item["metadata"]["name"]), item["metadata"]["version"]
            if name == "rarecli" or fnmatch_any(name, skipped):
                continue
            wanted.append(f"{name}=={version}")
        wanted += [f"{canonical(n)}=={pins[canonical(n)]}" for n in args.without_deps if canonical(n) in pins]
        subprocess.run([*pip, "download", "-q", "--no-deps", "-d", str(args.out), *target, *wanted], check=True)
        (args.out / wheel.name).write_bytes(wheel.read_bytes())
    names = sorted(p.name for p in args.out.glob("*.whl"))
    print(f"{len(names)} wheels in {args.out} (torch and {', '.join(skipped[1:])} left out)", file=sys.stderr)
    print(args.out)
    return 0


def fnmatch_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


if __name__ == "__main__":
    sys.exit(main())
