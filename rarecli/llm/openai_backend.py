"""The planner LLM behind an OpenAI-style chat API: GPT-4o by default, or any compatible server.

Response formats (`--response-format`):
- `json_schema`: OpenAI Structured Outputs (strict). The schema sent keeps only what strict mode accepts:
  no length or numeric bounds, so the level becomes an integer enum and everything else is validated
  after the answer arrives.
- `grammar`: our GBNF grammar in `extra_body` (llama.cpp's servers: `llama_cpp.server`, `llama-server`).
  Note that llama_cpp.server rejects `json_schema` (HTTP 500, "Input should be 'text' or 'json_object'")
  and, given both, prefers `response_format` over `grammar`, so this mode sends the grammar alone.
- `json_object`: JSON mode plus the schema in the request (servers that honour it loosely).
- `auto` (default): `json_schema`; with `--base-url`, a server that rejects `json_schema` is asked again
  in `grammar` mode for the rest of the run.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff,
honouring Retry-After. Key, client, pacing and redaction: `rarecli.llm.openai_client`, shared with the
RareBench judge.
"""

from __future__ import annotations

import time
from typing import Any

from rarecli import log
from rarecli.errors import InputError, RareError
from rarecli.llm.openai_client import MalformedAnswer, OpenAIConnection, RequestDeadline, retry_delay
from rarecli.llm.protocol import Constraint

