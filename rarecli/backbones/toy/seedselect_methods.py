"""Our SeedSelect and NAO-SeedSelect as methods of the toy evaluation (`evaluate.evaluate`).

They run the product's code (`rarecli.methods.seedselect.prepare`, the same path as `rare seedselect`)
in memory: no files are written, and the best seed after every iteration is kept so the report can say
how accuracy grows with iterations from a single run per seed.

What "seed i" means differs, as it does in the CLI: SeedSelect starts from the Gaussian noise of
integer seed i (with the i-th bootstrap resample of the references); NAO-SeedSelect's image i starts
at the i-th of its deterministic start points (image 0 at the NAO centroid of the inverted references,
the others on the NAO paths towards them), so its images share one inversion and differ by start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rarecli.backbones.toy.evaluate import MethodOutput

if TYPE_CHECKING:
    from rarecli.backbones.toy.evaluate import ToyWorld


@dataclass
class SeedSelectMethod:
    """`method` is "seedselect" or "nao-seedselect"; None keeps the CLI's defaults for that method."""

    world: ToyWorld
    method: str = "seedselect"
    inner_steps: int = 20
    iters: int | None = None
    lr: float | None = None
    batch_size: int = 20
    patience: int | None = 8

    def _model_and_clip(self) -> tuple[str, str]:
        from rarecli.backbones.toy import WEIGHTS_DIR

        loaded = self.world.loaded
        if Path(loaded.ref.location).resolve() == (WEIGHTS_DIR / "toy-digits").resolve():
            return "toy-digits", "toy-clip"
        # A world built elsewhere (`build --out DIR`): its own CLIP sits beside the pipeline.
        return loaded.ref.location, str(Path(loaded.ref.location).parent / "toy-clip")

    def run_seeds(self, prompt: str, refs: Path, seeds: Sequence[int]) -> list[MethodOutput]:
        """One image per seed (seeds must be consecutive, as `--seed S --num-images N` makes them)."""
        from rarecli.methods.seedselect import SeedSelectConfig, prepare

        seeds = list(seeds)
        if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
            raise ValueError(f"seeds must be consecutive, got {seeds}")
        model, clip = self._model_and_clip()
        config = SeedSelectConfig(
            prompt=prompt,
            refs=refs,
            method=self.method,
            model=model,
            iters=self.iters,
            lr=self.lr,
            inner_steps=self.inner_steps,
            patience=self.patience,
            clip_model=clip,
            clip_pretrained=None,
            num_images=len(seeds),
            seed=seeds[0],
            # Timing must include the inversion, as a first run on new references pays it.
            inversion_cache=False,
        )
        t0 = time.perf_counter()
        session = prepare(config, self.world.loaded.manager)
        setup = time.perf_counter() - t0
        # Every iteration early on, where the curves move fastest; every 5th after (each mark is a render).
        marks = sorted({*range(min(10, session.iters) + 1), *range(0, session.iters + 1, 5), session.iters})
        outputs: list[MethodOutput] = []
        for start in range(0, len(session.plans), self.batch_size):
            batch = session.plans[start : start + self.batch_size]
            t1 = time.perf_counter()
            out = session.optimise(batch, snapshot_at=marks)
            final = session.render(out.best_seeds)
            seconds = time.perf_counter() - t1
            rendered = {k: session.render(seed) for k, seed in out.snapshots.items()}
            for j, plan in enumerate(batch):
                outputs.append(
                    MethodOutput(
                        final[j],
                        iterations=out.iterations,
                        checkpoints={k: images[j] for k, images in rendered.items()},
                        info={
                            "start": plan.start_meta,
                            "best_iteration": out.best[j].get("iteration"),
                            "initial_loss": out.initial[j]["total"],
                            "best_loss": out.best[j]["total"],
                            # Shared work split evenly: the batch's optimisation and the one-off setup.
                            "seconds": seconds / len(batch) + setup / len(seeds),
                            "setup_seconds": setup,
                            "seconds_per_iteration": out.seconds_per_iteration,
                            "batch_size": len(batch),
                        },
                    )
                )
        return outputs
