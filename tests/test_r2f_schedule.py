"""The R2F schedule against hand-computed expectations from the paper's rule (Park et al., ICLR 2025).

Rule: concepts sorted by level; stop step per level from the 50-step table, scaled; step t uses the
frequent prompt j = #(stops <= t) on even steps before the last stop, the original prompt otherwise.
"""

from __future__ import annotations

import pytest

from rarecli.errors import InputError
from rarecli.llm.schema import Concept, Plan
from rarecli.methods.r2f.schedule import build_schedule, prompt_chain, step_indices, stop_step


@pytest.mark.parametrize(
    ("family", "table"),
    [
        ("sd3", [0, 5, 10, 20, 30, 40]),
        ("sdxl", [0, 3, 5, 10, 20, 30]),
        ("StableDiffusion3Pipeline", [0, 5, 10, 20, 30, 40]),
    ],
)
def test_stop_steps_at_50_are_the_papers(family, table):
    assert [stop_step(level, 50, family) for level in range(6)] == table


@pytest.mark.parametrize(
    ("level", "steps", "family", "expected"),
    [
        (3, 25, "sd3", 10),  # 20 * 25/50 = 10
        (3, 28, "sd3", 11),  # 11.2 -> 11
        (1, 28, "sd3", 3),  # 2.8 -> 3
        (5, 28, "sd3", 22),  # 22.4 -> 22
        (1, 25, "sdxl", 2),  # 1.5 rounds half up -> 2
        (2, 30, "sdxl", 3),  # 5 * 0.6 = 3
        (1, 4, "sd3", 1),  # 0.4 would be 0: a level >= 1 keeps one step
        (5, 4, "sd3", 3),  # 3.2 -> 3
        (5, 1, "sd3", 0),  # one step: the only step is the rare prompt's
        (0, 50, "sd3", 0),
        (4, 20, "sd", 8),  # SD 1.x/2.x use the SDXL table: 20 * 0.4 = 8
    ],
)
def test_stop_step_scaling(level, steps, family, expected):
    assert stop_step(level, steps, family) == expected


def test_single_concept_alternates_until_its_stop():
    plan = Plan("a hairy frog", (Concept("hairy frog", "hairy dog", 2),))
    s = build_schedule(plan, "StableDiffusion3Pipeline", 50)
    assert s.prompts == ("a hairy dog", "a hairy frog")
    assert s.stops == (10,)
    # steps 0,2,4,6,8 frequent; 1,3,5,7,9 rare; 10.. rare only
    expected = [0, 1] * 5 + [1] * 40
    assert list(s.indices) == expected


def test_two_concepts_restored_lowest_level_first():
    # Plan order is (level 4, level 1); the level-1 concept must be restored first.
    plan = Plan(
        "a glass turtle beside a star-shaped pizza",
        (Concept("glass turtle", "glass vase", 4), Concept("star-shaped pizza", "star-shaped cookie", 1)),
    )
    s = build_schedule(plan, "sd3", 50)
    assert s.prompts == (
        "a glass vase beside a star-shaped cookie",
        "a glass vase beside a star-shaped pizza",
        "a glass turtle beside a star-shaped pizza",
    )
    assert s.stops == (5, 30)
    expected = []
    for t in range(50):
        if t >= 30 or t % 2:
            expected.append(2)
        else:
            expected.append(0 if t < 5 else 1)
    assert list(s.indices) == expected
    assert list(s.indices[:8]) == [0, 2, 0, 2, 0, 2, 1, 2]


def test_hand_written_small_schedule_sdxl():
    plan = Plan(
        "A Hairy frog and a cube melon", (Concept("hairy frog", "hairy dog", 5), Concept("cube melon", "cube box", 2))
    )
    s = build_schedule(plan, "sdxl", 10)
    # sdxl: level 2 -> 5*10/50 = 1, level 5 -> 30*10/50 = 6
    assert s.stops == (1, 6)
    assert s.prompts == ("A hairy dog and a cube box", "A hairy dog and a cube melon", "A Hairy frog and a cube melon")
    assert list(s.indices) == [0, 2, 1, 2, 1, 2, 2, 2, 2, 2]


def test_level_zero_entry_does_not_stall():
    # The authors' code never advances past a 0 stop step; here the level-0 concept is restored at once.
    plan = Plan(
        "a red cat with a furry snake", (Concept("red cat", "red fox", 0), Concept("furry snake", "furry dog", 3))
    )
    s = build_schedule(plan, "sd3", 50)
    assert s.stops == (0, 20)
    assert s.prompts[1] == "a red cat with a furry dog"
    expected = [1 if (t < 20 and t % 2 == 0) else 2 for t in range(50)]
    assert list(s.indices) == expected
    assert 0 not in s.indices  # the prompt with the level-0 stand-in is never used


def test_empty_plan_is_the_plain_prompt():
    s = build_schedule(Plan("a dog on a sofa"), "sdxl", 7)
    assert s.prompts == ("a dog on a sofa",)
    assert s.stops == ()
    assert list(s.indices) == [0] * 7


def test_equal_levels_keep_plan_order():
    plan = Plan(
        "a wooden cat and a wooden owl",
        (Concept("wooden owl", "wooden box", 3), Concept("wooden cat", "wooden chair", 3)),
    )
    chain = prompt_chain(plan)
    assert chain == [
        "a wooden chair and a wooden box",
        "a wooden chair and a wooden owl",
        "a wooden cat and a wooden owl",
    ]


def test_step_indices_needs_ascending_stops():
    with pytest.raises(ValueError):
        step_indices([5, 1], 10)


def test_unknown_family_and_level_are_input_errors():
    with pytest.raises(InputError):
        stop_step(2, 50, "FluxPipeline")
    with pytest.raises(InputError):
        stop_step(6, 50, "sd3")
