"""RareBench definition and prompt files: the real download path against a real HTTP server on
127.0.0.1 serving our own prompt set, checksum verification, and --data."""

from __future__ import annotations

import textwrap

import pytest

from rarecli.bench.dataset import fetch, load_prompts, normalise, read_local, sha256_text
from rarecli.bench.definition import image_score, load_definition
from rarecli.errors import InputError, RareError
from tests.bench_helpers import OWN_PROMPTS, FileServer, own_definition, write_prompts

PROPERTY = "rarebench_single_1property.txt"
AND = "rarebench_multi_1and.txt"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private rare cache (only prompt files land in it here)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RARE_CACHE_DIR", str(folder))
    return folder


def _own_checksum(name: str) -> str:
    return sha256_text(normalise("\n".join(OWN_PROMPTS[name]) + "\n"))


def test_the_checkout_reads_the_one_copy_of_theown_definition():
    """An editable install reads rarebench/rarebench.yaml; nothing in the package duplicates it (the
    wheel build copies it in: test_packaging checks a real wheel)."""
    from rarecli.bench import definition
    from rarecli.paths import project_root

    checkout = project_root() / "rarebench" / "rarebench.yaml"
    assert definition.default_path() == checkout
    assert not list((project_root() / "rarecli").rglob("rarebench.yaml"))


def test_packaged_definition_is_complete_and_holds_no_prompt_text():
    d = load_definition()
    assert [c.name for c in d.categories] == [
        "S-property",
        "S-shape",
        "S-texture",
        "S-action",
        "S-complex",
        "M-and",
        "M-relation",
        "M-complex",
    ]
    assert d.categories[0].file == PROPERTY and d.categories[-1].file == "rarebench_multi_3complex.txt"
    assert d.judge.model == "gpt-4o-2024-05-13"
    assert "score" in d.judge.rubric and "JSON" in d.judge.rubric
    # The published values, exactly (eval/result/avg_scores_0to4_by_gpt4o.json at the pin).
    assert d.anchors["SD3-medium"]["S-property"] == 49.38 and d.anchors["R2F-SD3 (GPT-4 plans)"]["M-complex"] == 73.75
    full = [name for name, row in d.anchors.items() if len(row) == 8]
    assert full == ["SD3-medium", "R2F-SD3 (GPT-4 plans)", "R2F-SD3 (LLaMA-3.1-8B plans)", "FLUX.1-schnell"]
    assert d.anchors["SDXL"] == {"overall": 51.95} and set(d.anchors["R2F+ (SD3)"]) == {"M-and", "M-relation", "M-complex"}
    # Pinned: the commit, every prompt file's normalised digest and every frozen plan file's raw one.
    assert d.commit == "834f459aa9ae90a7b653abc4bf0ad8a230056bc1"
    assert all(c.sha256 and len(c.sha256) == 64 and c.authors_plans and len(c.authors_plans.sha256) == 64 for c in d.categories)
    assert d.paper_judge is not None and d.paper_judge.max_tokens == 4096 and d.paper_judge.scale == (0, 5)
    assert "github.com/krafton-ai/Rare-to-Frequent" in d.repository
    # No prompt file of the benchmark is shipped anywhere beside the definition.
    assert sorted(p.name for p in d.path.parent.iterdir()) == ["rarebench.yaml"]


def test_paper_scoring_formula():
    assert [image_score(s) for s in (1, 2, 3, 4, 5)] == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert image_score(0) == 0.0


def test_normalisation_ignores_line_endings_trailing_space_and_blank_lines():
    a = normalise(b"\xef\xbb\xbfa frog with fur  \r\n\r\na square orange\r\n")
    b = normalise("a frog with fur\na square orange")
    assert a == b == "a frog with fur\na square orange\n"
    assert sha256_text(a) == sha256_text(b)
    assert normalise("a frog\n b cat\n") != normalise("a frog\nb cat\n")  # leading space is content


