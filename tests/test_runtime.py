"""Device manager and settings precedence."""

from __future__ import annotations

import pytest
import torch
import typer

from rarecli.cli._options import Device
from rarecli.errors import InputError, RareError
from rarecli.runtime.device import DeviceManager, resolve_device, resolve_dtype


def test_auto_picks_cpu_here_and_fp32():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    m = DeviceManager()
    assert m.device == "cpu" and m.dtype == "fp32"


def test_bad_choices_are_clear_errors():
    with pytest.raises(InputError):
        resolve_device("tpu")
    with pytest.raises(InputError):
        resolve_dtype("fp8", "cpu")
    with pytest.raises(InputError, match="not supported on the CPU"):
        resolve_dtype("fp16", "cpu")
    assert resolve_dtype("auto", "cuda:0") == "fp16"
    assert resolve_dtype("bfloat16", "cpu") == "bf16"
    if not torch.cuda.is_available():
        with pytest.raises(RareError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(InputError, match="--offload needs a CUDA device"):
            DeviceManager("cpu", offload=True)


def test_noise_is_drawn_on_the_cpu_reproducibly():
    m = DeviceManager("cpu")
    assert torch.equal(m.randn((2, 3), 5), torch.randn((2, 3), generator=torch.Generator().manual_seed(5)))


def test_settings_precedence_flag_env_config_default(tmp_path, monkeypatch):
    """CLI flag > RARE_* env > config file > default, observed through a real command's parse."""

    from typer.testing import CliRunner

    from rarecli.config import default_map, load_config

    app = typer.Typer()

    @app.command()
    def show(device: Device = "auto", inner_steps: int = typer.Option(20, "--inner-steps")) -> None:
        print(device, inner_steps)

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.default_map = default_map(ctx.command, load_config(tmp_path / "c.yaml"))

    runner = CliRunner()
    monkeypatch.delenv("RARE_DEVICE", raising=False)
    assert runner.invoke(app, ["show"]).output.split() == ["auto", "20"]
    # Three spellings --device accepts (whether the machine has them is checked when a command runs).
    (tmp_path / "c.yaml").write_text("device: cuda:1\nshow:\n  inner-steps: 7\n")
    assert runner.invoke(app, ["show"]).output.split() == ["cuda:1", "7"]
    monkeypatch.setenv("RARE_DEVICE", "cuda:2")
    assert runner.invoke(app, ["show"]).output.split() == ["cuda:2", "7"]
    assert runner.invoke(app, ["show", "--device", "cuda:3", "--inner-steps", "3"]).output.split() == [
        "cuda:3",
        "3",
    ]


def test_broken_config_file_is_a_clear_error(tmp_path):
    from rarecli.config import load_config

    bad = tmp_path / "c.yaml"
    bad.write_text("device: [unclosed\n")
    with pytest.raises(RareError, match="cannot read config file"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(RareError, match="mapping"):
        load_config(bad)
