"""Reference images for the offline demo: rendered by the embedded tiny-sd from fixed seeds.

`make demo` needs a folder of "reference images of a concept" without downloading anything, so the
tiny backbone draws them itself (guidance 1, so NAO-SeedSelect's inversion has something to find).
Idempotent: images already there are kept; nothing is printed on stdout.

    python -m rarecli.methods.demo_refs out/demo/refs
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rarecli.backbones.families import sampler_label
from rarecli.backbones.loading import latent_shape, load_pipeline
from rarecli.log import info
from rarecli.methods.output import Provenance, settings_text, write_generated
from rarecli.methods.sample import sample
from rarecli.runtime.device import DeviceManager
from rarecli.seeds.noise import noise_from_seed

SEEDS = (101, 102, 103)
PROMPT = "a hairy frog"


def render_refs(folder: Path, model: str = "tiny-sd", seeds: tuple[int, ...] = SEEDS, steps: int = 4) -> list[Path]:

    folder = Path(folder)
    wanted = [folder / f"ref_{seed}.png" for seed in seeds]
    missing = [(seed, path) for seed, path in zip(seeds, wanted, strict=True) if not path.is_file()]
    if missing:
        loaded = load_pipeline(model, DeviceManager("cpu", "fp32"))
        shape = latent_shape(loaded.ref)
        for seed, path in missing:
            image = sample(loaded, PROMPT, noise_from_seed(seed, shape), steps=steps, guidance=1.0)
            settings = settings_text(sampler_label(loaded.pipe.scheduler), steps, 1.0, seed, model)
            provenance = Provenance(
                "demo-refs", prompt=PROMPT, seed=seed, model=loaded.ref.to_meta(), settings=settings
            )
            with contextlib.suppress(FileExistsError):  # made meanwhile by another run
                write_generated(image, provenance, path=path)
    return wanted


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m rarecli.methods.demo_refs FOLDER\n")
        return 2

    paths = render_refs(Path(args[0]))
    info(f"demo references: {len(paths)} images in {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
