"""The Rare-to-Frequent plan: its versioned JSON schema, a validator for it, and its dataclasses.

A plan (Park et al., "Rare-to-Frequent", ICLR 2025, arXiv 2410.22376) lists, for each rare concept of a
prompt, the rare phrase as written in the prompt, a frequent stand-in (the rare main noun swapped for a
common one that keeps the attribute), and a visual-detail level 0..5 that decides how many early
denoising steps the frequent stand-in guides. An empty list means the prompt has nothing rare.

Two schemas live here:
- `response_schema()`: what an LLM must answer (`{"concepts": [...]}`), optionally grounded so that a
  rare phrase can only be a word span of the prompt;
- `PLAN_SCHEMA`: the plan document that `rare r2f plan` prints and `rare r2f generate` reads, which adds
  the prompt, the schema id/version and an audit record of the LLM call.

The validator covers exactly the JSON-schema subset these use (object, array, string, integer, number, enum,
their bounds and a string pattern), so neither a jsonschema dependency nor a looser reading is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rarecli.errors import InputError

SCHEMA_ID = "rare.r2f.plan"
# 1: concepts (rare phrase, frequent stand-in, level). 2: adds an explicit prompt chain (`chain`), the
# form of the authors' frozen plans; a plan without one is still written as version 1.
SCHEMA_VERSION = 2
MAX_CONCEPTS = 4
MAX_CHAIN = 8
# An LLM's answer kept for audit: a plan is a few hundred characters, and this bound keeps a hostile or
# broken file from putting megabytes into every PNG's metadata.
MAX_RAW_CHARS = 64 * 1024
MAX_LEVEL = 5
MAX_PHRASE_CHARS = 80
# Grounding enumerates word spans of the prompt; longer spans are not concepts, and the cap keeps the
# enum (and OpenAI's limits on enum size) small even for a 77-token prompt.
MAX_SPAN_WORDS = 6
MAX_SPANS = 400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Phrases end up in text-encoder prompts and file names: no control characters (JSON-schema `pattern`).
NO_CONTROL = "^[^\\x00-\\x1f\\x7f]*$"
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


def _concept_schema(spans: list[str] | None) -> dict[str, Any]:
    rare: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS, "pattern": NO_CONTROL}
    if spans:
        rare = {"type": "string", "enum": list(spans)}
    return {
        "type": "object",
        "properties": {
            "rare": rare,
            "frequent": {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS, "pattern": NO_CONTROL},
            "level": {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
        },
        "required": ["rare", "frequent", "level"],
        "additionalProperties": False,
    }


def response_schema(spans: list[str] | None = None, min_concepts: int = 0) -> dict[str, Any]:
    """The JSON schema of an LLM's answer; with `spans`, `rare` must be one of them."""
    return {
        "type": "object",
        "properties": {
            "concepts": {
                "type": "array",
                "minItems": min_concepts,
                "maxItems": MAX_CONCEPTS,
                "items": _concept_schema(spans),
            }
        },
        "required": ["concepts"],
        "additionalProperties": False,
    }


PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schema": {"type": "string", "enum": [SCHEMA_ID]},
        "version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": NO_CONTROL},
        "concepts": response_schema()["properties"]["concepts"],
        "chain": {
            "type": "object",
            "properties": {
                "prompts": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_CHAIN,
                    "items": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": NO_CONTROL},
                },
                "levels": {
                    "type": "array",
                    "maxItems": MAX_CHAIN,
                    "items": {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
                },
                "source": {"type": "string", "maxLength": 2000},
            },
            "required": ["prompts", "levels"],
            "additionalProperties": False,
        },
        # How the plan was made, for audit; a hand-written plan may leave it out or say as much as it likes.
        "llm": {
            "type": "object",
            "properties": {
                "backend": {"type": "string", "maxLength": 200},
                "model": {"type": "string", "maxLength": 2000},
                "template": {"type": "string", "maxLength": 200},
                "raw": {"type": "string", "maxLength": MAX_RAW_CHARS},
                "attempts": {"type": "integer", "minimum": 0, "maximum": 100},
                "cached": {"type": "boolean"},
                "repairs": {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 500}},
            },
            "required": [],
            "additionalProperties": True,
        },
    },
    "required": ["prompt", "concepts"],
    "additionalProperties": False,
}


