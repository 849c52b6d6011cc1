"""The product's methods as methods of the toy evaluation (`evaluate.evaluate`).

- Plain sampling: the pipeline's own DDIM loop from each seed's noise, batched over seeds.
- SeedSelect / NAO-SeedSelect: the code `rare seedselect` runs (`rarecli.methods.seedselect.prepare`),
  in memory: no files are written, and the best seed after chosen iterations is kept so the report can
  say how accuracy grows with iterations from a single run per seed. What "seed i" means differs, as it
  does in the CLI: SeedSelect starts from the Gaussian noise of integer seed i (with the i-th bootstrap
  resample of the references); NAO-SeedSelect's image i starts at the i-th of its deterministic start
  points (image 0 at the NAO centroid of the inverted references, the others on the NAO paths towards
  them), so its images share one inversion and differ by start.
- R2F: a rare digit's prompt guided early by a frequent, similar digit's prompt. R2F (Park et al., ICLR
  2025) asks an LLM which frequent concept resembles the rare one; here the knowledge comes from the toy
  world's own "web model", toy-clip, trained on the balanced set: the stand-in is the frequent digit
  whose prompt's text embedding is nearest to the rare prompt's. Neither the generator nor the judge is
  consulted, so the stand-in is not tuned to the test. The sampling is the product's
  (`rarecli.methods.r2f`): the same schedule and pipeline callback as `rare r2f generate`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rarecli.backbones.clip import load_clip
from rarecli.backbones.loading import LoadedPipeline, latent_shape
from rarecli.llm.schema import Concept, Plan
from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f
from rarecli.methods.r2f.schedule import build_schedule
from rarecli.methods.seedselect import SeedSelectConfig, prepare
from rarecli.seeds.noise import noise_from_seed
from rarecli.toyworld import DIGIT_WORDS, WEIGHTS_DIR, digit_of_prompt, prompt_for
from rarecli.toyworld.types import MethodOutput

if TYPE_CHECKING:
    from PIL import Image

    from rarecli.toyworld.world import ToyWorld


class PlainSampling:
    """The baseline: DDIM from the seed's noise with classifier-free guidance; batched over seeds."""

    needs_refs = False

    def __init__(self, loaded: LoadedPipeline, steps: int = 20, guidance: float = 7.5) -> None:
        self.loaded, self.steps, self.guidance = loaded, steps, guidance

    def batch(self, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        import torch

        shape = latent_shape(self.loaded.ref)
        latents = torch.stack([noise_from_seed(s, shape) for s in seeds])
        pipe, manager = self.loaded.pipe, self.loaded.manager
        f = pipe.vae_scale_factor
        with torch.inference_mode():
            return pipe(
                prompt=[prompt] * len(seeds),
                latents=latents.to(manager.device, manager.torch_dtype),
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                height=shape[-2] * f,
                width=shape[-1] * f,
                output_type="pil",
            ).images

    def __call__(self, prompt: str, refs: Sequence[Image.Image], seed: int) -> Image.Image:
        return self.batch(prompt, [seed])[0]


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

        loaded = self.world.loaded
        if Path(loaded.ref.location).resolve() == (WEIGHTS_DIR / "toy-digits").resolve():
            return "toy-digits", "toy-clip"
        # A world built elsewhere (`build --out DIR`): its own CLIP sits beside the pipeline.
        return loaded.ref.location, str(Path(loaded.ref.location).parent / "toy-clip")

    def run_seeds(self, prompt: str, refs: Path, seeds: Sequence[int]) -> list[MethodOutput]:
        """One image per seed (seeds must be consecutive, as `--seed S --num-images N` makes them)."""

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


def clip_stand_ins(world: ToyWorld, clip_model: str = "toy-clip") -> dict[int, int]:
    """rare digit -> the frequent digit whose prompt toy-clip embeds nearest (cosine) to the rare one's."""
    import torch

    clip = load_clip(clip_model, world.loaded.manager)
    with torch.inference_mode():
        text = torch.nn.functional.normalize(clip.encode_text([prompt_for(d) for d in range(10)]).float(), dim=-1)
    sim = (text @ text.T).cpu()
    return {r: max(world.frequent, key=lambda f: float(sim[r, f])) for r in world.rare}


@dataclass
class R2FMethod:
    """R2F at one visual-detail `level` (0..5) with fixed stand-ins; guidance and steps as plain sampling."""

    world: ToyWorld
    level: int
    stand_in: dict[int, int]
    steps: int = 20
    guidance: float = 7.5
    schedules: dict[str, list[str]] = field(default_factory=dict)  # prompt -> the prompt used at each step

    def run_seeds(self, prompt: str, refs: Path | None, seeds: Sequence[int]) -> list[Image.Image]:

        digit = digit_of_prompt(prompt)
        if digit is None or digit not in self.stand_in:
            raise ValueError(f"no stand-in for {prompt!r}")
        loaded = self.world.loaded
        plan = Plan(prompt, (Concept(DIGIT_WORDS[digit], DIGIT_WORDS[self.stand_in[digit]], self.level),))
        schedule = build_schedule(plan, loaded.family, self.steps)
        self.schedules[prompt] = [schedule.prompt_at(i) for i in range(self.steps)]
        conds = encode_schedule(loaded, schedule, self.guidance)
        shape = latent_shape(loaded.ref)
        return [sample_r2f(loaded, schedule, conds, noise_from_seed(s, shape), self.guidance) for s in seeds]
