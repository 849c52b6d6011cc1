"""The planner: ask an LLM backend for a Rare-to-Frequent plan, validate it, repair or retry, cache it.

Park et al., "Rare-to-Frequent: Unlocking Compositional Generation Power of Diffusion Models on Rare
Concepts with LLM Guidance", ICLR 2025 (arXiv 2410.22376), have an LLM find rare concepts, their frequent
stand-ins and a visual-detail level. Their LLM reply is free text split on keywords with no retry; here
the answer is constrained (JSON schema or grammar), validated against the same schema and against the
prompt, mechanically repaired where that is safe, otherwise asked again with the errors, a bounded
number of times, and then a RareError names the prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rarecli import log
from rarecli.errors import InputError, RareError
from rarecli.llm.answers import InvalidAnswer, extract_json, strip_controls
from rarecli.llm.cache import ResponseCache
from rarecli.llm.llama_backend import LlamaBackend
from rarecli.llm.openai_backend import OpenAIBackend
from rarecli.llm.protocol import Backend, Constraint, PlanKind
from rarecli.llm.schema import (
    Concept,
    LLMRecord,
    Plan,
    locate,
    response_schema,
    validate,
)
from rarecli.paths import data_file

TEMPLATE_NAME = "r2f_plan"


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    system: str
    user: str
    retry: str
    examples: tuple[tuple[str, str], ...]
    sha256: str
    path: Path

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def messages(self, prompt: str) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system.strip()}]
        for example, answer in self.examples:
            out.append({"role": "user", "content": self.user.format(prompt=example).strip()})
            out.append({"role": "assistant", "content": answer.strip()})
        out.append({"role": "user", "content": self.user.format(prompt=prompt).strip()})
        return out


def template_path(name: str = TEMPLATE_NAME) -> Path:
    """prompts/NAME.yaml: the one copy, in the checkout or shipped in the wheel."""

    path = data_file("prompts", f"{name}.yaml")
    if not path.is_file():
        raise RareError(
            f"prompt template {name}.yaml not found at {path}", hint="reinstall rare; prompts/ ships with it"
        )
    return path


def load_template(path: Path | None = None, kind: PlanKind | None = None) -> Template:
    """A planner template, its worked examples checked as answers of `kind` (default: R2F)."""
    kind = kind or R2F
    path = path or template_path(kind.template)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
        examples = tuple((e["prompt"], e["answer"]) for e in data.get("examples", []))
        template = Template(
            name=str(data["name"]),
            version=int(data["version"]),
            system=str(data["system"]),
            user=str(data["user"]),
            retry=str(data["retry"]),
            examples=examples,
            sha256=hashlib.sha256(raw).hexdigest(),
            path=path,
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise RareError(f"prompt template {path} is malformed: {exc}") from exc
    for example, answer in examples:
        problems = _problems(kind, answer, example)
        if problems:
            raise RareError(f"prompt template {path}: example answer for {example!r} is invalid: {problems[0]}")
    return template


def repair_answer(raw: str, prompt: str) -> tuple[list[Concept], list[str]]:
    """Parse an LLM answer into concepts; safe mechanical repairs are applied and listed.

    Repairs never invent content: they unwrap fences and surrounding text, drop control characters,
    accept a bare list or a level written as a string, and drop entries that cannot be used (a stand-in
    equal to the rare phrase, or a rare phrase repeated or overlapping an earlier one). Anything else,
    e.g. a rare phrase that is not in the prompt, raises InvalidAnswer with the reasons.
    """
    repairs: list[str] = []
    data = extract_json(raw, repairs)
    if "removed control characters inside strings" in repairs:
        data = strip_controls(data)
    if isinstance(data, list):
        data = {"concepts": data}
        repairs.append("wrapped a bare list as {concepts: [...]}")
    if isinstance(data, dict) and isinstance(data.get("concepts"), list):
        for item in data["concepts"]:
            if isinstance(item, dict) and isinstance(item.get("level"), str) and item["level"].strip().isdigit():
                item["level"] = int(item["level"].strip())
                repairs.append("read a level written as a string")
            if isinstance(item, dict):
                for key in ("rare", "frequent"):
                    if isinstance(item.get(key), str) and item[key] != item[key].strip():
                        item[key] = " ".join(item[key].split())
    errors = validate(data, response_schema())
    if errors:
        raise InvalidAnswer(errors)
    kept: list[tuple[dict[str, Any], tuple[int, int]]] = []
    ungrounded: list[str] = []
    for i, item in enumerate(data["concepts"]):
        if item["frequent"].strip().casefold() == item["rare"].strip().casefold():
            repairs.append(f"dropped {item['rare']!r}: its stand-in is the same phrase")
            continue
        where = locate(prompt, item["rare"])
        if where is None:
            ungrounded.append(f"concepts[{i}].rare {item['rare']!r} does not occur in the prompt")
            continue
        if any(where[0] < end and start < where[1] for _, (start, end) in kept):
            # Keep the first of two overlapping phrases, as the answer ordered them.
            repairs.append(f"dropped {item['rare']!r}: it overlaps an earlier rare phrase")
            continue
        kept.append((item, where))
    if ungrounded:
        raise InvalidAnswer(ungrounded)
    # Store each phrase as the prompt spells it, so substitution is exact.
    concepts = [Concept(prompt[start:end], item["frequent"].strip(), item["level"]) for item, (start, end) in kept]
    return concepts, repairs


def _problems(kind: PlanKind, raw: str, prompt: str) -> list[str]:
    try:
        kind.parse(raw, prompt)
    except InvalidAnswer as exc:
        return exc.errors
    return []


R2F = PlanKind(
    "r2f",
    TEMPLATE_NAME,
    Constraint.for_prompt,
    repair_answer,
    lambda prompt, concepts, record: Plan(prompt, tuple(concepts), record),
)


class Planner:
    """Plans prompts with one backend and one template; see the module docstring for the policy."""

    def __init__(
        self,
        backend: Backend,
        template: Template | None = None,
        cache: Any | None = None,
        max_attempts: int = 3,
        use_cache: bool = True,
        kind: PlanKind = R2F,
    ) -> None:
        if max_attempts < 1:
            raise InputError("--attempts must be at least 1")
        self.kind = kind
        self.backend = backend
        self.template = template or load_template(kind=kind)
        self.cache = cache
        self.max_attempts = max_attempts
        self.use_cache = use_cache

    def constraint(self, prompt: str, attempt: int) -> Constraint:
        return self.kind.constraint(prompt)

    def _key(self, prompt: str) -> str:

        return ResponseCache.key(self.backend.name, self.backend.model, self.template.tag, self.template.sha256, prompt)

    def _record(self, raw: str, attempts: int, cached: bool, repairs: list[str]) -> LLMRecord:
        return LLMRecord(
            backend=self.backend.name,
            model=self.backend.model,
            template=self.template.tag,
            raw=raw,
            attempts=attempts,
            cached=cached,
            repairs=tuple(repairs),
        )

    def plan(self, prompt: str) -> Any:
        """The kind's plan for `prompt` (an R2F `Plan`, or a `PlusPlan`)."""

        prompt = " ".join(prompt.split())
        if not prompt:
            raise InputError("the prompt is empty")
        if len(prompt) > 2000:
            raise InputError(f"the prompt is too long to plan ({len(prompt)} characters, at most 2000)")
        key = self._key(prompt)
        if self.cache is not None and self.use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    content, repairs = self.kind.parse(hit["raw"], prompt)
                    record = self._record(hit["raw"], int(hit.get("attempts", 1)), True, repairs)
                    return self.kind.build(prompt, content, record)
                except InvalidAnswer:
                    log.warn(f"ignoring an invalid cached answer for {prompt!r}")
        messages = self.template.messages(prompt)
        problems: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            raw = self.backend.complete(messages, self.constraint(prompt, attempt))
            try:
                content, repairs = self.kind.parse(raw, prompt)
            except InvalidAnswer as exc:
                problems = exc.errors
                log.info(f"plan attempt {attempt}/{self.max_attempts} for {prompt!r} was invalid: {exc}")
                messages = [
                    *messages,
                    {"role": "assistant", "content": raw[:2000]},
                    {"role": "user", "content": self.template.retry.format(errors="; ".join(problems[:5])).strip()},
                ]
                continue
            if self.cache is not None:
                self.cache.put(
                    key,
                    {
                        "backend": self.backend.name,
                        "model": self.backend.model,
                        "template": self.template.tag,
                        "prompt": prompt,
                        "raw": raw,
                        "attempts": attempt,
                    },
                )
            return self.kind.build(prompt, content, self._record(raw, attempt, False, repairs))
        raise RareError(
            f"the LLM gave no valid plan for the prompt {prompt!r} after {self.max_attempts} attempt(s): "
            + "; ".join(problems[:3]),
            hint="try again, raise --attempts, or use a stronger --llm-model",
        )


