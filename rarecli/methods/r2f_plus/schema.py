"""The R2F+ plan (region-guided Rare-to-Frequent, Park et al., ICLR 2025): its versioned document and
the checks that every field is usable before any model loads.

An R2F+ plan splits a prompt into objects. The base prompt is the prompt with each object replaced by
its slot `#N`; each object has its own prompt holding exactly its slot once, the phrase the slot stands
for, frequent stand-ins ordered general to specific with a visual-detail level each (non-decreasing),
and a box `[x_min, y_min, x_max, y_max]` normalised to the unit square, origin top-left.

Errors name the field (`objects[1].box`), in one line, so a hand-written or LLM-written plan can be
fixed where it is broken. `from_authors` reads one entry of the authors' stored GPT-4o plans
(`original_prompt`, `base_prompt`, `objects: {"#1": {prompt, object, r2f, visual_detail_levels, bbox}}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rarecli.errors import InputError
from rarecli.llm.schema import NO_CONTROL

SCHEMA_ID = "rare.r2fplus.plan"
SCHEMA_VERSION = 1
MAX_OBJECTS = 8
MAX_STAND_INS = 4
MAX_LEVEL = 5
MAX_TEXT_CHARS = 300
SLOT = re.compile(r"#(\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class PlusObject:
    key: str  # "#1"
    phrase: str  # what the slot stands for in the prompt ("a spotted lion")
    prompt: str  # the object alone, with its slot once ("#1 lounging")
    frequent: tuple[str, ...]  # stand-ins, general -> specific; empty: not rare
    levels: tuple[int, ...]  # one per stand-in, non-decreasing, 0..5
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in [0, 1]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "phrase": self.phrase,
            "prompt": self.prompt,
            "frequent": list(self.frequent),
            "levels": list(self.levels),
            "box": list(self.box),
        }


@dataclass(frozen=True)
class PlusPlan:
    prompt: str
    base_prompt: str
    objects: tuple[PlusObject, ...]
    llm: dict[str, Any] | None = None  # the planner's audit record, as for R2F plans

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "version": SCHEMA_VERSION,
            "prompt": self.prompt,
            "base_prompt": self.base_prompt,
            "objects": [o.to_json() for o in self.objects],
        }
        if self.llm is not None:
            doc["llm"] = self.llm
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> PlusPlan:
        """A plan document, checked field by field; InputError naming the first broken field."""
        _need(isinstance(doc, dict), "plan", "must be a JSON object")
        _need(doc.get("schema") == SCHEMA_ID, "schema", f"must be {SCHEMA_ID!r} (got {doc.get('schema')!r})")
        version = doc.get("version")
        _need(
            version == SCHEMA_VERSION,
            "version",
            f"{version!r} is not a version this rare reads (it reads {SCHEMA_VERSION})",
            hint="upgrade rare, or write the plan again with this one",
        )
        unknown = sorted(set(doc) - {"schema", "version", "prompt", "base_prompt", "objects", "llm"})
        _need(not unknown, unknown[0] if unknown else "", "is not a field of an R2F+ plan")
        prompt = _text(doc.get("prompt"), "prompt")
        base = _text(doc.get("base_prompt"), "base_prompt")
        objects = doc.get("objects")
        _need(isinstance(objects, list) and objects, "objects", "must be a non-empty list")
        _need(len(objects) <= MAX_OBJECTS, "objects", f"at most {MAX_OBJECTS} objects (got {len(objects)})")
        parsed = tuple(_object(o, f"objects[{i}]") for i, o in enumerate(objects))
        llm = doc.get("llm")
        _need(llm is None or isinstance(llm, dict), "llm", "must be an object")
        return cls(prompt, base, check_slots(base, parsed), llm)


def plan_schema() -> dict[str, Any]:
    """The JSON schema of the plan document, for editors and other tools. `PlusPlan.from_json` checks
    all of it and what a JSON schema cannot say: slots against the base prompt and the object prompts,
    levels in order, box corners in order, distinct keys."""
    text = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": NO_CONTROL}
    obj = {
        "type": "object",
        "properties": {
            "key": {"type": "string", "pattern": "^#[0-9]+$"},
            "phrase": text,
            "prompt": text,
            "frequent": {"type": "array", "maxItems": MAX_STAND_INS, "items": text},
            "levels": {
                "type": "array",
                "maxItems": MAX_STAND_INS,
                "items": {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
            },
            "box": {
                "type": "array",
                "minItems": 4,
                "maxItems": 4,
                "items": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "required": ["key", "phrase", "prompt", "box"],
        "additionalProperties": False,
    }
    return {
        "$id": f"{SCHEMA_ID}/v{SCHEMA_VERSION}",
        "type": "object",
        "properties": {
            "schema": {"type": "string", "enum": [SCHEMA_ID]},
            "version": {"type": "integer", "enum": [SCHEMA_VERSION]},
            "prompt": text,
            "base_prompt": text,
            "objects": {"type": "array", "minItems": 1, "maxItems": MAX_OBJECTS, "items": obj},
            "llm": {"type": "object"},
        },
        "required": ["schema", "version", "prompt", "base_prompt", "objects"],
        "additionalProperties": False,
    }


def check_slots(base: str, objects: tuple[PlusObject, ...]) -> tuple[PlusObject, ...]:
    """Each object's slot exactly once in the base prompt, no slot without an object, distinct keys."""
    keys = [o.key for o in objects]
    for i, key in enumerate(keys):
        _need(key not in keys[:i], f"objects[{i}].key", f"{key} is used by two objects")
    slots = [f"#{n}" for n in SLOT.findall(base)]
    for key in slots:
        _need(key in keys, "base_prompt", f"holds {key}, which no object defines")
    for i, key in enumerate(keys):
        count = slots.count(key)
        _need(count == 1, "base_prompt", f"must hold {key} exactly once (objects[{i}]; found {count})")
    return objects