def validate(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Errors of `instance` against `schema` (the subset used here), as 'path: message' strings."""
    errors: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and instance not in schema["enum"]:
        shown = schema["enum"] if len(schema["enum"]) <= 8 else f"one of {len(schema['enum'])} allowed values"
        errors.append(f"{path}: {instance!r} is not in {shown}")
        return errors
    if kind == "object":
        if not isinstance(instance, dict):
            return [f"{path}: expected an object, got {type(instance).__name__}"]
        props = schema.get("properties", {})
        errors += [f"{path}: missing {name!r}" for name in schema.get("required", []) if name not in instance]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected key {k!r}" for k in instance if k not in props]
        for name, sub in props.items():
            if name in instance:
                errors += validate(instance[name], sub, f"{path}.{name}")
    elif kind == "array":
        if not isinstance(instance, list):
            return [f"{path}: expected a list, got {type(instance).__name__}"]
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(instance):
            errors += validate(item, schema.get("items", {}), f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(instance, str):
            return [f"{path}: expected a string, got {type(instance).__name__}"]
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: empty string")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(
                f"{path}: contains control characters"
                if _CONTROL.search(instance)
                else f"{path}: does not match {schema['pattern']}"
            )
    elif kind == "integer":
        if isinstance(instance, bool) or not isinstance(instance, int):
            return [f"{path}: expected an integer, got {instance!r}"]
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} > {schema['maximum']}")
    elif kind == "number":
        if isinstance(instance, bool) or not isinstance(instance, int | float):
            return [f"{path}: expected a number, got {instance!r}"]
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} > {schema['maximum']}")
    elif kind == "boolean" and not isinstance(instance, bool):
        return [f"{path}: expected true or false, got {instance!r}"]
    return errors


def prompt_spans(prompt: str, max_words: int = MAX_SPAN_WORDS, limit: int = MAX_SPANS) -> list[str]:
    """Every run of 1..max_words consecutive words of `prompt`, exactly as written (punctuation
    inside a run kept), shortest first from each start; [] when there would be more than `limit`."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(prompt)]
    spans: list[str] = []
    seen: set[str] = set()
    for i in range(len(words)):
        for j in range(i, min(i + max_words, len(words))):
            text = prompt[words[i][0] : words[j][1]]
            if len(text) <= MAX_PHRASE_CHARS and text not in seen:
                seen.add(text)
                spans.append(text)
    return spans if len(spans) <= limit else []


def locate(prompt: str, phrase: str) -> tuple[int, int] | None:
    """Where `phrase` first occurs in `prompt`, ignoring case; None when it does not."""
    if not phrase:
        return None
    folded = prompt.lower()
    # lower() keeps lengths except for a few letters (İ); indices must stay valid, so match exactly then.
    start = folded.find(phrase.lower()) if len(folded) == len(prompt) else prompt.find(phrase)
    return None if start < 0 else (start, start + len(phrase))


@dataclass(frozen=True)
class Concept:
    """One rare concept: its phrase in the prompt, the frequent stand-in, the visual-detail level."""

    rare: str
    frequent: str
    level: int

    def to_json(self) -> dict[str, Any]:
        return {"rare": self.rare, "frequent": self.frequent, "level": self.level}


@dataclass(frozen=True)
class LLMRecord:
    """How a plan was made, kept for audit: which model, which template, what it said."""

    backend: str
    model: str
    template: str
    raw: str
    attempts: int = 1
    cached: bool = False
    repairs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "template": self.template,
            "raw": self.raw,
            "attempts": self.attempts,
            "cached": self.cached,
            "repairs": list(self.repairs),
        }


