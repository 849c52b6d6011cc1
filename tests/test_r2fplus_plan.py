"""The R2F+ plan document (issue 14, first part): what it holds and how a broken one is refused."""

from __future__ import annotations

import copy

import pytest

from rarecli.errors import InputError
from rarecli.methods.r2f_plus.schema import PlusPlan, from_authors

# The shape of one of the authors' stored GPT-4o answers (rarebench_multi_2relation), two objects.
AUTHORS = {
    "original_prompt": "A spotted lion is lounging on an ax shaped bed",
    "base_prompt": "#1 lounging on #2",
    "objects": {
        "#1": {"prompt": "#1 lounging", "object": "A spotted lion", "r2f": ["A spotted animal"],
               "visual_detail_levels": [3], "bbox": [0.2, 0.5, 0.7, 0.8]},
        "#2": {"prompt": "#2 shaped bed", "object": "an ax shaped bed", "r2f": ["an ax shaped furniture"],
               "visual_detail_levels": [2], "bbox": [0.3, 0.7, 0.8, 1.0]},
    },
}  # fmt: skip


def _plan():
    return from_authors(AUTHORS["original_prompt"], AUTHORS).to_json()


def test_an_authors_plan_reads_and_round_trips():
    plan = from_authors(AUTHORS["original_prompt"], AUTHORS)
    assert [o.key for o in plan.objects] == ["#1", "#2"]
    assert plan.objects[1].box == (0.3, 0.7, 0.8, 1.0) and plan.objects[0].levels == (3,)
    assert PlusPlan.from_json(plan.to_json()) == plan


def _broken(edit):
    doc = copy.deepcopy(_plan())
    edit(doc)
    with pytest.raises(InputError) as caught:
        PlusPlan.from_json(doc)
    message = caught.value.message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.update(base_prompt="#1 lounging on a bed"), "base_prompt"),  # slot #2 missing
        (lambda d: d.update(base_prompt="#1 and #1 on #2"), "base_prompt"),  # a slot twice
        (lambda d: d.update(base_prompt="#1 on #2 near #3"), "base_prompt"),  # a slot without an object
        (lambda d: d["objects"][1].update(box=[0.3, 0.7, 0.8, 1.2]), "objects[1].box"),  # outside the image
        (lambda d: d["objects"][0].update(box=[0.5, 0.5, 0.5, 0.9]), "objects[0].box"),  # no width
        (lambda d: d["objects"][0].update(box=[0.2, 0.5, 0.7]), "objects[0].box"),
        (lambda d: d["objects"][0].update(frequent=["an animal", "a spotted animal"], levels=[3, 2]),
         "objects[0].levels"),  # decreasing
        (lambda d: d["objects"][0].update(levels=[6]), "objects[0].levels[0]"),
        (lambda d: d["objects"][0].update(levels=[]), "objects[0].levels"),  # one per stand-in
        (lambda d: d["objects"][0].update(prompt="#1 next to #2"), "objects[0].prompt"),
        (lambda d: d["objects"][0].update(prompt="#2 lounging"), "objects[0].prompt"),  # not its own slot
        (lambda d: d["objects"][1].update(key="#1", prompt="#1 shaped bed"), "objects[1].key"),
        (lambda d: d.update(version=7), "version"),
        (lambda d: d.update(schema="rare.r2f.plan"), "schema"),
        (lambda d: d.update(boxes=[]), "boxes"),
    ],
)  # fmt: skip
def test_a_broken_plan_is_refused_in_one_line_naming_the_field(edit, field):
    message = _broken(edit)
    assert message.startswith(f"R2F+ plan: {field} "), message


