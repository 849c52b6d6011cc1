"""The wheel: built by the real build backend, installed into a fresh venv, it finds the data files
that the checkout keeps once at its top (prompts/, rarebench/)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = {"prompts": "r2f_plan.yaml", "rarebench": "rarebench.yaml"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="the build backend (the [dev] extra) builds the wheel offline")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("rarecli-*.whl")
    return path


def test_the_wheel_carries_each_data_file_once_as_the_checkout_has_it(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for folder, name in DATA.items():
            inside = f"rarecli/_data/{folder}/{name}"
            assert z.read(inside) == (REPO / folder / name).read_bytes()
            assert [n for n in names if n.endswith("/" + name)] == [inside]
        # The embedded toy world ships with the package.
        assert any(n.endswith("toy-digits/model_index.json") for n in names)


def test_an_installed_wheel_finds_its_data_files_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Install the wheel itself (as pip would unpack a pure wheel); its dependencies come from this
    # environment, appended after the fresh venv's own site-packages so rarecli is the wheel's.
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import rarecli.paths as p\n"
        "from rarecli.bench.definition import load_definition\n"
        "from rarecli.llm.planner import load_template\n"
        "print(p.__file__); print(load_template().path); print(load_definition().path)\n"
    )
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    module, template, definition = (Path(line) for line in out.stdout.split())
    assert module.is_relative_to(site)
    assert template == site / "rarecli" / "_data" / "prompts" / "r2f_plan.yaml"
    assert definition == site / "rarecli" / "_data" / "rarebench" / "rarebench.yaml"
