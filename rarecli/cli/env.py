"""`rare env`: versions, devices and paths, for bug reports."""

from __future__ import annotations

import typer

from rarecli.cli._options import Json
from rarecli.cli._output import Output
from rarecli.cli._run import command


def env(json_out: Json = False) -> Output:
    """Print versions, devices and paths (paste this into bug reports)."""
    from rarecli.runtime.report import environment_report  # imports torch: only when run

    report = environment_report()
    width = max(len(k) for k in report)
    return Output(report, [f"{key:<{width}}  {value}" for key, value in report.items()])


def register(app: typer.Typer) -> None:
    command(app, "env", example="rare env --json", no_args_is_help=False)(env)
