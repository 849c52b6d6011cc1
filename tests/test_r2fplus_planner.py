"""`rare r2f plan --plus` (issue 14): the R2F+ answer's grammar and schema, its repairs, the planner with
a real llama.cpp model (the tiny random-weight GGUF the tests write), and the command end to end into
`rare r2f generate` on the tiny SD3, with nothing written for a broken plan."""

from __future__ import annotations

import json
import subprocess

import pytest

from rarecli.errors import InputError
from rarecli.io.images import read_metadata
from rarecli.llm.answers import InvalidAnswer
from rarecli.llm.planner import Planner, load_template
from rarecli.llm.schema import validate
from rarecli.methods.r2f_plus.answer import R2F_PLUS, answer_schema, constraint, parse_answer
from rarecli.methods.r2f_plus.schema import PlusPlan
from tests.conftest import rare_cmd
from tests.tiny_gguf import write_tiny_llama

PROMPT = "a hairy frog next to a cube-shaped melon"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def _answer(*objects):
    return json.dumps({"objects": list(objects)})


def _obj(phrase, prompt, box, frequent=()):
    return {
        "phrase": phrase,
        "prompt": prompt,
        "box": box,
        "frequent": [{"phrase": p, "level": v} for p, v in frequent],
    }


def test_an_answer_becomes_a_plan_whose_base_prompt_is_the_prompt_with_slots():
    plan, repairs = parse_answer(
        _answer(
            _obj("hairy frog", "a photo of #1", [0.1, 0.2, 0.5, 0.9], [("hairy animal", 5)]),
            _obj("a cube-shaped melon", "#2 on a table", [0.55, 0.4, 0.95, 0.8]),
        ),
        PROMPT,
    )
    assert repairs == []
    assert plan.base_prompt == "a #1 next to #2"
    assert [(o.key, o.phrase, o.prompt, o.frequent, o.levels) for o in plan.objects] == [
        ("#1", "hairy frog", "a photo of #1", ("hairy animal",), (5,)),
        ("#2", "a cube-shaped melon", "#2 on a table", (), ()),
    ]
    assert PlusPlan.from_json(plan.to_json()) == plan


def test_mechanical_repairs_are_made_and_listed():
    plan, repairs = parse_answer(
        "Here you go:\n```json\n"
        + _answer(
            _obj("a hairy frog", "#1", [0.1, 0.2, 0.5, 0.9], [("a hairy frog", 2)]),
            _obj("hairy frog next", "#2", [0.2, 0.2, 0.3, 0.3]),  # overlaps the first: dropped
            _obj("melon", "#3 alone", [0.9, 0.8, 0.6, 0.4]),  # corners swapped; renumbered to #2
        )
        + "\n```",
        PROMPT,
    )
    assert plan.base_prompt == "#1 next to a cube-shaped #2"
    assert plan.objects[0].frequent == ()  # its stand-in was the object itself
    assert (plan.objects[1].key, plan.objects[1].prompt, plan.objects[1].box) == (
        "#2",
        "#2 alone",
        (0.6, 0.4, 0.9, 0.8),
    )
    assert any("overlaps" in r for r in repairs) and any("corners" in r for r in repairs)
    assert any("is now #2" in r for r in repairs) and any("the object itself" in r for r in repairs)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_answer(_obj("a purple frog", "#1", [0.1, 0.1, 0.5, 0.5])), "does not occur in the prompt"),
        (_answer(_obj("frog", "#2 alone", [0.1, 0.1, 0.5, 0.5])), "must hold its slot #1 exactly once"),
        (_answer(_obj("frog", "#1 and #1", [0.1, 0.1, 0.5, 0.5])), "must hold its slot #1 exactly once"),
        (_answer(_obj("frog", "#1", [0.1, 0.5, 0.5, 0.5])), "objects[0].box must have"),
        (_answer(_obj("frog", "#1", [0.1, 0.1, 0.5, 0.5], [("a", 4), ("b", 2)])), "must not decrease"),
        (_answer(_obj("frog", "#1", [0.1, 0.1, 1.5, 0.5])), "1.5 > 1"),
        ('{"objects": []}', "fewer than 1 items"),
    ],
)
def test_an_unusable_answer_is_refused_with_its_reason(answer, says):
    with pytest.raises(InvalidAnswer) as caught:
        parse_answer(answer, PROMPT)
    assert says in str(caught.value)


