"""A toy Rare-to-Frequent check: a rare digit's prompt guided early by a frequent, similar digit's prompt.

R2F (Park et al., ICLR 2025) asks an LLM which frequent concept resembles the rare one. Here the
knowledge comes from the toy world's own "web model": toy-clip, trained on the balanced set. For each
rare digit the stand-in is the frequent digit whose prompt's toy-clip text embedding is nearest to the
rare prompt's. Neither the generator nor the judge is consulted, so the stand-in is not tuned to the
test. The sampling itself is the product's (`rarecli.methods.r2f`): the same schedule (a level's stop
step, alternating prompts before it) and the same pipeline callback as `rare r2f generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rarecli.backbones.toy import DIGIT_WORDS, digit_of_prompt, prompt_for

if TYPE_CHECKING:
    from PIL import Image

    from rarecli.backbones.toy.evaluate import ToyWorld


def clip_stand_ins(world: ToyWorld, clip_model: str = "toy-clip") -> dict[int, int]:
    """rare digit -> the frequent digit whose prompt toy-clip embeds nearest (cosine) to the rare one's."""
    import torch

    from rarecli.backbones.clip import load_clip

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
        from rarecli.backbones.loading import latent_shape
        from rarecli.llm.schema import Concept, Plan
        from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f
        from rarecli.methods.r2f.schedule import build_schedule
        from rarecli.seeds.noise import noise_from_seed

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
