"""Reference images for the tests: rendered by the embedded tiny-sd from fixed seeds.

Tests and benchmarks need a folder of "reference images of a concept" without downloading anything, so
the tiny backbone draws them itself, with plain sampling on the CPU in fp32 at
guidance 1, so NAO-SeedSelect's inversion has something to find. Idempotent: images already there are
kept; nothing is printed on stdout.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from rarecli.methods import registry
from rarecli.methods.output import write_generated
from rarecli.methods.protocol import MethodContext, Request
from rarecli.runtime.device import DeviceManager

SEEDS = (101, 102, 103)
PROMPT = "a hairy frog"


def render_refs(folder: Path, model: str = "tiny-sd", seeds: tuple[int, ...] = SEEDS, steps: int = 4) -> list[Path]:
    folder = Path(folder)
    wanted = [folder / f"ref_{seed}.png" for seed in seeds]
    missing = [(seed, path) for seed, path in zip(seeds, wanted, strict=True) if not path.is_file()]
    if missing:
        context = MethodContext(model, None, DeviceManager("cpu", "fp32"), steps, 1.0, command="demo-refs")
        made = registry.PLAIN.load().prepare(context).generate(Request(PROMPT, [seed for seed, _ in missing]))
        for image, (_, path) in zip(made, missing, strict=True):
            with contextlib.suppress(FileExistsError):  # made meanwhile by another run
                write_generated(image.image, image.provenance, path=path)
    return wanted