def test_the_templates_examples_are_valid_answers():
    template = load_template(kind=R2F_PLUS)
    assert template.tag == "r2fplus_plan@1" and len(template.examples) == 2


def test_grammar_decoding_of_a_real_model_gives_plans_that_pass_every_check(gguf):
    from rarecli.llm.llama_backend import LlamaBackend

    backend = LlamaBackend(str(gguf), n_threads=1)
    messages = load_template(kind=R2F_PLUS).messages(PROMPT)
    for prompt in (PROMPT, "three glass cats and a dog made of leaves under a square moon"):
        raw = backend.complete(load_template(kind=R2F_PLUS).messages(prompt), constraint(prompt))
        assert validate(json.loads(raw), answer_schema()) == []  # the grammar's doing: the model is random
        plan, _ = parse_answer(raw, prompt)
        assert PlusPlan.from_json(plan.to_json()) == plan
    assert messages[-1]["content"].endswith(PROMPT)


def test_the_planner_caches_r2fplus_answers_apart_from_r2f_ones(gguf, tmp_path):
    from rarecli.llm.cache import ResponseCache
    from rarecli.llm.llama_backend import LlamaBackend

    cache = ResponseCache(tmp_path / "cache")
    backend = LlamaBackend(str(gguf), n_threads=1)
    first = Planner(backend, cache=cache, kind=R2F_PLUS).plan(PROMPT)
    again = Planner(backend, cache=cache, kind=R2F_PLUS).plan(PROMPT)
    assert isinstance(first, PlusPlan) and first.llm["cached"] is False and again.llm["cached"] is True
    assert again.objects == first.objects and again.llm["template"] == "r2fplus_plan@1"
    r2f = Planner(backend, cache=cache).plan(PROMPT)  # the R2F plan of the same prompt: not that answer
    assert r2f.llm.cached is False and r2f.llm.template == "r2f_plan@1"


def _rare(args, **kw):
    return subprocess.run(rare_cmd() + args, capture_output=True, text=True, timeout=600, **kw)


def test_plan_plus_then_generate_on_tiny_sd3_writes_the_image_its_objects_and_masks(gguf, tmp_path):
    planned = _rare(["r2f", "plan", "--plus", PROMPT, "--backend", "llama", "--llm-model", str(gguf)])
    assert planned.returncode == 0, planned.stderr
    doc = json.loads(planned.stdout)
    assert doc["schema"] == "rare.r2fplus.plan" and doc["llm"]["backend"] == "llama"
    (tmp_path / "plan.json").write_text(planned.stdout)
    out = tmp_path / "out"
    made = _rare(["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sd3", "--steps", "4",
                  "--masks", "boxes", "--out", str(out), "--json"])  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    n = len(doc["objects"])
    names = sorted(p.rsplit(".", 2)[-2] for p in result["parts"])
    assert names == sorted(
        ["boxes"] + [f"object-{i}" for i in range(1, n + 1)] + [f"mask-{i}" for i in range(1, n + 1)]
    )
    image = read_metadata(__import__("pathlib").Path(result["images"][0]))["rare"]
    assert image["method"] == "r2f-plus" and image["plan"] == doc and image["hyper"]["masks"] == "boxes"
    assert set(image["masks"].values()) == {"box"}
    for part in result["parts"]:
        meta = read_metadata(__import__("pathlib").Path(part))["rare"]
        assert meta["plan"] == doc and meta["part"] == part.rsplit(".", 2)[-2]
    # The same plan with the tiny detector and segmenter making the masks.
    made = _rare(["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sd3", "--steps", "4",
                  "--masks", "detector", "--detector", "tiny-grounding-dino", "--segmenter", "tiny-sam",
                  "--out", str(out), "--json"])  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    image = read_metadata(__import__("pathlib").Path(result["images"][0]))["rare"]
    assert image["plan"] == doc and image["hyper"]["masks"] == "detector" and len(image["masks"]) == n
    assert len(result["parts"]) == 2 * n + 1


