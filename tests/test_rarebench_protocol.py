"""RareBench as published: the pinned files from a mirror of the authors' repository (our own files in
its layout, served on 127.0.0.1), the authors' judge protocol against a real OpenAI-compatible test
server, and the replay of authors'-format plans with their step rule, checked against tables worked
out by hand from that rule."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from rarecli.bench.dataset import normalise, sha256_text
from rarecli.bench.paper_judge import parse_paper_answer, read_rubric
from rarecli.cli.app import run
from rarecli.errors import InputError, RareError
from rarecli.methods.r2f.authors import authors_steps, import_plans
from rarecli.methods.r2f.schedule import build_schedule
from tests.bench_helpers import ChatServer, FileServer, ok, own_definition
from tests.conftest import rare_cmd

PROPERTY = "rarebench_single_1property.txt"
PROMPTS_DIR = "test/original_prompt/rarebench"
PLANS_FILE = "test/r2f_prompt/rarebench/rarebench_single_1property_gpt4.txt"
JUDGE_FILE = "eval/eval_by_GPT.py"

# A judge script of our own, shaped like the authors' (a function whose f-string rubric takes the prompt,
# continued over lines with backslashes), so the run-time reading of their file is tested on real syntax.
OUR_JUDGE = '''import json


def eval_GPT4(img_path, prompt, key):
    eval_prompt = f"Look at the picture and say how well it shows: \\"{prompt}\\". \\
            Use a whole number from 0 (nothing of it) to 5 (all of it). \\
            Reply as ### SCORE: number ### EXPLANATION: a few words"
    return eval_prompt
'''

# Plans of our own in the authors' format: chains of our own sentences, levels as strings or lists.
OUR_PLANS = {
    "a frog with fur and a glass cat": {  # two stand-ins, levels ascending
        "visual_detail_level": ["2", "4"],
        "r2f_prompt": [["an animal with fur and a glass animal", "a frog with fur and a glass animal",
                        "a frog with fur and a glass cat"]],  # fmt: skip
    },
    "a bald lion and a wooden dog": {  # descending levels: the authors' counter never reaches the end
        "visual_detail_level": ["5", "3"],
        "r2f_prompt": [["a bald animal and a wooden animal", "a bald lion and a wooden animal",
                        "a bald lion and a wooden dog"]],  # fmt: skip
    },
    "a blue moon": {"visual_detail_level": "3", "r2f_prompt": [["a blue moon"]]},  # a one-prompt chain
    **{
        f"a square orange number {level}": {
            "visual_detail_level": str(level),
            "r2f_prompt": [["a square fruit", f"a square orange number {level}"]],
        }
        for level in range(1, 6)
    },
}


def by_hand(n_prompts: int, even: list[tuple[int, int, int]], steps: int = 50) -> list[int]:
    """A step table from segments worked out by hand: (first even step, last even step, chain index);
    every odd step, and every even step no segment names, is the chain's last (rare) prompt."""
    table = [n_prompts - 1] * steps
    for first, last, index in even:
        for t in range(first, last + 1, 2):
            table[t] = index
    return table


# SD3's level table at 50 steps is [0, 5, 10, 20, 30, 40].
HAND_TABLES = {
    "a frog with fur and a glass cat": by_hand(3, [(0, 8, 0), (10, 28, 1)]),  # stops 10, 30, 50
    "a bald lion and a wooden dog": by_hand(3, [(0, 38, 0), (40, 48, 1)]),  # stops 40, 20, 50: never 2
    "a blue moon": by_hand(1, []),  # stops [0]: the one prompt throughout
    "a square orange number 1": by_hand(2, [(0, 4, 0)]),
    "a square orange number 2": by_hand(2, [(0, 8, 0)]),
    "a square orange number 3": by_hand(2, [(0, 18, 0)]),
    "a square orange number 4": by_hand(2, [(0, 28, 0)]),
    "a square orange number 5": by_hand(2, [(0, 38, 0)]),
}


