"""The authors' R2F plans and step rule (krafton-ai/Rare-to-Frequent), so their published runs can be
replayed (`--plans authors`, `--schedule authors`).

Their plan files (JSON, despite a .txt suffix) map each benchmark prompt to
`{"visual_detail_level": "4" or ["5", "3"], "r2f_prompt": [[p0, p1, ..., original]]}`: a chain of full
sentences, most frequent first and the rare prompt last, and one level per stand-in, in their order.

Their step rule at N steps, for levels l_0..l_{k-1} and a level table T (the family's, unscaled):
stops = [T[l_0], ..., T[l_{k-1}], N], or [0] for a one-prompt chain; a mode counter starts at 0 and,
at each step i, advances while i equals stops[mode] and that stop is not 0; step i uses chain[mode]
when i is even and the chain's last prompt when i is odd. Quirks it keeps, on purpose, for replay:
- descending levels (["5", "3"] -> stops 40, 20, 50): the mode reaches 1 at step 40 and never 2, so the
  last prompt is never used on an even step;
- a level-0 stop stalls the counter at 0: the first stand-in guides every even step;
- the table is not scaled to N: it means what the paper means at 50 steps only.
Our own rule (`schedule.py`) sorts the stops, restores a level-0 concept before step 0 and scales the
table; it is the default for new plans.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rarecli.errors import InputError
from rarecli.io.inputs import loads, read_text
from rarecli.llm.schema import MAX_CHAIN, MAX_LEVEL, Chain, Plan
from rarecli.log import warn
from rarecli.methods.r2f_plus.schema import PlusPlan, from_authors

ALTERNATION = 2  # their `alt_step`: even steps the stand-in, odd steps the rare prompt


def authors_steps(
    levels: Sequence[int], n_prompts: int, steps: int, table: Sequence[int]
) -> tuple[list[int], list[int]]:
    """(stops, prompt index per step) by the authors' rule (module docstring), quirks included."""
    if n_prompts < 1:
        raise InputError("an R2F chain needs at least one prompt")
    for level in levels:
        if not 0 <= level < len(table):
            raise InputError(f"level {level} is outside 0..{len(table) - 1}")
    stops = [0] if n_prompts == 1 else [table[level] for level in levels] + [steps]
    mode, indices = 0, []
    for i in range(steps):
        while mode < len(stops) - 1 and i == stops[mode] and stops[mode] != 0:
            mode += 1
        if mode >= n_prompts:
            raise InputError(f"the plan has {len(levels)} level(s) but only {n_prompts - 1} stand-in prompt(s)")
        indices.append(mode if i % ALTERNATION == 0 else n_prompts - 1)
    return stops, indices


def _levels(value: Any, where: str) -> tuple[int, ...]:
    # Their files hold "4" for one stand-in and ["5", "3"] for several; each entry a digit string.
    items = [value] if isinstance(value, str | int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}.visual_detail_level: expected a level or a list of levels, got {value!r}")
    levels = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit() or not 0 <= int(text) <= MAX_LEVEL:
            raise InputError(f"{where}.visual_detail_level: {item!r} is not a level 0..{MAX_LEVEL}")
        levels.append(int(text))
    return tuple(levels)


def import_plans(text: str, source: str) -> list[Plan]:
    """The plans of an authors'-format file, one per prompt in file order; InputError naming the entry."""
    try:
        data = loads(text, source)
    except ValueError as exc:
        raise InputError(f"{source} is not an authors' R2F plan file (not JSON: {exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{source}: expected a JSON object mapping each prompt to its plan")
    plans = []
    for prompt, entry in data.items():
        where = f"{source}[{prompt!r}]"
        if not isinstance(entry, dict) or "r2f_prompt" not in entry or "visual_detail_level" not in entry:
            raise InputError(f"{where}: expected visual_detail_level and r2f_prompt")
        chains = entry["r2f_prompt"]
        if not (isinstance(chains, list) and len(chains) == 1 and isinstance(chains[0], list) and chains[0]):
            raise InputError(f"{where}.r2f_prompt: expected one non-empty list of prompts")
        chain = chains[0]
        if len(chain) > MAX_CHAIN or not all(isinstance(p, str) and p.strip() for p in chain):
            raise InputError(f"{where}.r2f_prompt: expected 1 to {MAX_CHAIN} non-empty prompts")
        name = " ".join(str(prompt).split())
        plan = {
            "schema": "rare.r2f.plan",
            "version": 2,
            "prompt": name,
            "concepts": [],
            "chain": Chain(tuple(chain), _levels(entry["visual_detail_level"], where), source).to_json(),
        }
        plans.append(Plan.from_json(plan, where))  # the plan schema's own checks
    return plans


def is_plus_file(text: str, source: str) -> bool:
    """Whether an authors' plan file holds R2F+ plans (test/r2fplus_prompt/: base prompt and objects)."""
    try:
        data = loads(text, source)
    except ValueError:
        return False
    first = next(iter(data.values()), None) if isinstance(data, dict) else None
    return isinstance(first, dict) and "base_prompt" in first and "objects" in first


def import_plus_plans(text: str, source: str) -> tuple[list[PlusPlan], dict[str, str]]:
    """The R2F+ plans of an authors'-format file in file order, and the prompts our checks refuse, each
    with the reason (their validator accepts a box of zero width or height; ours does not)."""
    try:
        data = loads(text, source)
    except ValueError as exc:
        raise InputError(f"{source} is not an authors' R2F+ plan file (not JSON: {exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{source}: expected a JSON object mapping each prompt to its R2F+ plan")
    plans: list[PlusPlan] = []
    refused: dict[str, str] = {}
    for prompt, entry in data.items():
        name = " ".join(str(prompt).split())
        try:
            plans.append(from_authors(name, entry))
        except InputError as exc:
            refused[name] = exc.message
    return plans, refused


def import_file(path: Path) -> Iterator[Plan | PlusPlan]:
    """Every plan in one of the authors' plan files (`rare r2f plan --import`), of whichever kind it holds;
    an R2F+ plan our checks refuse is named in a warning, not dropped silently (the rest stay usable)."""
    text = read_text(path, "plan file")
    if not is_plus_file(text, str(path)):
        yield from import_plans(text, str(path))
        return
    plans, refused = import_plus_plans(text, str(path))
    yield from plans
    for prompt, reason in refused.items():
        warn(f"not imported: {prompt!r}: {reason}")
