"""A GBNF grammar (llama.cpp's grammar format) generated from a plan JSON schema.

llama.cpp's own JSON-schema converter is too loose for us: its strings admit raw control characters
(so `json.loads` fails) and it ignores integer `minimum`/`maximum`. This converter handles just the
subset `rarecli.llm.schema` uses, but strictly:
- objects emit every property, in schema order (all of ours are required);
- integers are bounded (`minimum`..`maximum` as an explicit alternation) or an enum;
- strings admit no control characters, no quote and no backslash, with `minLength`/`maxLength` as a
  bounded repetition, or are one of an enum of literals (how a rare phrase is tied to the prompt);
- arrays have bounded length (`maxItems`), and whitespace between tokens is bounded too,
so every sentence the grammar accepts parses and validates, and decoding always terminates.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rarecli.errors import RareError
from rarecli.llm.schema import NO_CONTROL

# Enough for pretty-printed JSON a few levels deep, small enough that a model cannot stall on blanks.
WS_MAX = 12
_MAX_INT_ALTERNATIVES = 1000


def gbnf_literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class _Builder:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "r"
        base, n = name, 1
        while name in self.rules and self.rules[name] != body:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        return name

    def node(self, schema: dict[str, Any], name: str) -> str:
        if "enum" in schema:
            values = schema["enum"]
            if not values:
                raise RareError(f"grammar: empty enum at {name}")
            return self.add(name, " | ".join(gbnf_literal(json.dumps(v, ensure_ascii=False)) for v in values))
        kind = schema.get("type")
        if kind == "object":
            props = schema.get("properties", {})
            parts = ['"{" ws']
            for i, (key, sub) in enumerate(props.items()):
                if i:
                    parts.append('"," ws')
                parts.append(f'{gbnf_literal(json.dumps(key))} ws ":" ws {self.node(sub, f"{name}-{key}")} ws')
            parts.append('"}"')
            return self.add(name, " ".join(parts))
        if kind == "array":
            item = self.node(schema.get("items", {}), f"{name}-item")
            lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
            if hi is None:
                raise RareError(f"grammar: array {name} needs maxItems (unbounded lists could run forever)")
            hi = int(hi)
            if hi == 0:
                return self.add(name, '"[" ws "]"')
            rest = f'("," ws {item} ws){{{max(lo - 1, 0)},{hi - 1}}}'
            body = f'"[" ws {item} ws {rest} "]"'
            if lo == 0:
                body = f'"[" ws ( {item} ws {rest} )? "]"'
            return self.add(name, body)
        if kind == "string":
            if schema.get("pattern") not in (None, NO_CONTROL):
                raise RareError(f"grammar: string pattern at {name} is not supported (only no-control-characters)")
            lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
            if hi is None:
                raise RareError(f"grammar: string {name} needs maxLength")
            return self.add(name, f'"\\"" char{{{lo},{int(hi)}}} "\\""')
        if kind == "integer":
            if "minimum" not in schema or "maximum" not in schema:
                raise RareError(f"grammar: integer {name} needs minimum and maximum")
            lo, hi = int(schema["minimum"]), int(schema["maximum"])
            if hi < lo or hi - lo >= _MAX_INT_ALTERNATIVES:
                raise RareError(f"grammar: integer range {lo}..{hi} at {name} is empty or too wide")
            return self.add(name, " | ".join(gbnf_literal(str(v)) for v in range(lo, hi + 1)))
        if kind == "boolean":
            return self.add(name, '"true" | "false"')
        raise RareError(f"grammar: unsupported schema at {name}: {schema!r}")


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text whose `root` accepts exactly the JSON documents of `schema` (subset above)."""
    builder = _Builder()
    top = builder.node(schema, "value")
    lines = [f"root ::= ws {top} ws"]
    lines += [f"{name} ::= {body}" for name, body in builder.rules.items()]
    # One code point that is not a quote, a backslash or a control character.
    lines.append('char ::= [^"\\\\\\x00-\\x1F\\x7F]')
    lines.append(f"ws ::= [ \\t\\n]{{0,{WS_MAX}}}")
    return "\n".join(lines) + "\n"
