"""The architecture, checked (docs/architecture.md): layers, no import cycles, dependencies at the top of each module,
small modules, one writer of generated images, one table of model families."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "rarecli"
MODULES = sorted(PACKAGE.rglob("*.py"))
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Function-local imports are for these only: the heavy packages, and the ones that import torch
# (safetensors.torch, open_clip) or take over 0.15 s to import here (gguf 0.35 s, sklearn 2 s, scipy).
HEAVY = {"torch", "diffusers", "transformers", "openai", "llama_cpp", "accelerate", "matplotlib"}
HEAVY |= {"safetensors", "open_clip", "gguf", "sklearn", "scipy"}
# Deferred on purpose, with the reason beside the import.
DEFERRED = {("rarecli/config.py", "yaml")}  # every command's --help reads the config, yaml only if a file exists
DEFERRED |= {("rarecli/log.py", "rich")}  # rich.progress (10 ms) only when a bar is drawn, never for --help


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _local_imports(tree: ast.Module):
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    yield from visit(tree, False)


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the [dev] extra")
def test_the_layer_contract_holds_and_fails_on_an_upward_import(tmp_path):
    kept = subprocess.run([str(LINT_IMPORTS)], cwd=REPO, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout[-2000:]
    assert "1 kept, 0 broken" in kept.stdout
    # The same contract over a copy of the package in which seeds/ reaches up into methods/.
    shutil.copytree(PACKAGE, tmp_path / "rarecli", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    noise = tmp_path / "rarecli" / "seeds" / "noise.py"
    noise.write_text(noise.read_text() + "\nfrom rarecli.methods import output  # noqa: E402, F401\n")
    broken = subprocess.run(
        [str(LINT_IMPORTS)], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}
    )
    assert broken.returncode != 0
    assert "rarecli.seeds.noise -> rarecli.methods.output" in broken.stdout


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter ([dev])")
    graph = grimp.build_graph("rarecli", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(imported, module):
                cycles.append(f"{module} -> {imported}")
    assert cycles == []


def test_function_local_imports_are_only_for_heavy_packages():
    """Outside cli/, a module's own dependencies are at its top. A CLI command imports the library it
    calls in its body, because the library pulls in numpy and `rare --help` must stay instant."""
    found = []
    for path in MODULES:
        if path.is_relative_to(PACKAGE / "cli"):
            continue
        for node in _local_imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top not in HEAVY and (_rel(path), top) not in DEFERRED:
                    found.append(f"{_rel(path)}:{node.lineno}: {name}")
    assert found == []


def test_modules_stay_under_400_lines():
    sizes = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES}
    assert {name: n for name, n in sizes.items() if n >= 400} == {}


def test_one_writer_of_generated_pngs():
    """Every PNG with rare's metadata goes through methods/output.write_generated (io/images.py holds
    the encoding and the atomic, never-overwriting file writes it uses)."""
    writers = {"png_bytes", "save_png", "save_numbered_png"}
    callers = set()
    for path in MODULES:
        if path == PACKAGE / "io" / "images.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in writers:
                    callers.add(_rel(path))
    assert callers == {"rarecli/methods/output.py"}


def test_one_table_of_model_families():
    """No module but backbones/families.py keys a table by pipeline class or family key."""
    key = re.compile(r"^(\w+Pipeline|sdxl|sd3)$")  # not "sd": also the name of plain sampling
    tables = []
    for path in MODULES:
        if path.name == "families.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and isinstance(k.value, str) and key.match(k.value) for k in node.keys
            ):
                tables.append(f"{_rel(path)}:{node.lineno}")
    assert tables == []