def test_download_verifies_caches_and_then_reads_the_cache(tmp_path, cache, monkeypatch):
    served = write_prompts(tmp_path / "served", newline="\r\n")  # CRLF upstream: same checksum
    definition = load_definition(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)}))
    server = FileServer(served)
    with server.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}/prompts")
        (served / "c0ffee" / "prompts").mkdir(parents=True)
        (served / "c0ffee" / "prompts" / PROPERTY).write_bytes((served / PROPERTY).read_bytes())
        first = fetch(definition, definition.category("S-property"))
        again = fetch(definition, definition.category("S-property"))
    assert first.prompts == tuple(OWN_PROMPTS[PROPERTY]) and first.verified
    assert again.prompts == first.prompts
    assert server.requests == ["/c0ffee/prompts/" + PROPERTY]  # the second read came from the cache
    cached = cache / "rarebench" / "c0ffee" / PROPERTY
    assert cached.is_file() and first.path == cached


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(tmp_path, cache, monkeypatch):
    served = write_prompts(tmp_path / "served")
    (served / PROPERTY).write_text("a frog with fur\na tampered line\n", encoding="utf-8")
    definition = load_definition(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)}))
    with FileServer(served).running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url)
        with pytest.raises(RareError, match="checksum mismatch for rarebench_single_1property.txt") as info:
            fetch(definition, definition.category("S-property"))
    assert "nothing was cached" in info.value.message and info.value.hint
    assert not list(cache.rglob("*.txt"))


def test_a_corrupted_cache_file_is_downloaded_again(tmp_path, cache, monkeypatch):
    served = write_prompts(tmp_path / "served")
    definition = load_definition(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)}))
    cached = cache / "rarebench" / "c0ffee" / PROPERTY
    cached.parent.mkdir(parents=True)
    cached.write_text("a frog with fur\n", encoding="utf-8")  # truncated
    server = FileServer(served)
    with server.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url)
        got = fetch(definition, definition.category("S-property"))
    assert len(server.requests) == 1 and got.prompts == tuple(OWN_PROMPTS[PROPERTY])
    assert normalise(cached.read_bytes()) == "\n".join(OWN_PROMPTS[PROPERTY]) + "\n"


def test_missing_upstream_file_is_a_clear_error(tmp_path, cache, monkeypatch):
    definition = load_definition(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)}))
    with FileServer(tmp_path / "empty").running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url)
        with pytest.raises(RareError, match="HTTP 404"):
            fetch(definition, definition.category("S-property"))


def test_unpinned_definition_refuses_to_download_but_data_works(tmp_path, cache):
    definition = load_definition(own_definition(tmp_path, {}, commit=None))
    with pytest.raises(RareError, match="pins no commit") as info:
        fetch(definition, definition.category("S-property"))
    assert "--data" in info.value.hint
    pinned_commit_only = load_definition(own_definition(tmp_path, {}))
    with pytest.raises(RareError, match="pins no SHA-256 of rarebench_single_1property.txt"):
        fetch(pinned_commit_only, pinned_commit_only.category("S-property"))
    data = write_prompts(tmp_path / "data")
    files = load_prompts(definition, definition.select(["S-property,M-and"]), data)
    assert [f.category.name for f in files] == ["S-property", "M-and"]
    assert files[1].prompts == tuple(OWN_PROMPTS[AND]) and not files[1].verified


def test_data_folder_missing_file_and_pinned_mismatch(tmp_path, capsys):
    data = write_prompts(tmp_path / "data", {PROPERTY: ["a frog with fur"]})
    definition = load_definition(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)}))
    with pytest.raises(InputError, match="prompt file for M-and not found"):
        read_local(definition, definition.category("M-and"), data)
    local = read_local(definition, definition.category("S-property"), data)
    assert not local.verified
    assert "differs from the pinned RareBench S-property file" in capsys.readouterr().err


def test_unknown_category_lists_the_names():
    with pytest.raises(InputError, match="unknown RareBench category") as info:
        load_definition().select(["S-colour"])
    assert "S-property" in info.value.hint


def test_cli_checksum_mismatch_exits_1_with_one_error_line(tmp_path, cache, monkeypatch, capsys):
    from rarecli.cli.app import run

    served = write_prompts(tmp_path / "served", {PROPERTY: ["not what was pinned"]})
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(own_definition(tmp_path, {PROPERTY: _own_checksum(PROPERTY)})))
    with FileServer(served).running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url)
        code = run(["bench", "rarebench", "--out", str(tmp_path / "run"), "-c", "S-property", "--judge", "clipscore"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Error: checksum mismatch for rarebench_single_1property.txt" in err
    assert "Hint:" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_definition_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("RARE_RAREBENCH_DEFINITION", str(tmp_path / "nope.yaml"))
    with pytest.raises(RareError, match="definition not found"):
        load_definition()
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("source: {}\ncategories: []\n"), encoding="utf-8")
    with pytest.raises(RareError, match="malformed RareBench definition"):
        load_definition(bad)
