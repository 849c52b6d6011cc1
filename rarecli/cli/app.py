"""The `rare` command: wires the command modules together.

Nothing heavy is imported here: `rare --help` must not import torch.
"""

from __future__ import annotations

import sys

import typer

from rarecli import __version__
from rarecli.cli import bench, env, models, r2f, seedselect, seedspace
from rarecli.cli._run import handled

app = typer.Typer(
    name="rare",
    help="Make pre-trained text-to-image diffusion models draw rare concepts.\n\n"
    "SeedSelect and NAO (seed optimisation), Rare-to-Frequent (LLM-guided sampling) and RareBench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
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
    from rarecli.config import default_map, load_config
    from rarecli.paths import config_file

    config = load_config(config_file())
    if config:
        ctx.default_map = default_map(ctx.command, config)


app.command("seedselect", no_args_is_help=True)(handled(seedselect.seedselect))
app.command("interpolate", no_args_is_help=True)(handled(seedspace.interpolate))
app.command("centroid", no_args_is_help=True)(handled(seedspace.centroid))
app.add_typer(r2f.app, name="r2f")
app.add_typer(bench.app, name="bench")
app.command("models")(handled(models.models))
app.command("env")(handled(env.env))


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