GOOD = {
    "schema": "rare.r2fplus.plan",
    "version": 1,
    "prompt": PROMPT,
    "base_prompt": "a #1 next to #2",
    "objects": [
        {"key": "#1", "phrase": "hairy frog", "prompt": "#1", "frequent": ["hairy dog"], "levels": [5],
         "box": [0.1, 0.2, 0.5, 0.9]},
        {"key": "#2", "phrase": "a cube-shaped melon", "prompt": "#2", "frequent": ["a cube", "a cube-shaped fruit"],
         "levels": [1, 2], "box": [0.55, 0.4, 0.95, 0.8]},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda d: d.update(base_prompt="a frog next to #2"), "R2F+ plan: base_prompt must hold #1 exactly once"),
        (lambda d: d["objects"][1].update(box=[0.55, 0.4, 1.2, 0.8]), "R2F+ plan: objects[1].box must lie inside"),
        (lambda d: d["objects"][1].update(levels=[2, 1]), "R2F+ plan: objects[1].levels must not decrease"),
        (lambda d: d.update(version=9), "R2F+ plan: version 9 is not a version this rare reads"),
    ],
)
def test_a_broken_plan_is_one_line_naming_the_field_and_nothing_is_written(tmp_path, edit, says):
    doc = json.loads(json.dumps(GOOD))
    edit(doc)
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    made = _rare(["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sd3", "--out", str(out)])
    assert made.returncode == 1 and made.stdout == ""
    first = made.stderr.strip().splitlines()[0]
    assert first.startswith("Error: ") and says in first, made.stderr
    assert not out.exists()


def test_r2fplus_plans_refuse_other_families_and_r2f_only_options(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(GOOD))
    made = _rare(["r2f", "generate", str(tmp_path / "plan.json"), "--model", "tiny-sdxl", "--out", str(tmp_path / "o")])
    assert made.returncode == 1 and "SD3" in made.stderr and not (tmp_path / "o").exists()
    made = _rare(
        ["r2f", "generate", str(tmp_path / "plan.json"), "--schedule", "authors", "--out", str(tmp_path / "o")]
    )
    assert made.returncode == 1 and "--schedule is for R2F plans" in made.stderr


def test_openai_backend_asks_under_the_strict_answer_schema_and_retries_with_the_errors(tmp_path):
    import os

    from tests.bench_helpers import ChatServer, ok

    bad = _answer(_obj("a purple frog", "#1", [0.1, 0.2, 0.5, 0.9]))
    good = _answer(_obj("hairy frog", "#1 in a pond", [0.5, 0.9, 0.1, 0.2], [("hairy animal", 5)]))
    server = ChatServer(script=[ok(bad), ok(good)])
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-secret-1234", "RARE_CACHE_DIR": str(tmp_path / "cache")}
    with server.running() as url:
        run = _rare(["r2f", "plan", "--plus", PROMPT, "--backend", "openai", "--base-url", url], env=env)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["objects"][0]["box"] == [0.1, 0.2, 0.5, 0.9] and plan["base_prompt"] == "a #1 next to a cube-shaped melon"
    assert plan["llm"]["attempts"] == 2 and any("corners" in r for r in plan["llm"]["repairs"])
    first, second = server.requests
    sent = first.body["response_format"]["json_schema"]
    assert sent["strict"] is True
    item = sent["schema"]["properties"]["objects"]["items"]
    assert "a hairy frog" in item["properties"]["phrase"]["enum"] and item["additionalProperties"] is False
    assert "does not occur in the prompt" in second.body["messages"][-1]["content"]
    assert "sk-test-secret-1234" not in run.stdout + run.stderr


def test_the_plan_documents_json_schema_agrees_with_the_checks(tmp_path):
    from rarecli.methods.r2f_plus.schema import plan_schema

    schema = plan_schema()
    assert validate(GOOD, schema) == [] and PlusPlan.from_json(GOOD).to_json() == GOOD
    printed = _rare(["r2f", "plan", "--plus", "--schema"])
    assert printed.returncode == 0 and json.loads(printed.stdout) == schema
    for edit in (
        lambda d: d["objects"][0].update(levels=[6]),
        lambda d: d["objects"][1].update(box=[0.55, 0.4, 1.2, 0.8]),
        lambda d: d.update(version=2),
        lambda d: d["objects"][0].update(colour="red"),
        lambda d: d.update(objects=[]),
    ):
        doc = json.loads(json.dumps(GOOD))
        edit(doc)
        assert validate(doc, schema) != []  # both refuse it
        with pytest.raises(InputError):
            PlusPlan.from_json(doc)
