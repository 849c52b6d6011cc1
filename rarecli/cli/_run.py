"""The one way a command is registered: `command(group, name, example=...)`.

It wraps the command body so that every command behaves alike:
- output mode: `--json` / `--quiet` set quiet logging before the body runs, and the `Output` the body
  returns (or each one it yields, as JSON lines) is printed on stdout as paths or JSON (`_output`);
- exit codes (docs/architecture.md): 0 ok; 1 handled error, one `Error: ...` line and a `Hint: ...` line on stderr;
  2 usage error (Typer); 128 + the signal when interrupted: 130 Ctrl-C (SIGINT), 143 SIGTERM (`kill`,
  `timeout`, job schedulers), 129 SIGHUP, each handled as Ctrl-C is (the work done so far is kept, no
  partial file is left); 141 when stdout's reader has gone (`rare ... | head -1`), quietly. Tracebacks
  only with RARE_DEBUG=1;
- `--help` ends with an example.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from rarecli.cli._output import Output, emit
from rarecli.errors import RareError, explain
from rarecli.log import console, set_quiet

F = TypeVar("F", bound=Callable[..., Any])


def _print_error(message: str, hint: str | None, usage: str = "rare") -> None:
    hint = hint or f"see `{usage} --help`"  # every error says where to look next
    console.print(f"Error: {message}", style="bold red", markup=False, soft_wrap=True)
    console.print(f"Hint: {hint}", markup=False, soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be, so every command treats them as Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signal that interrupted this process, if any (SIGINT when unrecorded)


def _terminate(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # no SIGHUP on Windows
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, _terminate):
            signal.signal(sig, _terminate)


def _interrupted(exc: BaseException | None = None) -> typer.Exit:
    signum = exc.signum if isinstance(exc, Terminated) else (_received[-1] if _received else signal.SIGINT)
    name = signal.Signals(signum).name
    console.print("Interrupted." if signum == signal.SIGINT else f"Interrupted ({name}).", markup=False, soft_wrap=True)
    return typer.Exit(128 + int(signum))


def _pipe_closed() -> typer.Exit:
    # Whoever read stdout has gone: say nothing more, and keep Python from failing on its last flush.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return typer.Exit(128 + 13)  # as if killed by SIGPIPE, like other tools in a pipeline


def handled(fn: F, usage: str = "rare") -> F:
    """Run a command body under the output mode and the error table (see the module docstring);
    `usage` is the command's path, for the hint of errors that bring none."""
    params = inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = bool(kwargs.get("json_out", False)) if "json_out" in params else False
        set_quiet(bool(kwargs.get("quiet", False)) or as_json)
        _install_signal_handlers()
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
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None
        except BrokenPipeError:
            raise _pipe_closed() from None
        except RareError as exc:
            if debug:
                raise
            if exc.written:  # what was saved before the failure, printed as success would have
                emit(Output({"written": exc.written, "error": exc.message}, exc.written), as_json)
            _print_error(exc.message, exc.hint, usage)
            raise typer.Exit(1) from None
        except Exception as exc:
            if debug:
                raise
            known = explain(exc)
            if known is not None:
                _print_error(known.message, known.hint, usage)
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
        # Help is read as Markdown (`rich_markup_mode`), where `[default: ...]` stays text (as rich markup
        # it would be taken for a tag and vanish) and `code` is shown as code; an example is a code line.
        epilog = "Example:\n\n" + "\n\n".join(f"`{line}`" for line in example.strip().splitlines())
        path = "rare" if group.info.name in (None, "rare") else f"rare {group.info.name}"
        group.command(name, no_args_is_help=no_args_is_help, epilog=epilog)(handled(fn, f"{path} {name}"))
        return fn

    return register


def group(name: str, help: str) -> typer.Typer:
    """A command group (`rare NAME ...`), built the same way as the root app; add it under `name`."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, rich_markup_mode="markdown")