def test_the_authors_rule_reproduces_the_hand_made_tables():
    plans = {p.prompt: p for p in import_plans(json.dumps(OUR_PLANS), "ours.txt")}
    assert set(plans) == set(HAND_TABLES)
    for prompt, expected in HAND_TABLES.items():
        schedule = build_schedule(plans[prompt], "StableDiffusion3Pipeline", 50, rule="authors")
        assert list(schedule.indices) == expected, prompt
        assert schedule.prompts == plans[prompt].chain.prompts and schedule.rule == "authors"
    assert build_schedule(plans["a bald lion and a wooden dog"], "sd3", 50, "authors").stops == (40, 20, 50)
    # Ours on the same descending plan sorts the stops: each stand-in gets its turn, the rare prompt ends it.
    ours = build_schedule(plans["a bald lion and a wooden dog"], "sd3", 50, "rare")
    assert ours.stops == (20, 40) and list(ours.indices) == by_hand(3, [(0, 18, 0), (20, 38, 1)])


def test_the_authors_rule_stalls_on_a_level_0_stop_as_theirs_does():
    # [0, 50]: the counter never leaves mode 0, so the stand-in guides every even step.
    stops, table = authors_steps([0], 2, 50, (0, 5, 10, 20, 30, 40))
    assert stops == [0, 50] and table == by_hand(2, [(0, 48, 0)])


def test_importing_authors_plans_names_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match=r"ours.txt\['a frog'\].visual_detail_level: '9' is not a level"):
        import_plans(json.dumps({"a frog": {"visual_detail_level": "9", "r2f_prompt": [["a", "a frog"]]}}), "ours.txt")
    with pytest.raises(InputError, match="2 level.s. for 1 stand-in"):
        import_plans(json.dumps({"a frog": {"visual_detail_level": ["1", "2"], "r2f_prompt": [["a", "b"]]}}), "f")
    with pytest.raises(InputError, match="not JSON"):
        import_plans("a frog\n", "f")


