"""One way to reach an OpenAI-compatible API, shared by the R2F planner and the RareBench judge: the
key, the base URL, the client and its timeout, the pacing of retries, and redaction.

- The key is OPENAI_API_KEY (or one passed in). Without one, a `--base-url` server is sent "unused"
  (local servers usually take no key, but the client needs one); the OpenAI API is an error naming
  what the caller needs it for. It is never logged, stored or shown: `redact` scrubs it, its first
  eight characters and anything shaped like an OpenAI key from text a server sends back.
- Timeouts are the client's own (`timeout=`). Retries are not: the client's `max_retries` is 0 and
  callers retry with `retry_delay` (a server's Retry-After first, else jittered exponential backoff),
  because the client's built-in retries do not do these jobs: the planner must see a server reject
  `response_format` (llama.cpp answers HTTP 500) before that is retried four times, and the judge
  spends one budget on transport failures and malformed answers alike and records how many attempts
  each image took.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rarecli.errors import RareError

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")
UNUSED_KEY = "unused"


@dataclass(frozen=True)
class OpenAIConnection:
    base_url: str | None
    api_key: str = field(repr=False)

    @classmethod
    def resolve(cls, base_url: str | None, api_key: str | None = None, *, missing: RareError) -> OpenAIConnection:
        """The connection for `base_url`; `missing` is raised when the OpenAI API has no key to use."""
        key = api_key or os.environ.get("OPENAI_API_KEY", "")
        if not key:
            if base_url is None:
                raise missing
            key = UNUSED_KEY
        return cls(base_url, key)

    def client(self, timeout: float) -> Any:
        import openai

        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, timeout=timeout, max_retries=0)

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


def url_without_credentials(url: str | None) -> str | None:
    """A URL as it may be recorded (config files are shared with results): user:password@ dropped."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6 literal
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)) if parts.netloc else url
