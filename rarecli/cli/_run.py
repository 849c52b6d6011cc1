"""Turns what a command raises into DESIGN.md's exit codes.

0 ok; 1 handled error: one `Error: ...` line and a `Hint: ...` line on stderr; 2 usage error (Typer);
130 interrupted. Tracebacks only with RARE_DEBUG=1.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def _print_error(message: str, hint: str | None) -> None:
    from rarecli.log import console

    console.print(f"Error: {message}", style="bold red", markup=False, soft_wrap=True)
    if hint:
        console.print(f"Hint: {hint}", markup=False, soft_wrap=True)


def handled(fn: F) -> F:
    """Wrap a command body: RareError and known library failures exit 1, Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rarecli.errors import RareError, explain

        debug = os.environ.get("RARE_DEBUG") == "1"
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            from rarecli.log import console

            console.print("Interrupted.", markup=False, soft_wrap=True)
            raise typer.Exit(130) from None
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
