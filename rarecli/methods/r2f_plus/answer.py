"""What an LLM answers when it plans R2F+ (region-guided Rare-to-Frequent), and how it becomes a plan.

The answer lists the prompt's objects in order: the words of the prompt naming each one, a prompt for
the object alone that holds its slot (`#1` for the first object, `#2` for the second, ...), its
frequent stand-ins from general to specific with a detail level each, and its box. The base prompt is
not asked for: it is the prompt with each object's words replaced by its slot, derived here, so every
slot is in it exactly once by construction. (The authors let the LLM write it; an LLM that rewrites
the prompt there also drops details. Counted instances, "three cats", stay one object here.)

For a local model the grammar makes most of the checks hold while decoding: each object's words are a
span of the prompt, its prompt holds exactly its own slot, levels never decrease, at most two
stand-ins, box corners on a 1/20 grid with x_min < x_max and y_min < y_max. What the grammar does not
say (overlapping objects; everything for an API model, which gets the JSON schema only) is repaired
where that is mechanical and refused otherwise, and the finished plan goes through the same checks as
a hand-written one (`schema`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rarecli.errors import InputError
from rarecli.llm.answers import InvalidAnswer, extract_json, strip_controls
from rarecli.llm.grammar import gbnf_literal
from rarecli.llm.protocol import Constraint, PlanKind
from rarecli.llm.schema import MAX_PHRASE_CHARS, NO_CONTROL, LLMRecord, locate, prompt_spans, validate
from rarecli.methods.r2f_plus.options import R2F_PLUS as R2F_PLUS_NAME
from rarecli.methods.r2f_plus.schema import MAX_LEVEL, SCHEMA_ID, SCHEMA_VERSION, SLOT, PlusPlan

TEMPLATE_NAME = "r2fplus_plan"
MAX_OBJECTS = 5  # RareBench's complex prompts have up to five
MAX_STAND_INS = 2  # "usually one is enough" (the authors' template); 12 of their 116 plans use two
MAX_CONTEXT_CHARS = 32  # scene words on each side of the slot in an object's prompt
MAX_STAND_IN_CHARS = 40
GRID = 20  # a local model's box corners are multiples of 1/GRID
# A byte-level model spends a token per character: the longest answer the grammar admits is ~1,900.
MAX_TOKENS = 2048


def answer_schema(spans: list[str] | None = None) -> dict[str, Any]:
    """The JSON schema of an answer; with `spans`, an object's words must be one of them."""
    text = {"type": "string", "minLength": 1, "maxLength": MAX_STAND_IN_CHARS, "pattern": NO_CONTROL}
    phrase: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS, "pattern": NO_CONTROL}
    if spans:
        phrase = {"type": "string", "enum": list(spans)}
    stand_in = {
        "type": "object",
        "properties": {"phrase": text, "level": {"type": "integer", "minimum": 1, "maximum": MAX_LEVEL}},
        "required": ["phrase", "level"],
        "additionalProperties": False,
    }
    coordinate = {"type": "number", "minimum": 0, "maximum": 1}
    obj = {
        "type": "object",
        "properties": {
            "phrase": phrase,
            "prompt": {"type": "string", "minLength": 2, "maxLength": 2 * MAX_CONTEXT_CHARS + 4, "pattern": NO_CONTROL},
            "frequent": {"type": "array", "maxItems": MAX_STAND_INS, "items": stand_in},
            "box": {"type": "array", "minItems": 4, "maxItems": 4, "items": coordinate},
        },
        "required": ["phrase", "prompt", "frequent", "box"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"objects": {"type": "array", "minItems": 1, "maxItems": MAX_OBJECTS, "items": obj}},
        "required": ["objects"],
        "additionalProperties": False,
    }


def _key(name: str) -> str:
    return gbnf_literal(json.dumps(name))


