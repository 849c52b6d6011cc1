"""The one way a command is registered: `command(group, name, example=...)`.

It wraps the command body so that every command behaves alike:
- output mode: `--json` / `--quiet` set quiet logging before the body runs, and the `Output` the body
  returns (or each one it yields, as JSON lines) is printed on stdout as paths or JSON (`_output`);
- exit codes (DESIGN.md): 0 ok; 1 handled error, one `Error: ...` line and a `Hint: ...` line on stderr;
  2 usage error (Typer); 130 interrupted. Tracebacks only with RARE_DEBUG=1;
- `--help` ends with an example.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from rarecli.cli._output import Output, emit
from rarecli.errors import RareError, explain
from rarecli.log import console, set_quiet

F = TypeVar("F", bound=Callable[..., Any])


def _print_error(message: str, hint: str | None) -> None:
    console.print(f"Error: {message}", style="bold red", markup=False, soft_wrap=True)
    if hint:
        console.print(f"Hint: {hint}", markup=False, soft_wrap=True)


def _interrupted() -> typer.Exit:
    console.print("Interrupted.", markup=False, soft_wrap=True)
    return typer.Exit(130)


def handled(fn: F) -> F:
    """Run a command body under the output mode and the error table (see the module docstring)."""
    params = inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = bool(kwargs.get("json_out", False)) if "json_out" in params else False
        set_quiet(bool(kwargs.get("quiet", False)) or as_json)
        debug = os.environ.get("RARE_DEBUG") == "1"
        try:
            result = fn(*args, **kwargs)
            outputs: Iterator[Output | None] = result if inspect.isgenerator(result) else iter([result])
            for output in outputs:
                if output is None:
                    continue
                emit(output, as_json)
                if output.interrupted:
                    raise _interrupted()
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            raise _interrupted() from None
        except RareError as exc:
            if debug:
                raise
            _print_error(exc.message, exc.hint)
            raise typer.Exit(1) from None
        except Exception as exc:
            if debug:
                raise
            known = explain(exc)
            if known is not None:
                _print_error(known.message, known.hint)
            else:
                first = str(exc).splitlines()[0] if str(exc) else ""
                _print_error(
                    f"unexpected {type(exc).__name__}: {first}",
                    "run again with RARE_DEBUG=1 for a traceback, and report it with `rare env`",
                )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer, name: str, *, example: str, no_args_is_help: bool = True) -> Callable[[F], F]:
    """Register the decorated body as `rare ... NAME`; `example` is shown at the end of its --help."""

    def register(fn: F) -> F:
        # Help text is rich markup: an opening bracket must be escaped or rich takes it for a tag.
        lines = [line.replace("[", "\\[") for line in example.strip().splitlines()]
        epilog = "Example:\n\n" + "\n\n".join(f"  {line}" for line in lines)
        group.command(name, no_args_is_help=no_args_is_help, epilog=epilog)(handled(fn))
        return fn

    return register


def group(help: str) -> typer.Typer:
    """A command group (`rare r2f ...`), built the same way as the root app."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode="rich")
