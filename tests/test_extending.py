"""Growing rare: a method and a judge, each written in this one file and registered in one place, appear in
`rare methods` / `rare bench judges`, run under `rare bench rarebench` (options by `--set`, recorded in the
run's identity), take their options from the config file's `methods:` section, and run from the Python
API, with no other edit. And `rare bench rarebench --method seedselect` takes SeedSelect's own options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rarecli.bench import judges
from rarecli.bench.verdict import Verdict
from rarecli.cli.app import run
from rarecli.methods import registry
from rarecli.methods.options import MethodOptions, option
from rarecli.methods.spec import MethodBase, MethodSpec
from tests.bench_helpers import write_prompts

# -- a method: plain sampling with its colours inverted ------------------------------------------------


class InvertedOptions(MethodOptions):
    method: ClassVar[str] = "inverted"
    strength: float = option(1.0, "How far each pixel moves towards its inverse.", low=0.0, high=1.0, source="a test")


class Inverted(MethodBase):
    def prepare(self, context: Any) -> Any:
        options = self.check(context.options)
        plain = registry.PLAIN.load().prepare(replace(context, options={}))

        class Prepared:
            def generate(self, request: Any) -> Any:
                from PIL import Image, ImageOps

                for made in plain.generate(request):
                    made.image = Image.blend(made.image, ImageOps.invert(made.image), options.strength)
                    made.provenance.method = "inverted"
                    made.provenance.hyper["strength"] = options.strength
                    yield made

        return Prepared()


INVERTED = MethodSpec("inverted", "plain sampling, inverted (a test's method)", InvertedOptions, frozenset({"sd"}), Inverted)


# -- a judge: the mean brightness of the image --------------------------------------------------------


class Brightness:
    name = "brightness"
    summary = "mean pixel value on 0-100 (a test's judge)"
    protocols = ("rare",)
    online = False
    uses_device = False

    def default_model(self, definition: Any, protocol: str) -> str:
        return "mean-pixel"

    def protocol_for(self, definition: Any, protocol: str) -> None:
        return None

    def identity(self, model: str, definition: Any, protocol: Any) -> dict[str, Any]:
        return {"name": self.name, "model": model, "per_image": "mean(pixels) / 2.55"}

    def build(self, model: str, definition: Any, manager: Any, base_url: str | None, protocol: Any) -> Any:
        import numpy as np
        from PIL import Image

        return lambda path, prompt: Verdict(float(np.asarray(Image.open(path)).mean()) / 2.55, {"model": model})

    def endpoint(self, base_url: str | None) -> None:
        return None

    def scale(self, identity: dict[str, Any]) -> str:
        return self.name


@pytest.fixture
def registered():
    registry.register(INVERTED)  # the one place each is registered
    judges.register(Brightness())
    yield
    registry.METHODS.pop("inverted", None)
    judges.JUDGES.pop("brightness", None)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts"))


def _bench(out: Path, data: Path, *extra: str) -> list[str]:
    return ["bench", "rarebench", "--out", str(out), "--model", "tiny-sd", "--steps", "1", "--data", str(data),
            "-c", "S-property", "--limit", "1", "--device", "cpu", "--dtype", "fp32", *extra]  # fmt: skip


def _identity(out: Path) -> dict[str, Any]:
    return json.loads((out / "config.json").read_text())["identity"]


def test_a_method_and_a_judge_registered_once_appear_everywhere(registered, data, tmp_path, capsys, monkeypatch):
    assert run(["methods", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert [o["name"] for o in listed["inverted"]["options"]] == ["strength"]
    assert listed["inverted"]["options"][0]["high"] == 1.0 and listed["inverted"]["families"] == ["sd"]
    assert run(["methods", "inverted"]) == 0
    assert "--set strength=" in capsys.readouterr().out
    assert run(["bench", "judges"]) == 0
    assert "brightness: mean pixel value" in capsys.readouterr().out

    # RareBench: the method with an option set on the command line, judged by the new judge.
    out = tmp_path / "run"
    assert run(_bench(out, data, "--method", "inverted", "--set", "strength=0.5", "--judge", "brightness")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["ok"] == 1
    identity = _identity(out)
    assert identity["method"]["name"] == "inverted" and identity["method"]["options"] == {"strength": 0.5}
    assert identity["judge"] == {"name": "brightness", "model": "mean-pixel", "per_image": "mean(pixels) / 2.55"}
    # A value the option's class refuses is one line, before any work.
    assert run(_bench(tmp_path / "bad", data, "--method", "inverted", "--set", "strength=2")) == 1
    assert "inverted option strength must be <= 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    # The config file's `methods:` section, below --set.
    config = tmp_path / "config.yaml"
    config.write_text("methods:\n  inverted:\n    strength: 0.25\n")
    monkeypatch.setenv("RARE_CONFIG", str(config))
    assert run(_bench(tmp_path / "from-config", data, "--method", "inverted", "--judge", "brightness")) == 0
    assert _identity(tmp_path / "from-config")["method"]["options"] == {"strength": 0.25}
    config.write_text("methods:\n  inverted:\n    strenght: 0.25\n")
    assert run(["methods"]) == 1
    assert "`methods.inverted`: inverted has no option strenght" in capsys.readouterr().err
    monkeypatch.delenv("RARE_CONFIG")

    # The Python API: strength 1 is the plain image inverted, pixel for pixel.
    import numpy as np

    import rarecli

    inverted = rarecli.generate("a frog", model="tiny-sd", method="inverted", steps=1, device="cpu", dtype="fp32")
    plain = rarecli.generate("a frog", model="tiny-sd", steps=1, device="cpu", dtype="fp32")
    assert np.array_equal(np.asarray(inverted[0]), 255 - np.asarray(plain[0]))
    assert inverted.provenance[0]["hyper"]["strength"] == 1.0


def test_rarebench_takes_seedselect_options_and_records_them(data, tmp_path, capsys):
    from rarecli.io.naming import slugify
    from tests.demo_refs import render_refs

    refs_root = tmp_path / "refs"
    render_refs(refs_root / slugify("a frog with fur"))
    out = tmp_path / "ss"
    args = _bench(out, data, "--method", "seedselect", "--refs-root", str(refs_root), "--judge", "clipscore",
                  "--judge-model", "tiny-clip", "--set", "iters=2", "--set", "lr=0.05", "--set", "patience=none")  # fmt: skip
    assert run(args) == 0
    options = _identity(out)["method"]["options"]
    assert options == {"refs_root": str(refs_root.resolve()), "iters": 2, "lr": 0.05, "patience": None}
    (record,) = (out / "method" / "seedselect").rglob("*.run.json")
    assert len(json.loads(record.read_text())["loss_curve"]) == 2  # the two iterations asked for
    # Options of another method, or of none, are named before any work.
    assert run(_bench(tmp_path / "x", data, "--method", "seedselect", "--refs-root", str(refs_root),
                      "--set", "nao_starts=whole")) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "seedselect has no option nao_starts" in err and "iters" in err
    assert run(_bench(tmp_path / "y", data, "--method", "sd", "--gamma", "0.5")) == 1
    assert "--gamma is not an option of sd" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