def test_plan_import_on_the_command_line(tmp_path):
    source = tmp_path / "ours.txt"
    source.write_text(json.dumps(OUR_PLANS), encoding="utf-8")
    out = subprocess.run(rare_cmd() + ["r2f", "plan", "--import", str(source)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plans = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["prompt"] for p in plans] == list(OUR_PLANS)
    assert all(p["version"] == 2 and p["concepts"] == [] and p["chain"]["source"] == str(source) for p in plans)
    bad = tmp_path / "bad.txt"
    bad.write_text('{"a frog": {"r2f_prompt": [["a frog"]]}}', encoding="utf-8")
    out = subprocess.run(rare_cmd() + ["r2f", "plan", "--import", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("Error: ") and "expected visual_detail_level and r2f_prompt" in out.stderr


def test_the_rubric_is_read_out_of_the_judge_script_exactly():
    from rarecli.bench.definition import PaperJudgeSpec, PinnedFile

    spec = PaperJudgeSpec(PinnedFile(JUDGE_FILE, "0" * 64), "eval_GPT4", "eval_prompt", "m", 4096, "image/jpeg", 3, (0, 5))
    rubric = read_rubric(OUR_JUDGE.encode(), spec)
    namespace: dict = {}
    exec(OUR_JUDGE, namespace)  # Python's own reading of the f-string is the reference
    for prompt in ("a frog with fur", 'a "quoted" {braced} prompt'):
        assert rubric.text(prompt) == namespace["eval_GPT4"](None, prompt, None)
    with pytest.raises(RareError, match="eval_GPT4\\(\\).rubric not found"):
        read_rubric(OUR_JUDGE.encode(), PaperJudgeSpec(spec.script, "eval_GPT4", "rubric", "m", 1, "x", 1, (0, 5)))


def test_the_authors_answer_format():
    assert parse_paper_answer("### SCORE: 0 ### EXPLANATION: nothing like it") == {"score": 0, "explanation": "nothing like it"}
    assert parse_paper_answer("### SCORE: 5\n### EXPLANATION: all there")["score"] == 5
    for bad in (None, "", "5", "### SCORE: five ### EXPLANATION: x", "### SCORE: 6 ### EXPLANATION: x", '{"score": 4}'):
        assert parse_paper_answer(bad) is None, bad


# -- end to end, against a mirror of the repository -----------------------------------------------------


def _mirror(root: Path, prompts: list[str], judge: str = OUR_JUDGE, plans: dict | None = None) -> dict:
    """Our files in the repository's layout under root/c0ffee/; returns their digests for a definition."""
    base = root / "c0ffee"
    (base / PROMPTS_DIR).mkdir(parents=True, exist_ok=True)
    (base / PROMPTS_DIR / PROPERTY).write_text("\n".join(prompts), encoding="utf-8")  # no final newline
    (base / "eval").mkdir(exist_ok=True)
    (base / JUDGE_FILE).write_text(judge, encoding="utf-8")
    raw_plans = json.dumps(plans or OUR_PLANS, indent=4).encode()
    (base / PLANS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (base / PLANS_FILE).write_bytes(raw_plans)
    return {
        "prompts": sha256_text(normalise("\n".join(prompts))),
        "judge": hashlib.sha256(judge.encode()).hexdigest(),
        "plans": hashlib.sha256(raw_plans).hexdigest(),
    }


def _definition(tmp_path: Path, digests: dict) -> Path:
    judge = {
        "file": JUDGE_FILE,
        "sha256": digests["judge"],
        "function": "eval_GPT4",
        "variable": "eval_prompt",
        "model": "gpt-4o-2024-05-13",
        "max_tokens": 4096,
        "image_mime": "image/jpeg",
        "attempts": 3,
        "judge_scale": [0, 5],
    }
    plans = {PROPERTY: {"file": PLANS_FILE, "sha256": digests["plans"]}}
    return own_definition(
        tmp_path, {PROPERTY: digests["prompts"]}, prompts_dir=PROMPTS_DIR, paper_judge=judge, authors_plans=plans
    )


def _bench(out: Path, *extra: str) -> list[str]:
    return ["bench", "rarebench", "--out", str(out), "-c", "S-property", "--device", "cpu", "--dtype", "fp32", *extra]


@pytest.fixture
def mirror_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_a_run_downloads_verifies_and_caches_from_a_mirror(mirror_env, monkeypatch, capsys):
    tmp_path = mirror_env
    digests = _mirror(tmp_path / "mirror", ["a frog with fur", "a square orange "])  # a trailing space, as upstream
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(_definition(tmp_path, digests)))
    server = FileServer(tmp_path / "mirror")
    args = _bench(tmp_path / "run", "--method", "sd", "--model", "tiny-sd", "--steps", "1", "--judge", "clipscore",
                  "--judge-model", "tiny-clip", "--json")  # fmt: skip
    with server.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}")
        assert run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["categories"]["S-property"]["ok"] == 2 and summary["complete"]
    assert server.requests == [f"/c0ffee/{PROMPTS_DIR}/{PROPERTY}"]
    cached = tmp_path / "cache" / "rarebench" / "c0ffee" / PROPERTY
    assert cached.read_text(encoding="utf-8") == "a frog with fur\na square orange\n"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["prompts"]["verified"] == {"S-property": True} and config["prompts"]["source"] == "download"
    assert config["prompts"]["sha256"]["S-property"] == digests["prompts"] and "GPU" in config["noise"]

    # The same mirror, tampered: one line of error, no run folder, nothing cached.
    (tmp_path / "mirror" / "c0ffee" / PROMPTS_DIR / PROPERTY).write_text("a frog with fur\nan extra prompt")
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache2"))
    with server.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}")
        assert run([*_bench(tmp_path / "run2"), *args[args.index("--method"):]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: checksum mismatch for rarebench_single_1property.txt") and "nothing was cached" in err
    assert not (tmp_path / "cache2" / "rarebench").exists() and not (tmp_path / "run2" / "items").exists()


def test_the_paper_protocol_asks_and_reads_as_the_authors_did(mirror_env, monkeypatch, capsys):
    tmp_path = mirror_env
    digests = _mirror(tmp_path / "mirror", ["a frog with fur", "a square orange"])
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(_definition(tmp_path, digests)))

    def respond(request):
        if "a frog with fur" in request.body["messages"][0]["content"][0]["text"]:
            return ok("### SCORE: 0 ### EXPLANATION: no frog")  # 0 is on their scale: it scores 0
        return ok("### SCORE: 5 ### EXPLANATION: all there")

    chat = ChatServer(respond=respond)
    files = FileServer(tmp_path / "mirror")
    args = _bench(tmp_path / "run", "--method", "sd", "--model", "tiny-sd", "--steps", "1", "--judge", "gpt-4o",
                  "--protocol", "paper", "--json")  # fmt: skip
    with files.running() as mirror, chat.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", mirror + "/{commit}")
        assert run([*args, "--base-url", url]) == 0
    summary = json.loads(capsys.readouterr().out)
    namespace: dict = {}
    exec(OUR_JUDGE, namespace)
    assert len(chat.requests) == 2
    for request in chat.requests:
        body = request.body
        assert body["model"] == "gpt-4o-2024-05-13" and body["max_tokens"] == 4096
        assert "temperature" not in body and "response_format" not in body
        (message,) = body["messages"]  # one user message, no system message
        assert message["role"] == "user"
        text, image = message["content"]
        assert text["type"] == "text" and image["type"] == "image_url"  # the rubric first, the image second
        prompt = "a frog with fur" if "a frog with fur" in text["text"] else "a square orange"
        assert text["text"] == namespace["eval_GPT4"](None, prompt, None)
        head, data = image["image_url"]["url"].split(",", 1)
        assert head == "data:image/jpeg;base64" and base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    records = {r["prompt"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "run").glob("items/*/*.json")))}
    assert records["a frog with fur"]["score"] == 0.0 and records["a square orange"]["score"] == 100.0
    assert records["a frog with fur"]["judge"]["explanation"] == "no frog"
    assert summary["judge"]["protocol"] == "paper" and summary["judge"]["temperature"] is None
    assert summary["judge"]["script_sha256"] == digests["judge"]

    # A judge script that does not match its pin is refused before anything runs.
    (tmp_path / "mirror" / "c0ffee" / JUDGE_FILE).write_text(OUR_JUDGE + "# changed\n", encoding="utf-8")
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache2"))
    with files.running() as mirror, chat.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", mirror + "/{commit}")
        assert run([*_bench(tmp_path / "run2"), *args[args.index("--method"):], "--base-url", url]) == 1
    assert "checksum mismatch for eval/eval_by_GPT.py" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists() and len(chat.requests) == 2


