"""Atomic, never-overwriting writes.

A file appears under its final name complete or not at all: content goes to a temporary file in
the same folder, is fsynced, then hard-linked to the final name. `os.link` fails if the name
exists, so two processes can never overwrite each other (rename would silently replace).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def _temp_in(folder: Path, suffix: str) -> Iterator[tuple[IO[bytes], Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".rare-", suffix=suffix + ".part", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
    finally:
        # Also runs on KeyboardInterrupt: no half-written file is left behind.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_temp(fh: IO[bytes], write: Callable[[IO[bytes]], None]) -> None:
    write(fh)
    fh.flush()
    os.fsync(fh.fileno())


def write_new(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a new file atomically; FileExistsError if `path` exists (nothing is written then)."""
    path = Path(path)
    with _temp_in(path.parent, path.suffix) as (fh, tmp):
        _write_temp(fh, write)
        fh.close()
        os.link(tmp, path)
    return path


def write_replace(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file atomically, replacing an older version (for state files like run.json)."""
    path = Path(path)
    with _temp_in(path.parent, path.suffix) as (fh, tmp):
        _write_temp(fh, write)
        fh.close()
        os.replace(tmp, path)
    return path


def write_text_new(path: Path, text: str) -> Path:
    return write_new(path, lambda fh: fh.write(text.encode("utf-8")))


def write_text_replace(path: Path, text: str) -> Path:
    return write_replace(path, lambda fh: fh.write(text.encode("utf-8")))
