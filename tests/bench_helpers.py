"""Helpers for the RareBench tests: our own tiny prompt sets, and real HTTP servers on 127.0.0.1
(a static file server standing in for the prompt repository, and a small OpenAI-compatible chat
completions server standing in for GPT-4o)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Our own prompts, in RareBench's one-prompt-per-line format (never the benchmark's text).
OWN_PROMPTS = {
    "rarebench_single_1property.txt": ["a frog with fur", "a square orange", "a cat made of glass"],
    "rarebench_multi_1and.txt": [
        "a hairy frog and a bald lion",
        "a glass dog and a wooden cat",
        "a blue moon and a red sun",
    ],
}


def own_definition(
    tmp_path: Path, checksums: dict[str, str | None], commit: str | None = "c0ffee", prompts_dir: str = "", **pins
) -> Path:
    """A definition like the packaged one, pinning our own prompt set (by file name: normalised SHA-256).
    `prompts_dir` is where a mirror holds them ("": at its top); `pins` replaces top-level sections
    (e.g. paper_judge=...) or, with `authors_plans={file: {file, sha256}}`, each category's plans."""
    import yaml

    from rarecli.bench.definition import load_definition

    packaged = yaml.safe_load(load_definition().path.read_text(encoding="utf-8"))
    packaged["source"]["commit"] = commit
    packaged["source"]["prompts_dir"] = prompts_dir
    plans = pins.pop("authors_plans", None)
    plus_plans = pins.pop("authors_plus_plans", None)
    aapb_plans = pins.pop("aapb_plans", None)
    for c in packaged["categories"]:
        c["sha256"] = checksums.get(c["file"])
        if plans is not None:
            c["authors_plans"] = plans.get(c["file"])
        if plus_plans is not None:
            c["authors_plus_plans"] = plus_plans.get(c["file"])
        if aapb_plans is not None:
            c["aapb_plans"] = aapb_plans.get(c["file"])
    packaged.update(pins)
    path = tmp_path / "definition.yaml"
    path.write_text(yaml.safe_dump(packaged, sort_keys=False), encoding="utf-8")
    return path


def write_prompts(folder: Path, files: dict[str, list[str]] | None = None, newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, prompts in (files or OWN_PROMPTS).items():
        (folder / name).write_bytes((newline.join(prompts) + newline).encode("utf-8"))
    return folder


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the tests, not an error


@contextmanager
def serve(handler_cls: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run `handler_cls` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), handler_cls)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class FileServer:
    """Serves a folder's files; counts requests per path."""

    root: Path
    requests: list[str] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[str]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                owner.requests.append(self.path)
                path = owner.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        with serve(Handler) as url:
            yield url


@dataclass
class ChatRequest:
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt_text(self) -> str:
        user = next(m for m in self.body["messages"] if m["role"] == "user")
        return next(part["text"] for part in user["content"] if part["type"] == "text")

    @property
    def image_bytes(self) -> bytes:
        user = next(m for m in self.body["messages"] if m["role"] == "user")
        url = next(part["image_url"]["url"] for part in user["content"] if part["type"] == "image_url")
        head, data = url.split(",", 1)
        assert head == "data:image/png;base64"
        return base64.b64decode(data)


# A reply: (status, body dict or raw text for the assistant's content, extra headers, delay seconds).
Reply = tuple[int, Any, dict[str, str], float]


def ok(content: str) -> Reply:
    return (200, content, {}, 0.0)


@dataclass
class ChatServer:
    """A small OpenAI-compatible /v1/chat/completions server.

    `script` is consumed one reply per request first; then `respond(request)` decides (default: a
    valid JSON verdict with score 4).
    """

    script: list[Reply] = field(default_factory=list)
    respond: Callable[[ChatRequest], Reply] | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_for(self, request: ChatRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        if self.respond is not None:
            return self.respond(request)
        return ok(json.dumps({"score": 4, "explanation": "all there but one detail"}))

    @contextmanager
    def running(self) -> Iterator[str]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                status, payload, headers, delay = owner.reply_for(
                    ChatRequest({k.lower(): v for k, v in self.headers.items()}, body)
                )
                if delay:
                    time.sleep(delay)
                if status == 200:
                    payload = {
                        "id": f"chatcmpl-{len(owner.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": payload},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                elif not isinstance(payload, dict):
                    payload = {"error": {"message": str(payload), "type": "test"}}
                self._send(status, payload, headers)

            def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        with serve(Handler) as url:
            yield url + "/v1"
