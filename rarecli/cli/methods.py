"""`rare methods`: every registered method, the model families it runs on, and its options."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rarecli.cli._options import Json
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.methods import registry


def methods(
    name: Annotated[str | None, typer.Argument(help="One method: its options in full.")] = None,
    json_out: Json = False,
) -> Output:
    """List the registered methods: what each does, the families it runs on, its options (defaults, bounds,
    where each default comes from). Options go to `rare bench rarebench --set NAME=VALUE`, to the config
    file's `methods: {NAME: {...}}` section and to the Python API as keywords.

    Prints one line per method (NAME: summary), or with --json every method and option.
    """
    specs = [registry.spec(name)] if name else list(registry.METHODS.values())
    document = [
        {
            "name": s.name,
            "summary": s.summary,
            "families": sorted(s.families),
            "needs_refs": s.needs_refs,
            "plan_kind": s.plan_kind,
            "options": [_option(o) for o in s.options.describe()],
        }
        for s in specs
    ]
    lines = []
    for s, doc in zip(specs, document, strict=True):
        lines.append(f"{s.name}: {s.summary} [families: {', '.join(sorted(s.families))}]")
        if name:
            lines += [f"  --set {o['name']}=...  {o['help']} (default {o['default']!r})" for o in doc["options"]]
    return Output(document, lines)


def _option(o: Any) -> dict[str, Any]:
    info = o.info
    return {
        "name": o.name,
        "type": o.type.__name__,
        "nullable": o.nullable,
        "default": o.default,
        "help": info.help,
        "choices": list(info.choices) or None,
        "low": info.low,
        "high": info.high,
        "source": info.source or None,
    }


def register(app: typer.Typer) -> None:
    command(app, "methods", example="rare methods\nrare methods seedselect --json", no_args_is_help=False)(methods)