def test_each_slot_receives_the_phrase_the_rule_gives_at_each_step():
    from rarecli.methods.r2f_plus.schedule import fill, plan_schedule
    from rarecli.methods.r2f_plus.schema import PlusObject, PlusPlan

    lion = PlusObject("#1", "a spotted lion", "#1 lounging", ("a spotted animal", "a spotted cat"), (1, 2),
                      (0.2, 0.5, 0.7, 0.8))  # fmt: skip
    bed = PlusObject("#2", "an ax shaped bed", "#2 shaped bed", ("an ax shaped furniture",), (3,), (0.3, 0.7, 0.8, 1.0))
    plan = PlusPlan("A spotted lion is lounging on an ax shaped bed", "#1 lounging on #2", (lion, bed))
    # By hand, SD3 at 50 steps: levels 1, 2, 3 stop at steps 5, 10, 20. The lion: "a spotted animal" on the
    # even steps before 5, "a spotted cat" on the even steps 5..9, the rare phrase on every other step.
    # The bed: its stand-in on the even steps before 20.
    A, C, L = "a spotted animal", "a spotted cat", "a spotted lion"
    F, B = "an ax shaped furniture", "an ax shaped bed"
    lion_by_hand = [A, L, A, L, A, L, C, L, C, L] + [L] * 40
    bed_by_hand = [F if i % 2 == 0 else B for i in range(20)] + [B] * 30
    table = plan_schedule(plan, 50, "sd3")
    assert [row["#1"] for row in table["base"]] == lion_by_hand
    assert [row["#2"] for row in table["base"]] == bed_by_hand
    assert [row for row in table["#1"]] == [{"#1": p} for p in lion_by_hand]  # the object prompt: its slot only
    assert [row for row in table["#2"]] == [{"#2": p} for p in bed_by_hand]
    # Scaled to 10 steps (stops 1, 2, 4): the lion's first stand-in at step 0 only, its second never (its
    # stop at 2 comes before an even step it could guide), the bed's on steps 0 and 2.
    short = plan_schedule(plan, 10, "sd3")["base"]
    assert [row["#1"] for row in short] == [A] + [L] * 9
    assert [row["#2"] for row in short] == [F, B, F] + [B] * 7
    text, _ = fill(plan.base_prompt, {o.key: o for o in plan.objects}, 0, {"#1": (5, 10), "#2": (20,)})
    assert text == "a spotted animal lounging on an ax shaped furniture"


def test_the_authors_r2fplus_plans_are_pinned_fetched_verified_and_checked(tmp_path, monkeypatch):
    import hashlib
    import json

    from rarecli.bench.dataset import load_authors_plus_plans
    from rarecli.bench.definition import load_definition
    from tests.bench_helpers import FileServer, own_definition

    packaged = {c.name: c.authors_plus_plans for c in load_definition().categories}
    assert packaged["M-and"].sha256 == "9fa15f042eeb0c67e78e0fffedda6301df9d696b6a621fa01926e9caf87d847c"
    assert packaged["M-complex"].file == "test/r2fplus_prompt/rarebench/rarebench_multi_3complex_gpt4o.txt"
    assert packaged["S-property"] is None  # R2F+ is the multi-object categories' method

    flat = copy.deepcopy(AUTHORS)  # a box of zero height, as one of the authors' own plans has
    flat["original_prompt"] = "A flat lion on a bed"
    flat["objects"]["#1"]["bbox"] = [0.25, 0.4, 0.3, 0.4]
    raw = json.dumps({AUTHORS["original_prompt"]: AUTHORS, flat["original_prompt"]: flat}, indent=4).encode()
    name = "test/r2fplus_prompt/rarebench/rarebench_multi_2relation_gpt4o.txt"
    (tmp_path / "mirror" / "c0ffee" / name).parent.mkdir(parents=True)
    (tmp_path / "mirror" / "c0ffee" / name).write_bytes(raw)
    pins = {"rarebench_multi_2relation.txt": {"file": name, "sha256": hashlib.sha256(raw).hexdigest()}}
    definition = load_definition(own_definition(tmp_path, {}, authors_plus_plans=pins))
    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    server = FileServer(tmp_path / "mirror")
    with server.running() as url:
        monkeypatch.setenv("RARE_RAREBENCH_URL", url + "/{commit}")
        plans, refused = load_authors_plus_plans(definition, [definition.category("M-relation")])
        load_authors_plus_plans(definition, [definition.category("M-relation")])  # the second from the cache
    assert server.requests == [f"/c0ffee/{name}"]
    assert list(plans) == [AUTHORS["original_prompt"]] and plans[AUTHORS["original_prompt"]].objects[1].key == "#2"
    assert refused == {"A flat lion on a bed": refused["A flat lion on a bed"]}
    assert refused["A flat lion on a bed"].startswith("R2F+ plan: objects[0].box must have x_min < x_max")


def test_rare_r2f_plan_import_converts_an_authors_r2fplus_file_and_names_what_it_leaves_out(tmp_path):
    import json
    import subprocess

    from tests.conftest import rare_cmd

    flat = copy.deepcopy(AUTHORS)
    flat["original_prompt"] = "A flat lion on a bed"
    flat["objects"]["#1"]["bbox"] = [0.25, 0.4, 0.3, 0.4]
    source = tmp_path / "rarebench_multi_2relation_gpt4o.txt"
    source.write_text(json.dumps({AUTHORS["original_prompt"]: AUTHORS, "A flat lion on a bed": flat}, indent=4))
    done = subprocess.run([*rare_cmd(), "r2f", "plan", "--import", str(source)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert PlusPlan.from_json(json.loads(line)) == from_authors(AUTHORS["original_prompt"], AUTHORS)
    assert "not imported: 'A flat lion on a bed': R2F+ plan: objects[0].box" in done.stderr
