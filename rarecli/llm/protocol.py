"""What the planner asks of an LLM backend: answer a chat under a constraint (the plan's JSON schema and
the equivalent GBNF grammar). The planner and both backends (openai, llama.cpp) meet here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rarecli.llm.grammar import schema_to_gbnf
from rarecli.llm.schema import prompt_spans, response_schema

if TYPE_CHECKING:
    from rarecli.llm.schema import LLMRecord


@dataclass(frozen=True)
class Constraint:
    """What a backend may answer for one prompt: the JSON schema and the equivalent GBNF grammar."""

    schema: dict[str, Any]
    grammar: str
    # Tokens the answer may need at most (None: the backend's default); R2F+ answers are longer.
    max_tokens: int | None = None

    @classmethod
    def for_prompt(cls, prompt: str, min_concepts: int = 0) -> Constraint:
        schema = response_schema(prompt_spans(prompt) or None, min_concepts=min_concepts)
        return cls(schema, schema_to_gbnf(schema))


class Backend(Protocol):
    """An LLM that answers a chat under a constraint. `model` identifies it in caches and audit
    records (a file hash for local models), so it must change when the answers could."""

    name: str
    model: str

    def complete(self, messages: list[dict[str, str]], constraint: Constraint) -> str: ...


@dataclass(frozen=True)
class PlanKind:
    """What one kind of plan asks of the planner: its template, the constraint an answer is decoded
    under, how an answer is read (its content and the repairs made, or InvalidAnswer), and the plan
    built from that content and the audit record."""

    name: str
    template: str
    constraint: Callable[[str], Constraint]
    parse: Callable[[str, str], tuple[Any, list[str]]]
    build: Callable[[str, Any, LLMRecord], Any]
