"""One way to reach an OpenAI-compatible API, shared by the R2F planner and the RareBench judge: the
key, the base URL, the client and its timeout, the pacing of retries, and redaction.

- The key is OPENAI_API_KEY (or one passed in). Without one, a `--base-url` server is sent "unused"
  (local servers usually take no key, but the client needs one); the OpenAI API is an error naming
  what the caller needs it for. It is never logged, stored or shown: `redact` scrubs it, its first
  eight characters and anything shaped like an OpenAI key from text a server sends back.
- `--timeout` bounds a whole request (`OpenAIConnection.chat`): the client's timeouts are per read, so a
  server that drips its answer a byte at a time would hold it for ever; the request runs in a worker
  thread and, past its deadline, the connection is closed under it. Retries are not the client's: the client's `max_retries` is 0 and
  callers retry with `retry_delay` (a server's Retry-After first, else jittered exponential backoff),
  because the client's built-in retries do not do these jobs: the planner must see a server reject
  `response_format` (llama.cpp answers HTTP 500) before that is retried four times, and the judge
  spends one budget on transport failures and malformed answers alike and records how many attempts
  each image took.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rarecli.errors import InputError, RareError

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")
UNUSED_KEY = "unused"
# Query parameters that carry credentials in the URLs people paste (Azure's api-key, signed URLs, tokens).
_SECRET_PARAMS = re.compile(r"(key|token|secret|password|passwd|pwd|auth|sig|signature|credential)", re.IGNORECASE)


class RequestDeadline(Exception):
    """A request outlived its deadline (`--timeout`): retried like a timeout."""


class MalformedAnswer(Exception):
    """A 200 answer that is not a chat completion (not JSON, an HTML page, no choices): retried."""


@dataclass(frozen=True)
class ChatAnswer:
    content: str | None
    refusal: str | None = None
    model: str | None = None


def check_base_url(url: str | None, option: str = "--base-url") -> None:
    """A server URL rare can use: http(s), a host, a port in range. Said before any request."""
    if url is None:
        return
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range
    except ValueError as exc:
        raise InputError(f"{option} {url_without_credentials(url)}: {exc}", hint="e.g. http://127.0.0.1:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{option} {url_without_credentials(url)} is not an http(s) URL with a host", hint="e.g. http://127.0.0.1:8000/v1")
    if port == 0:
        raise InputError(f"{option} {url_without_credentials(url)}: port 0 is not a server's port")


@dataclass(frozen=True)
class OpenAIConnection:
    base_url: str | None
    api_key: str = field(repr=False)

    @classmethod
    def resolve(cls, base_url: str | None, api_key: str | None = None, *, missing: RareError) -> OpenAIConnection:
        """The connection for `base_url`; `missing` is raised when the OpenAI API has no key to use."""
        check_base_url(base_url)
        key = api_key or os.environ.get("OPENAI_API_KEY", "")
        if not key:
            if base_url is None:
                raise missing
            key = UNUSED_KEY
        return cls(base_url, key)

    def client(self, timeout: float) -> Any:
        """The OpenAI client; its own (per-read) timeouts fire a little before `chat`'s deadline, so a
        server that sends nothing is told apart from one that drips."""
        import openai

        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, timeout=0.9 * timeout, max_retries=0)

    def chat(self, client: Any, timeout: float, **request: Any) -> ChatAnswer:
        """One chat completion, bounded as a whole by `timeout` seconds, its answer checked.

        Raises the client's own errors (HTTP status, connection), `RequestDeadline` when the deadline
        passed (the client is then closed: make a new one) and `MalformedAnswer` for a 200 that is not
        a chat completion."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["response"] = client.chat.completions.create(**request)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        # A daemon thread: one left blocked on a dead socket never holds the process at exit.
        worker = threading.Thread(target=work, name="rare-openai-request", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            with contextlib.suppress(Exception):  # the deadline is what is reported
                client.close()  # closes the socket the worker reads from
            raise RequestDeadline(f"no complete answer within {timeout:g} s")
        if "error" in box:
            error = box["error"]
            if isinstance(error, ValueError | TypeError | AttributeError):  # a body the client could not read
                raise MalformedAnswer(f"{type(error).__name__}: {self.redact(str(error))[:200]}") from None
            raise error
        return _read_answer(box.get("response"))

    @property
    def where(self) -> str:
        """The server as shown in messages: its URL without credentials, or the OpenAI API."""
        return url_without_credentials(self.base_url) or "the OpenAI API"

    def redact(self, text: str) -> str:
        if self.api_key != UNUSED_KEY:
            text = text.replace(self.api_key, "***")
            if len(self.api_key) > 8:
                text = text.replace(self.api_key[:8], "***")
        return _KEY_PATTERN.sub("sk-***", text)

    @property
    def host(self) -> str:
        """The server's host and port, for identities and messages (no path, user or query: they may
        carry secrets); empty for the OpenAI API."""
        if self.base_url is None:
            return ""
        parts = urlsplit(self.base_url)
        return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def retry_delay(attempt: int, exc: BaseException | None, backoff: float, max_backoff: float) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After when it sends one,
    else `backoff * 2**attempt` with full jitter (clients that failed together do not retry together)."""
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return min(max(float(header), 0.0), max_backoff)
        except ValueError:
            pass
    return min(backoff * 2**attempt, max_backoff) * (0.5 + random.random() / 2)


def _read_answer(response: Any) -> ChatAnswer:
    """The first choice of a chat completion, or MalformedAnswer saying what the server sent instead."""
    if isinstance(response, str | bytes):
        head = response[:60] if isinstance(response, str) else response[:60].decode("utf-8", "replace")
        kind = "an HTML page" if head.lstrip().lower().startswith(("<!doctype", "<html")) else "text that is not JSON"
        raise MalformedAnswer(f"the server answered with {kind}: {head!r}")
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise MalformedAnswer("the answer has no `choices` list: not a chat completion")
    if not choices:
        raise MalformedAnswer("the answer's `choices` is empty")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if message is None or not (content is None or isinstance(content, str)):
        raise MalformedAnswer("the answer's first choice has no message text")
    refusal = getattr(message, "refusal", None)
    model = getattr(response, "model", None)
    return ChatAnswer(content, refusal if isinstance(refusal, str) else None, model if isinstance(model, str) else None)


def url_without_credentials(url: str | None) -> str | None:
    """A URL as it may be shown or recorded (config files are shared with results): user:password@
    dropped, and the values of credential-like query parameters (api-key, token, sig, ...) replaced."""
    if not url:
        return url
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]  # user:password@ dropped; the host and port as written
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
