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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rarecli.backbones.clip import load_clip
from rarecli.backbones.loading import LoadedPipeline
from rarecli.llm.schema import Concept, Plan
from rarecli.methods import registry
from rarecli.methods.driver import Driver
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.seedselect.config import DEFAULTS
from rarecli.toyworld import DIGIT_WORDS, WEIGHTS_DIR, digit_of_prompt, prompt_for
from rarecli.toyworld.types import MethodOutput

if TYPE_CHECKING:
    from PIL import Image

    from rarecli.toyworld.world import ToyWorld

COMMAND = "toy evaluation"


def _generate(
    method: str, loaded: LoadedPipeline, request: Request, steps: int, guidance: float | None, options: dict
) -> list[Generated]:
    """Every image of `request`, in memory, from the registered `method` on the world's pipeline."""
    context = MethodContext(loaded.ref.name, None, loaded.manager, steps, guidance, options, command=COMMAND)
    return [drawn.made for drawn in Driver.prepare(registry.get(method), context).run(request)]


class ToyPlainSampling:
    """The baseline: DDIM from the seed's noise with classifier-free guidance; all seeds in one batch."""

    needs_refs = False

    def __init__(self, loaded: LoadedPipeline, steps: int = 20, guidance: float = 7.5) -> None:
        self.loaded, self.steps, self.guidance = loaded, steps, guidance

    def batch(self, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        request = Request(prompt, list(seeds))
        made = _generate(registry.PLAIN.name, self.loaded, request, self.steps, self.guidance, {"batch_size": len(seeds)})
        return [m.image for m in made]

    def __call__(self, prompt: str, refs: Sequence[Image.Image], seed: int) -> Image.Image:
        return self.batch(prompt, [seed])[0]


@dataclass
class SeedSelectMethod:
    """`method` is SeedSelect or NAO-SeedSelect (a registry name); None keeps the CLI's defaults for it."""

    world: ToyWorld
    method: str = registry.SEEDSELECT.name
    inner_steps: int = 20
    iters: int | None = None
    lr: float | None = None
    batch_size: int = 20
    patience: int | None = 8

    def _clip(self) -> str:
        location = Path(self.world.loaded.ref.location)
        if location.resolve() == (WEIGHTS_DIR / "toy-digits").resolve():
            return "toy-clip"
        # A world built elsewhere (`build --out DIR`): its own CLIP sits beside the pipeline.
        return str(location.parent / "toy-clip")

    def run_seeds(self, prompt: str, refs: Path, seeds: Sequence[int]) -> list[MethodOutput]:
        """One image per seed (seeds must be consecutive, as `--seed S --num-images N` makes them)."""
        seeds = list(seeds)
        iters = self.iters or DEFAULTS[self.method][0]
        # Every iteration early on, where the curves move fastest; every 5th after (each mark is a render).
        marks = sorted({*range(min(10, iters) + 1), *range(0, iters + 1, 5), iters})
        options = {
            "iters": self.iters,
            "lr": self.lr,
            "patience": self.patience,
            "clip_model": self._clip(),
            "clip_pretrained": None,
            "batch_size": self.batch_size,
        }
        if self.method == registry.NAO_SEEDSELECT.name:  # timing must include the inversion, as a first run pays it
            options["inversion_cache"] = False
        request = Request(prompt, seeds, refs=refs, snapshots=marks)
        made = _generate(self.method, self.world.loaded, request, self.inner_steps, None, options)
        outputs = []
        for m in made:
            extra, record = m.provenance.extra, m.run_record
            batch = record["batch"]
            outputs.append(
                MethodOutput(
                    m.image,
                    iterations=extra["iterations"],
                    checkpoints=m.checkpoints,
                    info={
                        "start": extra["start"],
                        "best_iteration": extra["loss"].get("iteration"),
                        "initial_loss": extra["initial_loss"]["total"],
                        "best_loss": extra["loss"]["total"],
                        # Shared work split evenly: the batch's optimisation and the one-off setup.
                        "seconds": batch["seconds"] / batch["size"] + record["setup_seconds"] / len(seeds),
                        "setup_seconds": record["setup_seconds"],
                        "seconds_per_iteration": record["seconds_per_iteration"],
                        "batch_size": batch["size"],
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
        plan = Plan(prompt, (Concept(DIGIT_WORDS[digit], DIGIT_WORDS[self.stand_in[digit]], self.level),))
        made = _generate(
            registry.R2F.name, self.world.loaded, Request(prompt, list(seeds), plan=plan), self.steps, self.guidance, {}
        )
        schedule = made[0].provenance.extra["schedule"]
        self.schedules[prompt] = [schedule["prompts"][i] for i in schedule["steps"]]
        return [m.image for m in made]
