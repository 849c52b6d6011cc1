"""Faults, second round (issue 25), classes 1-3 and 11: hostile OpenAI-compatible servers on 127.0.0.1
(replies used before they were checked; bodies dripped a byte a second), secrets in --base-url, and
config files of nested YAML aliases. Each test failed on the commit before the fix."""

from __future__ import annotations

import json
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.bench_helpers import serve
from tests.conftest import rare_cmd

GOOD = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}]}
BODIES: dict[str, tuple[str, bytes]] = {
    "text": ("text/plain", b"hello, I am not an API"),
    "html": ("text/html", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
    "empty": ("application/json", json.dumps({"id": "x", "choices": []}).encode()),
    "nochoices": ("application/json", json.dumps({"id": "x", "object": "chat.completion"}).encode()),
}


class Hostile(BaseHTTPRequestHandler):
    """/<mode>/v1/chat/completions answers 200 with the mode's body; `drip` sends a valid answer one byte
    a second (each read succeeds, so a per-read timeout never fires)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mode = self.path.strip("/").split("/")[0]
        if mode == "drip":
            body = json.dumps(GOOD).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1.0)
            except OSError:
                pass
            return
        kind, body = BODIES[mode]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _plan(base_url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        rare_cmd() + ["r2f", "plan", "A hairy frog", "--base-url", base_url, "--no-cache", *extra],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize("mode, says", [("text", "not JSON"), ("html", "HTML page"), ("empty", "`choices` is empty"),
                                        ("nochoices", "no `choices` list")])  # fmt: skip
def test_an_answer_that_is_not_a_chat_completion_is_named_after_retries(mode, says):
    from rarecli.errors import RareError
    from rarecli.llm.openai_backend import OpenAIBackend
    from rarecli.llm.planner import R2F

    with serve(Hostile) as url:
        backend = OpenAIBackend(base_url=f"{url}/{mode}/v1", max_retries=1, backoff=0.01, timeout=10)
        with pytest.raises(RareError) as caught:
            backend.complete([{"role": "user", "content": "plan"}], R2F.constraint("A hairy frog"))
    message = str(caught.value)
    assert "did not answer like an OpenAI-compatible server" in message and says in message
    assert f"{url}/{mode}/v1" in message


def test_the_cli_says_it_in_one_line():
    with serve(Hostile) as url:
        done = _plan(f"{url}/html/v1", "--timeout", "5")
    lines = [line for line in done.stderr.splitlines() if line.startswith(("Error", "Hint"))]
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert lines[0].startswith("Error: ") and "HTML page" in lines[0]


def test_a_port_out_of_range_is_a_usage_error_before_any_request():
    done = _plan("http://127.0.0.1:99999/v1")
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert "Error: --base-url http://127.0.0.1:99999/v1: Port out of range" in done.stderr


def test_timeout_bounds_a_whole_request_even_when_the_body_drips():
    from rarecli.errors import RareError
    from rarecli.llm.openai_backend import OpenAIBackend
    from rarecli.llm.planner import R2F

    with serve(Hostile) as url:
        backend = OpenAIBackend(base_url=f"{url}/drip/v1", max_retries=1, backoff=0.01, timeout=2)
        started = time.monotonic()
        with pytest.raises(RareError, match="no complete answer within --timeout 2 s"):
            backend.complete([{"role": "user", "content": "plan"}], R2F.constraint("A hairy frog"))
    assert time.monotonic() - started < 8  # two requests of 2 s and a short wait; the body takes minutes


def test_the_gpt_judge_is_bounded_the_same_way(tmp_path):
    from rarecli.bench.definition import load_definition
    from rarecli.bench.gpt_judge import GPTJudge, JudgeFailed

    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    with serve(Hostile) as url:
        judge = GPTJudge(load_definition().judge, "gpt-4o-2024-05-13", base_url=f"{url}/drip/v1", timeout=2,
                         retries=1, cache=tmp_path / "cache", sleep=lambda s: None)  # fmt: skip
        started = time.monotonic()
        with pytest.raises(JudgeFailed, match="no complete answer within 2 s"):
            judge(image, "a frog with fur")
        assert time.monotonic() - started < 8
        bad = GPTJudge(load_definition().judge, "gpt-4o-2024-05-13", base_url=f"{url}/empty/v1", timeout=5,
                       retries=1, cache=tmp_path / "cache", sleep=lambda s: None)  # fmt: skip
        with pytest.raises(JudgeFailed, match="`choices` is empty"):
            bad(image, "a frog with fur")


SECRET_URL = "http://alice:pw@127.0.0.1:1/v1?api-key=K3y&deployment=d"


def test_credentials_in_a_base_url_are_never_printed():
    done = _plan(SECRET_URL, "--timeout", "1")
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert "cannot reach http://127.0.0.1:1/v1?api-key=***&deployment=d" in done.stderr
    for secret in ("alice", ":pw@", "K3y"):
        assert secret not in done.stderr and secret not in done.stdout


def test_redaction_rules():
    from rarecli.llm.openai_client import url_without_credentials as clean

    assert clean("https://u:p@h.example:8443/v1?token=t&x=1&sig=s") == "https://h.example:8443/v1?token=***&x=1&sig=***"
    assert clean("http://[::1]:8000/v1?API_KEY=k") == "http://[::1]:8000/v1?API_KEY=***"
    assert clean("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_a_config_of_nested_aliases_is_refused_at_once(tmp_path):
    text = "a: &b0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    for i in range(1, 9):
        text += f"b{i}: &b{i} [" + ",".join([f"*b{i - 1}"] * 10) + "]\n"
    config = tmp_path / "config.yaml"
    config.write_text(text)
    started = time.monotonic()
    done = subprocess.run([*rare_cmd(), "env"], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "RARE_CONFIG": str(config)})  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - started < 20
    assert "aliases (*name) are not allowed" in done.stderr and "line 2" in done.stderr


@pytest.mark.parametrize("text, says", [("model: [a, b]\n", "`model` must be a single value, not a list"),
                                        ("seedselect:\n  iters: {a: 1}\n", "unknown section `seedselect.iters`")])  # fmt: skip
def test_config_values_are_type_checked(tmp_path, text, says):
    import os

    config = tmp_path / "config.yaml"
    config.write_text(text)
    done = subprocess.run([*rare_cmd(), "seedselect", "x", "--method", "sd", "--model", "tiny-sd", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RARE_CONFIG": str(config)})  # fmt: skip
    assert done.returncode == 1 and says in done.stderr and not (tmp_path / "o").exists()


def test_a_folder_named_by_rare_config_is_called_a_folder(tmp_path):
    import os

    done = subprocess.run([*rare_cmd(), "env"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RARE_CONFIG": str(tmp_path)})  # fmt: skip
    assert done.returncode == 1 and "a folder, not a config file" in done.stderr
