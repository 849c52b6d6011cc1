"""From a plan to the prompt each denoising step uses (pure functions, no torch).

Rare-to-Frequent (Park et al., ICLR 2025, arXiv 2410.22376): early denoising steps fix the layout, so a
frequent stand-in ("hairy animal") guides them, alternating with the rare prompt ("hairy frog"), and the
rare prompt alone finishes the image. The rule implemented here:

- Prompt chain: concepts sorted by level (lowest first; ties keep the plan's order). Prompt 0 has every
  rare phrase replaced by its stand-in; prompt j restores the j lowest-level concepts; the last prompt is
  the original. A level-0 concept gets stop step 0, so it is restored before step 0: its stand-in is
  never used (the authors' code stalls on such an entry; here it simply drops out).
- Stop steps: each concept's level maps to a step (tables below, at 50 steps, scaled to the step count).
- Step t: let j = number of stop steps <= t. Before the last stop step, even steps use prompt j and odd
  steps the original (alternation period 2); from the last stop step on, the original only. CFG applies
  to whichever prompt is active; whole embeddings are switched, never interpolated.
- An empty plan is the plain prompt at every step.

Level -> stop step at 50 steps: each family's table in `rarecli.backbones.families` (SD3
[0, 5, 10, 20, 30, 40] and SDXL [0, 3, 5, 10, 20, 30], the paper's; SD 1.x/2.x uses SDXL's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rarecli.backbones.families import FAMILIES, R2F_REFERENCE_STEPS, find_family
from rarecli.errors import InputError
from rarecli.llm.schema import Concept, Plan, locate
from rarecli.log import warn
from rarecli.methods.r2f.authors import authors_steps
from rarecli.methods.r2f.options import RULES


def level_stops(family: str) -> tuple[int, ...]:
    """The family's level -> stop-step table at 50 steps; InputError for a family R2F does not support."""
    known = find_family(family)
    if known is None or known.r2f_level_stops is None:
        supported = ", ".join(f.label for f in FAMILIES.values() if f.r2f_level_stops is not None)
        raise InputError(f"R2F supports {supported} pipelines, not {family}")
    return known.r2f_level_stops


def stop_step(level: int, steps: int, family: str) -> int:
    """The step at which a concept of `level` stops being guided by its stand-in.

    The 50-step table is scaled by steps/50 and rounded half up. A level >= 1 keeps at least one step,
    so a short schedule does not silently lose the concept's guidance, and the last step always belongs
    to the rare prompt, as at 50 steps where at least 10 do (50 steps are unaffected by either bound).
    """
    table = level_stops(family)
    if not 0 <= level < len(table):
        raise InputError(f"level {level} is outside 0..{len(table) - 1}")
    if steps < 1:
        raise InputError("steps must be at least 1")
    scaled = (table[level] * steps * 2 + R2F_REFERENCE_STEPS) // (2 * R2F_REFERENCE_STEPS)  # round half up, exact
    if level > 0:
        scaled = max(1, scaled)
    return min(steps - 1, scaled)


def ordered_concepts(plan: Plan) -> list[Concept]:
    """Lowest level first; `sorted` is stable, so ties keep the plan's order."""
    return sorted(plan.concepts, key=lambda c: c.level)


def substitute(prompt: str, concepts: Sequence[Concept], frequent: Sequence[bool]) -> str:
    """`prompt` with each concept whose flag is True replaced by its stand-in."""
    edits = []
    for concept, use in zip(concepts, frequent, strict=True):
        if use:
            where = locate(prompt, concept.rare)
            if where is None:
                raise InputError(f"rare phrase {concept.rare!r} does not occur in the prompt {prompt!r}")
            edits.append((where[0], where[1], concept.frequent))
    out = prompt
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    return out


def prompt_chain(plan: Plan, concepts: Sequence[Concept] | None = None) -> list[str]:
    """Prompt j restores the first j of `concepts` (default: lowest level first); the last one is the
    original prompt."""
    concepts = ordered_concepts(plan) if concepts is None else list(concepts)
    k = len(concepts)
    return [substitute(plan.prompt, concepts, [i >= j for i in range(k)]) for j in range(k)] + [plan.prompt]


def step_indices(stops: Sequence[int], steps: int) -> list[int]:
    """Index into the prompt chain for each step, given ascending stop steps (one per concept)."""
    stops = list(stops)
    if stops != sorted(stops):
        raise ValueError("stop steps must be ascending")
    original = len(stops)
    last = stops[-1] if stops else 0
    out = []
    for t in range(steps):
        if t < last and t % 2 == 0:
            out.append(sum(1 for s in stops if s <= t))
        else:
            out.append(original)
    return out


@dataclass(frozen=True)
class Schedule:
    prompts: tuple[str, ...]  # the chain: most frequent first, the original last
    stops: tuple[int, ...]  # ours: one per concept, ascending; the authors': theirs, ending with the step count
    indices: tuple[int, ...]  # prompt index for each step
    rule: str = "rare"

    def prompt_at(self, step: int) -> str:
        return self.prompts[self.indices[step]]

    def to_json(self) -> dict:
        return {
            "prompts": list(self.prompts),
            "stops": list(self.stops),
            "steps": list(self.indices),
            "rule": self.rule,
        }




def build_schedule(plan: Plan, family: str, steps: int, rule: str = "rare") -> Schedule:
    """The prompt of every step. `rule` "rare" is ours (module docstring); "authors" replays the
    authors' rule with their quirks (`authors.authors_steps`), for the plan's levels in its own order.
    A plan with an explicit chain (an imported authors' plan) uses its prompts as they are."""
    if rule not in RULES:
        raise InputError(f"unknown R2F schedule {rule!r}", hint="use rare (sorted, ours) or authors (theirs)")
    if plan.chain is not None:
        prompts, levels = list(plan.chain.prompts), list(plan.chain.levels)
    elif rule == "authors":
        prompts, levels = prompt_chain(plan, plan.concepts), [c.level for c in plan.concepts]
    else:
        concepts = ordered_concepts(plan)
        stops = [stop_step(c.level, steps, family) for c in concepts]
        return Schedule(tuple(prompt_chain(plan)), tuple(stops), tuple(step_indices(stops, steps)))
    if rule == "authors":
        if steps != R2F_REFERENCE_STEPS:
            warn(
                f"--schedule authors replays the authors' rule, whose level table means {R2F_REFERENCE_STEPS} "
                f"steps (it is not scaled to {steps})"
            )
        stops, indices = authors_steps(levels, len(prompts), steps, level_stops(family))
        return Schedule(tuple(prompts), tuple(stops), tuple(indices), rule)
    # Ours on an explicit chain: the chain's order is its restore order, and the stops are sorted so
    # that every stand-in gets its turn (a one-prompt chain is the rare prompt throughout).
    stops = sorted(stop_step(level, steps, family) for level in levels[: len(prompts) - 1])
    return Schedule(tuple(prompts), tuple(stops), tuple(step_indices(stops, steps)))