@dataclass(frozen=True)
class Chain:
    """An explicit prompt chain: most frequent first, the rare prompt last, and a visual-detail level per
    stand-in prompt (the authors' plans: `levels` in their order, which need not be sorted)."""

    prompts: tuple[str, ...]
    levels: tuple[int, ...]
    source: str | None = None  # where it came from (an imported file)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompts": list(self.prompts), "levels": list(self.levels)}
        if self.source is not None:
            out["source"] = self.source
        return out


def chain_errors(chain: dict[str, Any]) -> list[str]:
    """A chain needs one level per stand-in prompt (a one-prompt chain, the rare prompt alone, may keep
    the single level the authors' files give it)."""
    prompts, levels = chain["prompts"], chain["levels"]
    if len(levels) == len(prompts) - 1 or (len(prompts) == 1 and len(levels) <= 1):
        return []
    return [f"$.chain: {len(levels)} level(s) for {len(prompts) - 1} stand-in prompt(s)"]


@dataclass(frozen=True)
class Plan:
    prompt: str
    concepts: tuple[Concept, ...] = ()
    llm: LLMRecord | None = None
    chain: Chain | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "version": 2 if self.chain is not None else 1,
            "prompt": self.prompt,
            "concepts": [c.to_json() for c in self.concepts],
        }
        if self.chain is not None:
            out["chain"] = self.chain.to_json()
        if self.llm is not None:
            out["llm"] = self.llm.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "plan") -> Plan:
        """Validate a plan document (schema and grounding) and build it; InputError naming `where`."""
        if isinstance(data, dict) and isinstance(data.get("version"), int) and data["version"] > SCHEMA_VERSION:
            raise InputError(
                f"{where}: plan schema version {data['version']} is newer than this rare understands "
                f"({SCHEMA_VERSION})",
                hint="upgrade rare, or re-run `rare r2f plan`",
            )
        errors = validate(data, PLAN_SCHEMA)
        if not errors and "chain" in data:
            errors = chain_errors(data["chain"])
            if data["concepts"]:
                errors.append("$: a plan has concepts or a chain, not both")
        if not errors:
            errors = grounding_errors(data["prompt"], data["concepts"])
        if errors:
            raise InputError(f"{where}: not a valid R2F plan: " + "; ".join(errors[:5]))
        llm = data.get("llm")
        record = None
        if llm is not None:
            record = LLMRecord(
                backend=llm.get("backend", "hand-written"),
                model=llm.get("model", ""),
                template=llm.get("template", ""),
                raw=llm.get("raw", ""),
                attempts=llm.get("attempts", 1),
                cached=llm.get("cached", False),
                repairs=tuple(llm.get("repairs", ())),
            )
        concepts = tuple(Concept(c["rare"], c["frequent"], c["level"]) for c in data["concepts"])
        chain = None
        if "chain" in data:
            c = data["chain"]
            chain = Chain(tuple(c["prompts"]), tuple(c["levels"]), c.get("source"))
        return cls(prompt=data["prompt"], concepts=concepts, llm=record, chain=chain)


def grounding_errors(prompt: str, concepts: list[dict[str, Any]]) -> list[str]:
    """Problems that make a schema-valid concept list unusable for `prompt`: a rare phrase that is not
    in the prompt, or two rare phrases that overlap (the stand-ins could not both be substituted)."""
    errors: list[str] = []
    taken: list[tuple[int, int, str]] = []
    for i, c in enumerate(concepts):
        where = locate(prompt, c["rare"].strip())
        if where is None:
            errors.append(f"concepts[{i}].rare {c['rare']!r} does not occur in the prompt")
            continue
        for start, end, other in taken:
            if where[0] < end and start < where[1]:
                errors.append(f"concepts[{i}].rare {c['rare']!r} overlaps {other!r}")
                break
        else:
            taken.append((where[0], where[1], c["rare"]))
    return errors
