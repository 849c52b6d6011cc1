"""`rare --help` must stay instant: no command's help may import torch or another heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ["torch", "diffusers", "transformers", "openai", "llama_cpp", "accelerate", "open_clip", "safetensors"]
# Not heavy for the library, but slow enough to notice at every `--help` (numpy alone: 0.2 s here).
HEAVY += ["numpy", "yaml", "PIL", "huggingface_hub", "matplotlib"]
COMMANDS = [
    [],
    ["seedselect"],
    ["interpolate"],
    ["centroid"],
    ["r2f"],
    ["r2f", "plan"],
    ["r2f", "generate"],
    ["augment"],
    ["bench"],
    ["bench", "rarebench"],
    ["bench", "report"],
    ["models"],
    ["env"],
]


def _help_imports(args: list[str], env: dict[str, str]) -> list[str]:
    probe = (
        "import sys, json\n"
        "from rarecli.cli.app import run\n"
        f"code = run({args + ['--help']!r})\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    code, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0
    assert "Usage" in out.stdout
    return heavy


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "rare")
def test_help_imports_nothing_heavy(args, tmp_path):
    # A fresh user's machine: no config file (the tests' own RARE_CONFIG would make yaml load).
    env = {k: v for k, v in os.environ.items() if k != "RARE_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    heavy = _help_imports(args, env)
    assert heavy == [], f"`rare {' '.join(args)} --help` imported {heavy}"


def test_help_with_a_config_file_imports_only_yaml(tmp_path):
    # A config can change the defaults --help shows, so it is read; its parser is the only extra import.
    config = tmp_path / "config.yaml"
    config.write_text("seedselect:\n  iters: 3\n", encoding="utf-8")
    heavy = _help_imports(["seedselect"], {**os.environ, "RARE_CONFIG": str(config)})
    assert heavy == ["yaml"]


def test_version():
    from tests.conftest import rare_cmd

    out = subprocess.run(rare_cmd() + ["--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("rare ")
