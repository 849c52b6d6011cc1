"""The `gpt-4o` judge: a vision model grades an image against its prompt, behind the official openai
client (OpenAI, or any compatible server via base_url).

What is asked and how the answer is read is a protocol:
- `RubricProtocol` (`--protocol rare`, the default): our rubric (rarebench/rarebench.yaml, our own
  words) as the system message, the prompt and the image as the user message, temperature 0 and a JSON
  answer with a score s in 1..5; the image scores max(s - 1, 0) / 4 * 100;
- `PaperProtocol` (`--protocol paper`, `paper_judge.py`): the authors' request and reading, exactly.
The model string is pinned (`gpt-4o-2024-05-13`), answers are cached on disk (keyed by everything that
decides them), failures are retried a bounded number of times with backoff, and the API key is never
logged or stored (`rarecli.llm.openai_client`)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.bench.definition import JudgeSpec, image_score
from rarecli.bench.verdict import JudgeFailed, Verdict
from rarecli.errors import RareError
from rarecli.io.atomic import cache_write, write_text_replace
from rarecli.llm.openai_client import MalformedAnswer, OpenAIConnection, RequestDeadline, retry_delay
from rarecli.paths import cache_dir

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_answer(content: str | None) -> dict[str, Any] | None:
    """{"score": int 1..5, "explanation": str} from the judge's reply, or None when malformed."""
    if not content:
        return None
    text = _FENCE.sub("", content.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "score" not in data:
        return None
    score = data["score"]
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    if isinstance(score, bool) or not isinstance(score, int | float) or float(score) != int(score):
        return None
    score = int(score)
    if not 1 <= score <= 5:
        return None
    explanation = data.get("explanation", "")
    if not isinstance(explanation, str):
        return None
    return {"score": score, "explanation": explanation.strip()}


@dataclass(frozen=True)
class RubricProtocol:
    """Our rubric as the system message; a JSON score in 1..5 (see the module docstring)."""

    spec: JudgeSpec
    name: str = "rare"
    attempts: int = 4

    def messages(self, prompt: str, image: bytes) -> list[dict[str, Any]]:
        url = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
        text = f"Text prompt: {prompt}\nGrade the image against this prompt."
        return [
            {"role": "system", "content": self.spec.rubric},
            {
                "role": "user",
                "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
            },
        ]

    def request(self) -> dict[str, Any]:
        return {
            "temperature": self.spec.temperature,
            "max_tokens": self.spec.max_tokens,
            "response_format": {"type": "json_object"},
        }

    def parse(self, content: str | None) -> dict[str, Any] | None:
        return parse_answer(content)

    def score(self, judge_score: int) -> float:
        return image_score(judge_score)

    def identity(self) -> dict[str, Any]:
        # The keys the answer cache has always used for this protocol (older caches stay valid).
        return {
            "rubric_sha256": self.spec.rubric_sha256,
            "temperature": self.spec.temperature,
            "max_tokens": self.spec.max_tokens,
        }


@dataclass
class GPTJudge:
    """A vision judge asking `model` under a protocol (a JudgeSpec means our rubric)."""

    spec: JudgeSpec | Any
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    retries: int | None = None  # None: the protocol's attempts - 1; shared by API errors and malformed answers
    backoff: float = 2.0  # seconds before the 1st retry, doubled each time (a server's Retry-After wins)
    max_backoff: float = 60.0
    cache: Path | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self.protocol = RubricProtocol(self.spec) if isinstance(self.spec, JudgeSpec) else self.spec
        if self.retries is None:
            self.retries = self.protocol.attempts - 1
        self._connection = OpenAIConnection.resolve(
            self.base_url or None,
            self.api_key,
            missing=RareError(
                "the gpt-4o judge needs OPENAI_API_KEY",
                hint="export OPENAI_API_KEY=..., or score offline with --judge clipscore",
            ),
        )
        self.api_key = None  # keep the key only inside the connection, never in a repr or a record
        # Malformed answers and HTTP errors share one budget of attempts (see openai_client).
        self._client = self._connection.client(self.timeout)
        if self.cache is None:
            self.cache = cache_dir() / "judge-cache"

    # The cache key covers everything that decides the answer; not the key, not the process.
    def _cache_path(self, prompt: str, image: bytes) -> Path:
        ident = {
            "model": self.model,
            **self.protocol.identity(),
            "base_url": self.base_url or "",
            "prompt": prompt,
            "image_sha256": hashlib.sha256(image).hexdigest(),
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8")).hexdigest()
        safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model)
        return Path(self.cache) / safe_model / digest[:2] / f"{digest}.json"

    def _redact(self, text: str) -> str:
        return self._connection.redact(text)

    def _delay(self, attempt: int, exc: Exception | None) -> float:
        return retry_delay(attempt, exc, self.backoff, self.max_backoff)

    def __call__(self, image_path: Path, prompt: str) -> Verdict:
        import openai

        protocol = self.protocol
        image = Path(image_path).read_bytes()
        cache_path = self._cache_path(prompt, image)
        if cache_path.is_file():
            try:
                answer = json.loads(cache_path.read_text(encoding="utf-8"))
                return Verdict(protocol.score(answer["score"]), answer, cached=True, attempts=0)
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache entry is asked again and replaced
        messages = protocol.messages(prompt, image)
        last = "no attempt made"
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                response = self._connection.chat(self._client, self.timeout, model=self.model, messages=messages,
                                                 **protocol.request())  # fmt: skip
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
                last = self._redact(f"{type(exc).__name__}: {exc}")
                if attempt + 1 < attempts:
                    self.sleep(self._delay(attempt, exc))
                continue
            except openai.APIStatusError as exc:
                # 400/401/403/404...: asking again gives the same answer.
                raise JudgeFailed(self._redact(f"{type(exc).__name__} (HTTP {exc.status_code}): {exc}")) from None
            except (RequestDeadline, MalformedAnswer) as exc:
                last = self._redact(f"{self._connection.where}: {exc}")
                self._client = self._connection.client(self.timeout)  # a deadline closed the old one
                if attempt + 1 < attempts:
                    self.sleep(self._delay(attempt, None))
                continue
            content = response.content
            answer = protocol.parse(content)
            if answer is None:
                last = self._redact(f"malformed judge answer: {(content or '')[:200]!r}")
                continue
            answer["response_model"] = response.model
            text = json.dumps(answer, ensure_ascii=False, sort_keys=True)
            cache_write("judge answer", lambda text=text: write_text_replace(cache_path, text))
            return Verdict(protocol.score(answer["score"]), answer, attempts=attempt + 1)
        raise JudgeFailed(f"judge gave up after {attempts} attempts: {last}")
