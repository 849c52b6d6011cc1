"""The Python API, as docs/python.md shows it: every example on that page runs here, in order, as written."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.tiny_gguf import write_tiny_llama

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_examples_of_every_call():
    text = "\n".join(_blocks())
    for call in ("rarecli.generate(", "rarecli.seedselect(", "rarecli.r2f.plan(", "rarecli.r2f.generate(",
                 ".save(", "registry.register("):  # fmt: skip
        assert call in text, call


def test_every_example_in_docs_python_runs(tmp_path, monkeypatch):
    """In one namespace, in a fresh folder holding the tiny GGUF the LLM example names."""
    write_tiny_llama(tmp_path / "tiny.gguf")
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_python")  # a module of its own: dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for i, block in enumerate(_blocks()):
        try:
            exec(compile(block, f"docs/python.md block {i + 1}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            pytest.fail(f"docs/python.md, example {i + 1} failed: {type(exc).__name__}: {exc}\n{block}")
    assert len(list((tmp_path / "out" / "frogs").glob("*.png"))) == 2
    from rarecli.methods import registry

    registry.METHODS.pop("brighter", None)  # registered by the page's last example


def test_import_rarecli_loads_nothing_heavy():
    code = "import sys, rarecli; print(sorted({'torch', 'numpy', 'diffusers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    code = "import rarecli; print(rarecli.generate.__module__, rarecli.r2f.plan.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["rarecli.api", "rarecli.api.r2f"]


def test_the_api_writes_nothing_unless_asked_and_then_what_rare_seedselect_writes(tmp_path, monkeypatch, capsys):
    """`rarecli.seedselect` is the library call `rare seedselect` makes: in memory by default; with `out`, the
    same files, the same pixels (the provenance says which made them)."""
    import numpy as np
    from PIL import Image

    import rarecli
    from rarecli.cli.app import run
    from rarecli.io.images import read_metadata
    from rarecli.toyworld import REFS_DIR

    monkeypatch.chdir(tmp_path)
    common = dict(model="toy-digits", iters=1, steps=2, num_images=2, device="cpu", dtype="fp32")
    kept = rarecli.seedselect("a handwritten digit seven", REFS_DIR / "seven", **common)
    assert list(tmp_path.iterdir()) == [] and kept.written == [] and len(kept) == 2
    api = rarecli.seedselect("a handwritten digit seven", REFS_DIR / "seven", out=tmp_path / "api", **common)
    assert run(["seedselect", "a handwritten digit seven", "--refs", str(REFS_DIR / "seven"), "--model", "toy-digits",
                "--iters", "1", "--inner-steps", "2", "-n", "2", "--device", "cpu", "--dtype", "fp32",
                "--out", str(tmp_path / "cli")]) == 0  # fmt: skip
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    for image, path in zip(kept, sorted((tmp_path / "cli").glob("*.png")), strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(path).convert("RGB")))
    assert read_metadata(api.written[0])["rare"]["command"] == "python"
    assert read_metadata(sorted((tmp_path / "cli").glob("*.png"))[0])["rare"]["command"] == "seedselect"