@pytest.mark.slow
def test_replaying_authors_plans_in_a_run_follows_the_hand_made_tables(mirror_env, monkeypatch, capsys):
    tmp_path = mirror_env
    prompts = ["a frog with fur and a glass cat", "a bald lion and a wooden dog"]
    digests = _mirror(tmp_path / "mirror", prompts)
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(_definition(tmp_path, digests)))
    args = _bench(tmp_path / "run", "--method", "r2f", "--plans", "authors", "--schedule", "authors", "--model",
                  "tiny-sd3", "--steps", "50", "--judge", "clipscore", "--judge-model", "tiny-clip")  # fmt: skip
    with FileServer(tmp_path / "mirror").running() as mirror:
        monkeypatch.setenv("RARE_RAREBENCH_URL", mirror + "/{commit}")
        assert run(args) == 0
    from rarecli.io.images import read_metadata

    run_dir = tmp_path / "run"
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("items/*/*.json"))]
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        hyper = read_metadata(run_dir / record["image"])["rare"]["hyper"]
        assert hyper["schedule"]["steps"] == HAND_TABLES[record["prompt"]] and hyper["schedule_rule"] == "authors"
        assert hyper["plan"]["chain"]["prompts"] == OUR_PLANS[record["prompt"]]["r2f_prompt"][0]
    identity = json.loads((run_dir / "config.json").read_text())["identity"]["method"]
    assert identity["options"] == {"plans": "authors", "schedule": "authors"}
    assert identity["authors_plans_sha256"] == {"S-property": digests["plans"]}