def _object(doc: Any, where: str) -> PlusObject:
    _need(isinstance(doc, dict), where, "must be an object")
    unknown = sorted(set(doc) - {"key", "phrase", "prompt", "frequent", "levels", "box"})
    _need(not unknown, f"{where}.{unknown[0]}" if unknown else where, "is not a field of an R2F+ object")
    key = doc.get("key")
    _need(isinstance(key, str) and SLOT.fullmatch(key) is not None, f"{where}.key", f"must be #N (got {key!r})")
    phrase = _text(doc.get("phrase"), f"{where}.phrase")
    prompt = _text(doc.get("prompt"), f"{where}.prompt")
    slots = [f"#{n}" for n in SLOT.findall(prompt)]
    _need(slots == [key], f"{where}.prompt", f"must hold its own slot {key} exactly once and no other (got {slots})")
    frequent = doc.get("frequent", [])
    _need(isinstance(frequent, list), f"{where}.frequent", "must be a list of phrases")
    _need(len(frequent) <= MAX_STAND_INS, f"{where}.frequent", f"at most {MAX_STAND_INS} stand-ins")
    stand_ins = tuple(_text(f, f"{where}.frequent[{j}]") for j, f in enumerate(frequent))
    levels = doc.get("levels", [])
    _need(isinstance(levels, list), f"{where}.levels", "must be a list of integers")
    _need(
        len(levels) == len(stand_ins),
        f"{where}.levels",
        f"needs one level per stand-in ({len(stand_ins)}; got {len(levels)})",
    )
    for j, level in enumerate(levels):
        ok = isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= MAX_LEVEL
        _need(ok, f"{where}.levels[{j}]", f"must be an integer 0..{MAX_LEVEL} (got {level!r})")
    _need(levels == sorted(levels), f"{where}.levels", f"must not decrease, general to specific (got {levels})")
    return PlusObject(key, phrase, prompt, stand_ins, tuple(levels), _box(doc.get("box"), f"{where}.box"))


def _box(value: Any, where: str) -> tuple[float, float, float, float]:
    ok = isinstance(value, list) and len(value) == 4
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    _need(ok, where, f"must be [x_min, y_min, x_max, y_max] (got {value!r})")
    x0, y0, x1, y1 = (float(v) for v in value)
    inside = all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1))
    _need(inside, where, f"must lie inside the image, every corner in [0, 1] (got {value})")
    _need(x0 < x1 and y0 < y1, where, f"must have x_min < x_max and y_min < y_max (got {value})")
    return (x0, y0, x1, y1)


def _text(value: Any, where: str) -> str:
    _need(isinstance(value, str) and value.strip() != "", where, "must be a non-empty string")
    _need(len(value) <= MAX_TEXT_CHARS, where, f"at most {MAX_TEXT_CHARS} characters")
    _need(_CONTROL.search(value) is None, where, "must not hold control characters")
    return " ".join(value.split())


def _need(ok: bool, field: str, message: str, hint: str | None = None) -> None:
    if not ok:
        raise InputError(f"R2F+ plan: {field} {message}", hint=hint or "fix that field of the plan, or plan again")


def from_authors(prompt: str, entry: Any) -> PlusPlan:
    """One entry of the authors' stored R2F+ plans, read into ours and checked like any plan."""
    _need(isinstance(entry, dict) and isinstance(entry.get("objects"), dict), "objects", "must be an object")
    objects = [
        {
            "key": key,
            "phrase": obj.get("object"),
            "prompt": obj.get("prompt"),
            "frequent": obj.get("r2f", []),
            "levels": obj.get("visual_detail_levels", []),
            "box": obj.get("bbox"),
        }
        for key, obj in entry["objects"].items()
        if isinstance(obj, dict)
    ]
    doc = {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "prompt": entry.get("original_prompt", prompt),
        "base_prompt": entry.get("base_prompt"),
        "objects": objects,
    }
    return PlusPlan.from_json(doc)