def answer_grammar(spans: list[str] | None = None) -> str:
    """GBNF for an answer: what `answer_schema` says, plus what a JSON schema cannot (see the module)."""
    rules: dict[str, str] = {}
    field = '{key} ws ":" ws {value}'
    if spans:
        rules["phrase"] = " | ".join(gbnf_literal(json.dumps(s, ensure_ascii=False)) for s in spans)
    else:
        rules["phrase"] = f'"\\"" first char{{0,{MAX_PHRASE_CHARS - 1}}} "\\""'
    rules["text"] = f'"\\"" first char{{0,{MAX_STAND_IN_CHARS - 1}}} "\\""'
    for level in range(1, MAX_LEVEL + 1):
        one = (
            field.format(key=_key("phrase"), value="text")
            + ' ws "," ws '
            + field.format(key=_key("level"), value="{levels}")
        )
        rules[f"stand-{level}"] = '"{" ws ' + one.format(levels=f'"{level}"') + ' ws "}"'
        at_least = " | ".join(f'"{v}"' for v in range(level, MAX_LEVEL + 1))
        rules[f"stand-ge-{level}"] = '"{" ws ' + one.format(levels=f"( {at_least} )") + ' ws "}"'
    pairs = " | ".join(f'stand-{lv} ws "," ws stand-ge-{lv}' for lv in range(1, MAX_LEVEL + 1))
    rules["stand-ins"] = f'"[" ws "]" | "[" ws stand-ge-1 ws "]" | "[" ws ( {pairs} ) ws "]"'
    # Corners on a 1/20 grid, x_min < x_max and y_min < y_max by construction: x_min picks the rule for
    # the rest, whose x_max only takes larger values (JSON cannot say that, a grammar can).
    values = [f"{i / GRID:g}" for i in range(GRID + 1)]
    for i in range(GRID):
        rules[f"above-{i}"] = " | ".join(f'"{v}"' for v in values[i + 1 :])
    for i in range(GRID):
        rest = " | ".join(f'"{values[j]}" ws "," ws above-{i} ws "," ws above-{j}' for j in range(GRID))
        rules[f"box-after-{i}"] = rest
    firsts = " | ".join(f'"{values[i]}" ws "," ws box-after-{i}' for i in range(GRID))
    rules["box"] = f'"[" ws ( {firsts} ) ws "]"'
    for k in range(1, MAX_OBJECTS + 1):
        # The slot, with no other '#' in the prompt and no digit right after it (#1 must not become #12).
        rules[f"prompt-{k}"] = (
            f'"\\"" context{{0,{MAX_CONTEXT_CHARS}}} "#{k}" ( after context{{0,{MAX_CONTEXT_CHARS - 1}}} )? "\\""'
        )
        parts = [
            field.format(key=_key("phrase"), value="phrase"),
            field.format(key=_key("prompt"), value=f"prompt-{k}"),
            field.format(key=_key("frequent"), value="stand-ins"),
            field.format(key=_key("box"), value="box"),
        ]
        rules[f"object-{k}"] = '"{" ws ' + ' ws "," ws '.join(parts) + ' ws "}"'
    nested = f"object-{MAX_OBJECTS}"
    for k in range(MAX_OBJECTS - 1, 0, -1):
        nested = f'object-{k} ( ws "," ws {nested} )?'
    rules["objects"] = nested
    lines = [f'root ::= ws "{{" ws {_key("objects")} ws ":" ws "[" ws objects ws "]" ws "}}" ws']
    lines += [f"{name} ::= {body}" for name, body in rules.items()]
    lines.append('char ::= [^"\\\\\\x00-\\x1F\\x7F]')
    lines.append('first ::= [^"\\\\ \\x00-\\x1F\\x7F]')
    lines.append('context ::= [^"\\\\#\\x00-\\x1F\\x7F]')
    lines.append('after ::= [^"\\\\#0-9\\x00-\\x1F\\x7F]')
    # One blank at most between tokens: a byte-level model pays a token for each.
    lines.append('ws ::= " "?')
    return "\n".join(lines) + "\n"


