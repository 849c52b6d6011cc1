"""Atomic, never-overwriting writes.

A file appears under its final name complete or not at all: content goes to a temporary file in
the same folder, is fsynced, then hard-linked to the final name. `os.link` fails if the name
exists, so two processes can never overwrite each other (rename would silently replace). The file
gets the mode a plain `open()` would give under the user's umask (mkstemp's temporary files are
private, 0600, which would hide results from others on a shared disk).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rarecli.errors import OutputError
from rarecli.log import warn

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or choose another --out",
    errno.EDQUOT: "the disk quota is used up: free some space, or choose another --out",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.EACCES: "no permission to write there: choose another --out",
    errno.EPERM: "no permission to write there: choose another --out",
    errno.EFBIG: "the file is larger than this process may write (see `ulimit -f`)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --out",
}


def output_error(path: Path, exc: OSError) -> OutputError:
    """An OSError from writing `path`, as one line naming the file and the reason."""
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"cannot write {path}: {reason}", hint=_HINTS.get(exc.errno or 0, "check --out"))


def check_writable(folder: Path) -> None:
    """Prove a file can be written in `folder` (or, where it does not exist yet, in the nearest folder
    above it, where it would be created), so a run that could not save its results stops now, before any
    model is loaded or any work is done. Nothing is left behind: a run refused later for bad input
    must not leave an empty --out."""
    folder = Path(folder)
    long = [part for part in folder.parts if len(os.fsencode(part)) > 255]
    if long:
        raise OutputError(
            f"cannot write to {folder}: the name {long[0][:40]}... is longer than the file system allows (255 bytes)",
            hint="choose a shorter --out",
        )
    if folder.is_symlink() and not folder.exists():
        raise OutputError(
            f"cannot write to {folder}: it is a symbolic link to {os.readlink(folder)}, which does not exist",
            hint="create the folder it points to, or choose another --out",
        )
    probe_in = folder.absolute()
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe_in))
        fd, name = tempfile.mkstemp(prefix=".rare-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        error = output_error(folder, exc)
        raise OutputError(error.message.replace("cannot write ", "cannot write to ", 1), hint=error.hint) from None


@contextlib.contextmanager
def _temp_in(folder: Path, suffix: str) -> Iterator[tuple[IO[bytes], Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".rare-", suffix=suffix + ".part", dir=folder)
    tmp = Path(name)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp does not make files private
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
    finally:
        # Also runs on KeyboardInterrupt: no half-written file is left behind.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    # Reading the umask means setting it; set it straight back (rare does this before any threads write).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_temp(fh: IO[bytes], write: Callable[[IO[bytes]], None]) -> None:
    write(fh)
    fh.flush()
    os.fsync(fh.fileno())


def write_new(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a new file atomically; FileExistsError if `path` exists (nothing is written then).
    Any other failure is an OutputError naming the file, and leaves nothing behind."""
    path = Path(path)
    try:
        with _temp_in(path.parent, path.suffix) as (fh, tmp):
            _write_temp(fh, write)
            fh.close()
            os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise output_error(path, exc) from None
    return path


def write_replace(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file atomically, replacing an older version (for state files like run.json)."""
    path = Path(path)
    try:
        with _temp_in(path.parent, path.suffix) as (fh, tmp):
            _write_temp(fh, write)
            fh.close()
            os.replace(tmp, path)
    except OSError as exc:
        raise output_error(path, exc) from None
    return path


def write_text_new(path: Path, text: str) -> Path:
    return write_new(path, lambda fh: fh.write(text.encode("utf-8")))


def write_text_replace(path: Path, text: str) -> Path:
    return write_replace(path, lambda fh: fh.write(text.encode("utf-8")))


_CACHE_WARNED: set[str] = set()


def cache_write(what: str, write: Callable[[], object]) -> bool:
    """Run `write` (storing something in a cache); a cache is an optimisation, so a failure is a warning,
    said once per kind of cache and process, and the result still goes where it was asked to. Returns
    whether it was stored."""
    try:
        write()
    except (OSError, OutputError) as exc:
        reason = exc.message if isinstance(exc, OutputError) else f"{exc.strerror or type(exc).__name__}"
        if what not in _CACHE_WARNED:
            _CACHE_WARNED.add(what)
            warn(f"cannot store the {what} in the rare cache ({reason}); going on without it (RARE_CACHE_DIR)")
        return False
    return True
