"""Stderr console, verbosity and progress bars.

Stdout carries data only; everything a person reads goes through `console` (stderr).
Progress bars are shown only on an interactive stderr and never under --quiet/--json.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def info(message: str) -> None:
    if not _quiet:
        console.print(message, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    # Warnings are shown even under --quiet: they say something may be wrong with the result.
    console.print(f"Warning: {message}", style="yellow", markup=False, soft_wrap=True)


def progress_enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


class _Bar:
    """The subset of rich.Progress a caller needs, with a no-op twin when bars are off."""

    def __init__(self, progress, task) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)

    def update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)


_live = None  # the rich Progress on screen, shared by nested bars


@contextmanager
def progress(description: str, total: int | None, status: str = "") -> Iterator[_Bar]:
    """A progress bar on stderr; `bar.advance(status="loss 0.12")` moves it.

    Bars nest: a bar opened while another is on screen (a method's inside RareBench's) is one more line
    of the same display, removed when it finishes, since rich shows one live display at a time.
    """
    global _live
    if not progress_enabled():
        yield _Bar(None, None)
        return
    if _live is not None:
        task = _live.add_task(description, total=total, status=status)
        try:
            yield _Bar(_live, task)
        finally:
            _live.remove_task(task)
        return

    # Deferred: rich.progress takes 10 ms to import, and only long work on a terminal draws a bar.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as p:
        _live = p
        try:
            yield _Bar(p, p.add_task(description, total=total, status=status))
        finally:
            _live = None
