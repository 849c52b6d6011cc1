"""The OpenAI backend through the official `openai` client against a real OpenAI-compatible server:
llama-cpp-python's `llama_cpp.server` on 127.0.0.1 serving the tiny GGUF, started and stopped here.

Failure modes a server shows (429, 5xx, 401) come from a small real HTTP proxy in front of it that
answers the first requests with those statuses, then forwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rarecli.errors import RareError
from rarecli.llm.planner import Planner
from rarecli.llm.schema import Plan
from tests.tiny_gguf import write_tiny_llama

PROMPT = "a glass giraffe next to a knitted whale"
SECRET = "sk-test-0123456789abcdefSECRET"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"llama_cpp.server not ready at {url} after {deadline_s} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    folder = tmp_path_factory.mktemp("llama-server")
    model = write_tiny_llama(folder / "tiny-llama.gguf")
    port = _free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny"]
        + ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--verbose", "False"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base + "/models", proc, deadline_s=120)
        yield base
    except Exception:
        log.flush()
        print((folder / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


class _Proxy:
    """Answers the first len(script) POSTs with the scripted (status, headers, body), then forwards."""

    def __init__(self, upstream: str, script: list[tuple[int, dict, str]]):
        self.upstream, self.script, self.seen = upstream.rstrip("/"), list(script), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy.seen.append((self.path, self.headers.get("authorization", "")))
                if proxy.script:
                    status, headers, text = proxy.script.pop(0)
                    self._reply(status, headers, text.encode())
                    return
                path = self.path.removeprefix("/v1")
                request = urllib.request.Request(
                    proxy.upstream + path, data=body, headers={"content-type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        self._reply(response.status, {}, response.read())
                except urllib.error.HTTPError as exc:
                    self._reply(exc.code, {}, exc.read())

            def _reply(self, status, headers, data: bytes):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _backend(url, mode="auto", **kwargs):
    from rarecli.llm.openai_backend import OpenAIBackend

    return OpenAIBackend("tiny", base_url=url, response_format=mode, backoff=0.01, timeout=120, **kwargs)


def _error(status: int, message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "test", "code": status}})


def test_json_schema_is_rejected_by_llama_cpp_server_with_a_clear_error(server):
    with pytest.raises(RareError) as info:
        Planner(_backend(server, "json_schema")).plan(PROMPT)
    assert "rejected response_format json_schema" in info.value.message
    assert "--response-format grammar" in info.value.hint


def test_auto_falls_back_to_grammar_and_yields_a_valid_plan(server, tmp_path):
    from rarecli.llm.cache import ResponseCache

    backend = _backend(server, "auto")
    plan = Planner(backend, cache=ResponseCache(tmp_path)).plan(PROMPT)
    assert backend.mode == "grammar"  # remembered for the rest of the run
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.llm.backend == "openai" and plan.llm.model == f"tiny@{server.split('//')[1].split('/')[0]}"


def test_grammar_mode_constrains_the_server(server):
    from rarecli.llm.openai_backend import OpenAIBackend
    from rarecli.llm.protocol import Constraint

    backend: OpenAIBackend = _backend(server, "grammar", temperature=1.0)
    constraint = Constraint.for_prompt(PROMPT, min_concepts=1)
    for seed in range(2):
        backend.seed = seed
        data = json.loads(backend.complete([{"role": "user", "content": PROMPT}], constraint))
        assert 1 <= len(data["concepts"]) <= 4
        assert all(c["rare"] in PROMPT and 0 <= c["level"] <= 5 for c in data["concepts"])


def test_json_object_mode_is_validated(server):
    # The server honours json_object+schema loosely; whatever it returns goes through validation.
    planner = Planner(_backend(server, "json_object"), max_attempts=3)
    try:
        plan = planner.plan(PROMPT)
    except RareError as exc:
        assert repr(PROMPT) in exc.message and "attempt(s)" in exc.message
    else:
        assert Plan.from_json(plan.to_json()) == plan


def test_retries_429_and_5xx_with_backoff_then_succeeds(server):
    script = [
        (429, {"retry-after": "0"}, _error(429, "rate limited")),
        (503, {}, _error(503, "overloaded")),
        (500, {}, _error(500, "boom")),
    ]
    with _Proxy(server, script) as proxy:
        plan = Planner(_backend(proxy.url, "grammar", max_retries=3)).plan(PROMPT)
    assert len(proxy.seen) == 4  # three failures, then the forwarded request
    assert Plan.from_json(plan.to_json()) == plan


def test_gives_up_after_bounded_retries(server):
    script = [(429, {"retry-after": "0"}, _error(429, "slow down"))] * 3
    with _Proxy(server, script) as proxy, pytest.raises(RareError) as info:
        Planner(_backend(proxy.url, "grammar", max_retries=2)).plan(PROMPT)
    assert len(proxy.seen) == 3
    assert "429" in info.value.message


def test_timeout_is_a_clear_error():
    # A server that accepts the connection and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        backend = _backend(url, "grammar", max_retries=1)
        backend.timeout = 0.5
        with pytest.raises(RareError) as info:
            Planner(backend).plan(PROMPT)
    assert "cannot reach" in info.value.message and "--timeout" in info.value.hint


def test_api_key_is_sent_but_never_shown_or_stored(server, tmp_path):
    from rarecli.llm.cache import ResponseCache

    # Servers echo part of a bad key, as OpenAI does; the message must not carry it.
    with _Proxy(server, [(401, {}, _error(401, f"Incorrect API key provided: {SECRET}."))]) as proxy:
        backend = _backend(proxy.url, "grammar", api_key=SECRET)
        assert SECRET not in repr(backend)
        with pytest.raises(RareError) as info:
            Planner(backend).plan(PROMPT)
        assert proxy.seen[0][1] == f"Bearer {SECRET}"
    assert "401" in info.value.message
    assert SECRET not in info.value.message and SECRET[:8] not in str(info.value.hint)

    with _Proxy(server, []) as proxy:
        cache = ResponseCache(tmp_path)
        Planner(_backend(proxy.url, "grammar", api_key=SECRET), cache=cache).plan(PROMPT)
    stored = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert stored and SECRET not in stored and SECRET[:8] not in stored


def test_cli_plan_against_the_server(server, tmp_path):
    from tests.conftest import rare_cmd

    env = {**os.environ, "OPENAI_API_KEY": SECRET, "RARE_CACHE_DIR": str(tmp_path)}
    args = ["r2f", "plan", "-", "--base-url", server, "--llm-model", "tiny", "--response-format", "grammar"]
    out = subprocess.run(
        rare_cmd() + args,
        input="a glass giraffe\na knitted whale\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    plans = [Plan.from_json(json.loads(line)) for line in out.stdout.splitlines()]
    assert [p.prompt for p in plans] == ["a glass giraffe", "a knitted whale"]
    assert SECRET not in out.stdout + out.stderr
    assert len(list((tmp_path / "llm").rglob("*.json"))) == 2  # answers cached under RARE_CACHE_DIR/llm


def test_strict_schema_keeps_only_what_openai_strict_mode_accepts():
    from rarecli.llm.openai_backend import strict_schema
    from rarecli.llm.schema import prompt_spans, response_schema

    schema = strict_schema(response_schema(prompt_spans(PROMPT)))
    text = json.dumps(schema)
    for word in ("minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum"):
        assert word not in text
    item = schema["properties"]["concepts"]["items"]
    assert item["properties"]["level"]["enum"] == [0, 1, 2, 3, 4, 5]
    assert item["additionalProperties"] is False and item["required"] == ["rare", "frequent", "level"]
    assert "giraffe next to a knitted" in item["properties"]["rare"]["enum"]
