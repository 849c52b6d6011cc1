"""The RareBench judges. gpt-4o: the real openai client against a real OpenAI-compatible server on
127.0.0.1 (retries, malformed answers, caching, timeouts, key hygiene). clipscore: tiny-clip offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rarecli.bench.clip_judge import ClipScoreJudge, split_clip_spec
from rarecli.bench.definition import load_definition
from rarecli.bench.gpt_judge import GPTJudge, parse_answer
from rarecli.bench.verdict import JudgeFailed
from rarecli.errors import RareError
from tests.bench_helpers import ChatServer, ok

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _judge(url, tmp_path, **kw):
    spec = load_definition().judge
    return GPTJudge(spec, spec.model, base_url=url, api_key=KEY, backoff=0.01, cache=tmp_path / "jc", **kw)


def _verdict(score, explanation="fine"):
    return ok(json.dumps({"score": score, "explanation": explanation}))


def test_parse_answer_accepts_only_a_1_to_5_json_score():
    assert parse_answer('{"score": 4, "explanation": " ok "}') == {"score": 4, "explanation": "ok"}
    assert parse_answer('```json\n{"score": "5"}\n```') == {"score": 5, "explanation": ""}
    assert parse_answer('{"score": 3.0, "explanation": "x"}')["score"] == 3
    for bad in (None, "", "4", "score: 4", '{"score": 6}', '{"score": 0}', '{"score": 3.5}', '{"score": true}',
                '{"explanation": "x"}', '[4]', '{"score": 4, "explanation": 7}'):  # fmt: skip
        assert parse_answer(bad) is None, bad


def test_request_shape_and_retry_after_429_and_500(tmp_path, image):
    server = ChatServer(
        script=[
            (429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0"}, 0.0),
            (500, {"error": {"message": "boom", "type": "server"}}, {}, 0.0),
            _verdict(4, "a furry frog, one leg too many"),
        ]
    )
    sleeps = []
    with server.running() as url:
        verdict = _judge(url, tmp_path, sleep=sleeps.append)(image, "a frog with fur")
    assert verdict.score == 75.0 and verdict.attempts == 3 and not verdict.cached
    assert verdict.raw["score"] == 4 and verdict.raw["explanation"] == "a furry frog, one leg too many"
    assert len(server.requests) == 3
    assert sleeps[0] == 0.0  # the server's Retry-After wins over our backoff
    assert len(sleeps) == 2 and sleeps[1] > 0
    request = server.requests[-1]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "gpt-4o-2024-05-13"
    assert request.body["temperature"] == 0 and request.body["response_format"] == {"type": "json_object"}
    assert request.body["messages"][0] == {"role": "system", "content": load_definition().judge.rubric}
    assert "a frog with fur" in request.prompt_text
    assert request.image_bytes == image.read_bytes()


def test_malformed_answers_are_retried_then_a_recorded_failure(tmp_path, image):
    server = ChatServer(respond=lambda r: ok("I would give it a four."))
    with server.running() as url:
        judge = _judge(url, tmp_path, retries=2)
        with pytest.raises(JudgeFailed, match="gave up after 3 attempts: malformed judge answer"):
            judge(image, "a frog with fur")
    assert len(server.requests) == 3
    assert not list((tmp_path / "jc").rglob("*.json"))  # failures are not cached


def test_a_malformed_answer_then_a_good_one(tmp_path, image):
    server = ChatServer(script=[ok('{"score": 9}'), _verdict(2)])
    with server.running() as url:
        verdict = _judge(url, tmp_path)(image, "a frog with fur")
    assert verdict.score == 25.0 and verdict.attempts == 2


def test_answers_are_cached_on_disk(tmp_path, image):
    server = ChatServer(respond=lambda r: _verdict(5))
    with server.running() as url:
        first = _judge(url, tmp_path)(image, "a frog with fur")
        second = _judge(url, tmp_path)(image, "a frog with fur")  # a new judge, as in a second run
        assert len(server.requests) == 1
        _judge(url, tmp_path)(image, "a frog without fur")  # another prompt is another question
        assert len(server.requests) == 2
    assert first.score == second.score == 100.0 and second.cached and not first.cached


def test_timeouts_are_retried(tmp_path, image):
    server = ChatServer(script=[(200, json.dumps({"score": 3}), {}, 1.5)], respond=lambda r: _verdict(3))
    with server.running() as url:
        verdict = _judge(url, tmp_path, timeout=0.3)(image, "a frog with fur")
    assert verdict.attempts == 2 and verdict.score == 50.0


def test_client_errors_are_not_retried_and_the_key_never_leaks(tmp_path, image):
    server = ChatServer(respond=lambda r: (401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, {}, 0.0))
    with server.running() as url:
        judge = _judge(url, tmp_path)
        with pytest.raises(JudgeFailed) as info:
            judge(image, "a frog with fur")
    assert len(server.requests) == 1
    assert "HTTP 401" in info.value.message
    assert KEY not in info.value.message and KEY not in repr(judge)


def test_missing_key_is_a_clear_error_unless_a_local_server(tmp_path, monkeypatch, image):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = load_definition().judge
    with pytest.raises(RareError, match="needs OPENAI_API_KEY") as info:
        GPTJudge(spec, spec.model)
    assert "--judge clipscore" in info.value.hint
    server = ChatServer()
    with server.running() as url:
        GPTJudge(spec, spec.model, base_url=url, cache=tmp_path / "jc")(image, "a frog")
    assert server.requests[0].headers["authorization"] == "Bearer unused"


def test_clipscore_maps_cosine_to_0_100(cpu, image):
    judge = ClipScoreJudge("tiny-clip", cpu)
    verdict = judge(image, "a frog with fur")
    cosine = verdict.raw["cosine"]
    assert -1.0 <= cosine <= 1.0
    assert verdict.score == pytest.approx(100.0 * min(2.5 * max(cosine, 0.0), 1.0))
    # Deterministic, and it depends on the text.
    assert judge(image, "a frog with fur").raw["cosine"] == cosine
    assert judge(image, "a cathedral at night").raw["cosine"] != cosine


def test_clip_judge_names():
    assert split_clip_spec("ViT-H-14/laion2b_s32b_b79k") == ("ViT-H-14", "laion2b_s32b_b79k")
    assert split_clip_spec("openai/clip-vit-base-patch32") == ("openai/clip-vit-base-patch32", None)
    assert split_clip_spec("tiny-clip") == ("tiny-clip", None)