@dataclass
class PlannerSettings:
    backend: str = "openai"
    llm_model: str | None = None
    base_url: str | None = None
    response_format: str = "auto"
    timeout: float = 60.0
    attempts: int = 3
    use_cache: bool = True
    cache_folder: Path | None = None
    # What is planned: R2F's plans, or another kind a method hands over (R2F+: objects, boxes, stand-ins).
    kind: PlanKind | None = None


def make_backend(settings: PlannerSettings) -> Backend:
    if settings.backend == "openai":
        return OpenAIBackend(
            model=settings.llm_model or "gpt-4o",
            base_url=settings.base_url,
            response_format=settings.response_format,
            timeout=settings.timeout,
        )
    if settings.backend == "llama":
        return LlamaBackend(settings.llm_model)
    raise InputError(f"unknown LLM backend {settings.backend!r}", hint="use openai or llama")


def make_planner(settings: PlannerSettings) -> Planner:
    """A planner with the backend, disk cache and retry policy that `settings` describe."""

    return Planner(
        make_backend(settings),
        kind=settings.kind or R2F,
        cache=ResponseCache(settings.cache_folder),
        max_attempts=settings.attempts,
        use_cache=settings.use_cache,
    )


def planner_from_options(options: Any, kind: PlanKind = R2F) -> Planner | None:
    """The planner a method's options ask for (`llm_backend`, `llm_model`, `llm_base_url`), or None when
    they name no backend. Made when the method is prepared, so one that cannot work (no API key) fails
    before any image is drawn."""
    if options.llm_backend is None:
        return None
    return make_planner(
        PlannerSettings(
            backend=options.llm_backend,
            llm_model=options.llm_model,
            base_url=options.llm_base_url,
            kind=kind,
        )
    )


def plan_prompts(prompts: Iterable[str], settings: PlannerSettings) -> Iterator[Any]:
    """Plan each non-blank prompt in order (the backend is set up once, on the first prompt)."""
    planner: Planner | None = None
    for prompt in prompts:
        if not prompt.strip():
            continue
        if planner is None:
            planner = make_planner(settings)
        yield planner.plan(prompt)


__all__ = [
    "make_planner",
    "planner_from_options",
    "Backend",
    "Constraint",
    "InvalidAnswer",
    "PlanKind",
    "Planner",
    "PlannerSettings",
    "R2F",
    "Template",
    "load_template",
    "make_backend",
    "plan_prompts",
    "repair_answer",
]
