"""The `rare` command: wires the command modules together.

Every module registers its commands the same way (`register(app)`, through `_run.command`). Nothing
heavy is imported here: `rare --help` must not import torch or numpy.
"""

from __future__ import annotations

import os
import sys

import typer

from rarecli import __version__
from rarecli.cli import augment, bench, env, methods, models, r2f, seedselect, seedspace
from rarecli.cli._method_flags import METHOD_DEFAULTS
from rarecli.cli._run import handled
from rarecli.config import default_map, load_config, method_sections
from rarecli.paths import config_file

app = typer.Typer(
    name="rare",
    help="Make pre-trained text-to-image diffusion models draw rare concepts.\n\n"
    "SeedSelect and NAO (seed optimisation), Rare-to-Frequent (LLM-guided sampling) and RareBench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",  # help is plain text with `code`: see _run.command
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rare {__version__}")
        raise typer.Exit()


@app.callback()
@handled
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    path = config_file()
    config = load_config(path, explicit="RARE_CONFIG" in os.environ)
    if config:
        ctx.default_map = default_map(ctx.command, config, path, ctx)
        ctx.meta[METHOD_DEFAULTS] = method_sections(config, path)


for _module in (seedselect, seedspace, r2f, augment, bench, methods, models, env):
    _module.register(app)


def run(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    try:
        app(args=args, prog_name="rare")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def main() -> None:
    sys.exit(run())
