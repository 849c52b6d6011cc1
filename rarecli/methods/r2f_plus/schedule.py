"""R2F+'s per-object alternation: at each step, which phrase each `#N` slot of a template receives.

Every object has its own stand-ins (general -> specific) with non-decreasing detail levels; a level maps
to the step where that stand-in stops guiding (the family's R2F table, scaled to the step count as for
plain R2F). At step i, with k the number of the object's stand-ins whose stop step is <= i, the slot
gets stand-in k on even steps while k is below the number of stand-ins, and the rare phrase otherwise.
So level 0 never guides, and levels (1, 2) on SD3 at 50 steps give stand-in 0 on even steps before 5,
stand-in 1 on even steps 5..9, and the rare phrase from then on. The same rule fills the base prompt
(every slot) and each object's own prompt (its one slot); slots are filled left to right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rarecli.methods.r2f.schedule import stop_step
from rarecli.methods.r2f_plus.schema import SLOT, PlusObject, PlusPlan

ALTERNATE_EVERY = 2  # stand-ins guide on steps i % 2 == 0 before their stop, the rare phrase in between


def object_stops(obj: PlusObject, steps: int, family: str) -> tuple[int, ...]:
    """The stop step of each of the object's stand-ins."""
    return tuple(stop_step(level, steps, family) for level in obj.levels)


def slot_phrase(obj: PlusObject, step: int, stops: tuple[int, ...]) -> str:
    """The phrase the object's slot receives at `step`."""
    expired = sum(step >= s for s in stops)
    if expired < len(obj.frequent) and step % ALTERNATE_EVERY == 0:
        return obj.frequent[expired]
    return obj.phrase


def fill(
    template: str, objects: Mapping[str, PlusObject], step: int, stops: Mapping[str, tuple[int, ...]]
) -> tuple[str, dict[str, str]]:
    """`template` with each slot replaced by its phrase at `step`, and the phrase each slot received."""
    received: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        key = match.group(0)
        received[key] = slot_phrase(objects[key], step, stops[key])
        return received[key]

    return SLOT.sub(replace, template), received


def plan_schedule(plan: PlusPlan, steps: int, family: str) -> dict[str, list[dict[str, str]]]:
    """For the base prompt and each object's prompt, per step, the phrase each of its slots receives."""
    objects = {o.key: o for o in plan.objects}
    stops = {o.key: object_stops(o, steps, family) for o in plan.objects}
    templates = {"base": plan.base_prompt, **{o.key: o.prompt for o in plan.objects}}
    return {name: [fill(text, objects, i, stops)[1] for i in range(steps)] for name, text in templates.items()}