MODES = ("auto", "json_schema", "grammar", "json_object")
DEFAULT_MODEL = "gpt-4o"
_STRICT_DROP = {"minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum"}


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as OpenAI strict mode accepts it: bounds removed, small integer ranges as enums."""
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) if isinstance(v, dict) else v for k, v in schema.items() if k not in _STRICT_DROP}
    if "properties" in schema:
        out["properties"] = {k: strict_schema(v) for k, v in schema["properties"].items()}
    if schema.get("type") == "integer" and "minimum" in schema and "maximum" in schema and "enum" not in schema:
        out["enum"] = list(range(int(schema["minimum"]), int(schema["maximum"]) + 1))
    return out


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        api_key: str | None = None,
        response_format: str = "auto",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float = 0.0,
        seed: int = 0,
        max_tokens: int = 1024,
    ) -> None:
        if response_format not in MODES:
            raise InputError(f"--response-format {response_format!r} is not one of {', '.join(MODES)}")
        self._connection = OpenAIConnection.resolve(
            base_url,
            api_key,
            missing=RareError(
                "OPENAI_API_KEY is not set: the openai backend (GPT-4o) needs an API key",
                hint="export OPENAI_API_KEY=..., or plan offline with a local model: "
                "--backend llama --llm-model PATH.gguf (or `--llm-model smollm2`, a weak demo planner), "
                "or --base-url for a local OpenAI-compatible server",
            ),
        )
        self.model_name = model
        self.base_url = base_url
        self.mode = response_format
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self._client = None

    def __repr__(self) -> str:  # never show the key, nor credentials in the URL
        return f"OpenAIBackend(model={self.model_name!r}, base_url={self._connection.where!r}, mode={self.mode!r})"

    @property
    def model(self) -> str:
        """The model and the server's host (no path, user or query: they may carry secrets)."""
        if self.base_url is None:
            return self.model_name
        return f"{self.model_name}@{self._connection.host}"

    def _scrub(self, text: str) -> str:
        return self._connection.redact(text)

    def client(self):
        if self._client is None:
            self._client = self._connection.client(self.timeout)
        return self._client

    def _request(self, mode: str, constraint: Constraint) -> dict[str, Any]:
        if mode == "json_schema":
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "r2f_plan", "strict": True, "schema": strict_schema(constraint.schema)},
                }
            }
        if mode == "grammar":
            return {"extra_body": {"grammar": constraint.grammar}}
        return {"response_format": {"type": "json_object", "schema": constraint.schema}}

    @staticmethod
    def _is_format_rejection(exc: Exception) -> bool:
        status = getattr(exc, "status_code", None)
        text = str(exc).lower()
        return status in (400, 422, 500) and ("json_schema" in text or "response_format" in text)

    def complete(self, messages: list[dict[str, str]], constraint: Constraint) -> str:
        mode = "json_schema" if self.mode == "auto" else self.mode
        try:
            return self._complete(messages, constraint, mode)
        except _FormatRejected as exc:
            if self.mode == "auto" and self.base_url is not None:
                log.info(f"{self.model}: the server does not take response_format json_schema; using its grammar")
                self.mode = "grammar"
                return self._complete(messages, constraint, "grammar")
            raise RareError(
                f"{self.model}: the server rejected response_format {mode}: {exc}",
                hint="for llama.cpp servers use --response-format grammar; otherwise try json_object",
            ) from None

    def _complete(self, messages: list[dict[str, str]], constraint: Constraint, mode: str) -> str:
        import openai

        request = self._request(mode, constraint)
        for attempt in range(self.max_retries + 1):
            try:
                answer = self._connection.chat(
                    self.client(),
                    self.timeout,
                    model=self.model_name,
                    messages=messages,
                    temperature=self.temperature,
                    seed=self.seed,
                    max_tokens=max(self.max_tokens, constraint.max_tokens or 0),
                    **request,
                )
            except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as exc:
                if self._is_format_rejection(exc):
                    raise _FormatRejected(self._scrub(_first_line(exc))) from None
                if not isinstance(exc, openai.InternalServerError) or attempt == self.max_retries:
                    raise self._error(exc) from None
                failure: Exception = exc
            except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                if attempt == self.max_retries:
                    raise self._error(exc) from None
                failure = exc
            except openai.APIStatusError as exc:
                if exc.status_code < 500 or attempt == self.max_retries:
                    raise self._error(exc) from None
                failure = exc
            except (RequestDeadline, MalformedAnswer) as exc:
                self._client = None  # closed at a deadline; a fresh one for the next attempt either way
                if attempt == self.max_retries:
                    raise self._error(exc) from None
                failure = exc
            else:
                if answer.refusal:
                    return ""  # a refusal is an invalid answer; the planner asks again
                return answer.content or ""
            wait = self._wait(attempt, failure)
            log.info(f"{self.model}: {_describe(failure)}; retrying in {wait:.1f} s ({attempt + 1}/{self.max_retries})")
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, exc: Exception) -> float:
        return retry_delay(attempt, exc, self.backoff, self.max_backoff)

    def _error(self, exc: Exception) -> RareError:
        import openai

        where = self._connection.where
        detail = self._scrub(_first_line(exc))
        if isinstance(exc, RequestDeadline):
            return RareError(
                f"{where} sent no complete answer within --timeout {self.timeout:g} s (after {self.max_retries} retries)",
                hint="check the server, or raise --timeout",
            )
        if isinstance(exc, MalformedAnswer):
            return RareError(
                f"{where} did not answer like an OpenAI-compatible server (after {self.max_retries} retries): {detail}",
                hint="check --base-url: it should end in the API's root, e.g. http://127.0.0.1:8000/v1",
            )
        if isinstance(exc, openai.AuthenticationError):
            return RareError(f"{where} rejected the API key (401)", hint="check OPENAI_API_KEY (rare never prints it)")
        if isinstance(exc, openai.PermissionDeniedError):
            return RareError(f"{where} denied access to {self.model_name} (403)", hint="check your plan and key")
        if isinstance(exc, openai.NotFoundError):
            return RareError(f"model {self.model_name!r} not found at {where}", hint="check --llm-model and --base-url")
        if isinstance(exc, openai.RateLimitError):
            return RareError(
                f"{where} kept answering 429 (rate limit or quota) after {self.max_retries} retries: {detail}",
                hint="wait and run again (answers already planned are cached), or check your quota",
            )
        if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
            return RareError(
                f"cannot reach {where}: {_describe(exc)} (after {self.max_retries} retries)",
                hint="check the network, --base-url, or raise --timeout",
            )
        return RareError(f"{where}: {_describe(exc)}: {detail}", hint="run again with RARE_DEBUG=1 for details")


class _FormatRejected(Exception):
    pass


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, RequestDeadline | MalformedAnswer):
        return str(exc)
    return f"HTTP {status}" if status else type(exc).__name__