def constraint(prompt: str) -> Constraint:
    spans = prompt_spans(prompt) or None
    return Constraint(answer_schema(spans), answer_grammar(spans), max_tokens=MAX_TOKENS)


def _ordered(box: list[float], where: str, repairs: list[str]) -> list[float]:
    x0, y0, x1, y1 = box
    if x0 > x1 or y0 > y1:
        repairs.append(f"{where}: put the corners in order")
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
    return [x0, y0, x1, y1]


def parse_answer(raw: str, prompt: str) -> tuple[PlusPlan, list[str]]:
    """An answer read into a checked R2F+ plan for `prompt`, with the repairs made; InvalidAnswer else.

    Repairs never invent content: the JSON is unwrapped as for R2F plans, an object whose words overlap
    an earlier object's is dropped (the slots are renumbered), a stand-in equal to the object's own
    words is dropped, and box corners given in the wrong order are swapped.
    """
    repairs: list[str] = []
    data = extract_json(raw, repairs)
    if "removed control characters inside strings" in repairs:
        data = strip_controls(data)
    errors = validate(data, answer_schema())
    if errors:
        raise InvalidAnswer(errors)
    kept: list[tuple[int, dict[str, Any], tuple[int, int]]] = []
    problems: list[str] = []
    for i, item in enumerate(data["objects"]):
        where = locate(prompt, " ".join(item["phrase"].split()))
        if where is None:
            problems.append(f"objects[{i}].phrase {item['phrase']!r} does not occur in the prompt")
        elif any(where[0] < end and start < where[1] for _, _, (start, end) in kept):
            repairs.append(f"dropped objects[{i}] {item['phrase']!r}: it overlaps an earlier object")
        else:
            kept.append((i, item, where))
    for i, item, _ in kept:
        slots = SLOT.findall(item["prompt"])
        if slots != [str(i + 1)]:
            problems.append(f"objects[{i}].prompt must hold its slot #{i + 1} exactly once (found {slots})")
    if problems:
        raise InvalidAnswer(problems)
    objects = []
    for j, (i, item, (start, end)) in enumerate(kept):
        phrase = prompt[start:end]  # as the prompt spells it, so the base prompt is the prompt exactly
        key = f"#{j + 1}"
        if j != i:
            repairs.append(f"objects[{i}] is now {key}")
        frequent = []
        for stand_in in item["frequent"]:
            if stand_in["phrase"].strip().casefold() == phrase.casefold():
                repairs.append(f"dropped objects[{i}] stand-in {stand_in['phrase']!r}: it is the object itself")
            else:
                frequent.append(stand_in)
        objects.append(
            {
                "key": key,
                "phrase": phrase,
                "prompt": SLOT.sub(key, item["prompt"]),
                "frequent": [s["phrase"] for s in frequent],
                "levels": [s["level"] for s in frequent],
                "box": _ordered(item["box"], f"objects[{i}].box", repairs),
            }
        )
    base = prompt
    for obj, (_, _, (start, end)) in sorted(zip(objects, kept, strict=True), key=lambda p: -p[1][2][0]):
        base = base[:start] + obj["key"] + base[end:]
    doc = {"schema": SCHEMA_ID, "version": SCHEMA_VERSION, "prompt": prompt, "base_prompt": base, "objects": objects}
    try:
        return PlusPlan.from_json(doc), repairs
    except InputError as exc:
        raise InvalidAnswer([str(exc).removeprefix("R2F+ plan: ")]) from None


def _build(prompt: str, plan: PlusPlan, record: LLMRecord) -> PlusPlan:
    return dataclasses.replace(plan, llm=record.to_json())


R2F_PLUS = PlanKind(R2F_PLUS_NAME, TEMPLATE_NAME, constraint, parse_answer, _build)
