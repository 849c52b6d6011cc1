"""Reading the files a user hands to rare (plans, prompt lists, configs), bounded: a size cap, UTF-8
with or without a byte-order mark, and JSON nested no deeper than any real plan, each refused with an
error that names the file, never a crash or a multi-megabyte PNG chunk further on."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from rarecli.errors import InputError

MAX_TEXT_BYTES = 16 * 2**20  # a plan file of every RareBench prompt is ~0.5 MB
MAX_JSON_DEPTH = 32  # a plan nests 4 deep


def decode(raw: bytes, where: str, limit: int = MAX_TEXT_BYTES) -> str:
    if len(raw) > limit:
        raise InputError(f"{where} is larger than {limit // 2**20} MiB", hint="is it the right file?")
    try:
        return raw.decode("utf-8-sig")  # a leading BOM (as some editors write) is not content
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})", hint="save it as UTF-8") from None


def read_stdin(limit: int = MAX_TEXT_BYTES) -> str:
    """Standard input as text, bounded like a file (bytes when it has them, so a BOM is dropped too)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return decode(buffer.read(limit + 1), "stdin", limit)
    text = sys.stdin.read(limit + 1)
    if len(text) > limit:
        raise InputError(f"stdin holds more than {limit // 2**20} MiB", hint="is it the right input?")
    return text.removeprefix("\ufeff")


def is_regular_file(path: Path) -> bool:
    """A regular file (not a FIFO, socket or device, whose open() or read() can block for ever);
    symbolic links are followed."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def require_regular_file(path: Path, what: str = "file") -> None:
    """InputError for a path that is missing or is not a regular file, before anything opens it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not is_regular_file(path):
        raise InputError(f"{what} {path} is not a regular file (a FIFO, socket, device or folder)")


def png_is_complete(path: Path) -> bool:
    """Whether a PNG ends with its IEND chunk: a truncated file (a disk that filled up, a copy cut short)
    does not. Reads the last 12 bytes only."""
    try:
        if not is_regular_file(path):
            return False
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 8 + 12:
                return False
            fh.seek(-12, os.SEEK_END)
            return fh.read(12) == _IEND
    except OSError:
        return False


_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def read_text(path: Path, what: str = "file", limit: int = MAX_TEXT_BYTES) -> str:
    """The text of `path`, bounded; InputError naming it for a missing, unreadable, huge or non-UTF-8 file,
    or one that is not a regular file (reading a FIFO would wait for a writer for ever)."""
    path = Path(path)
    if path.exists():
        require_regular_file(path, what)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return decode(raw, f"{what} {path}", limit)


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads(text: str, where: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing a document nested deeper than `max_depth` (Python's parser would recurse
    until it crashed) with an InputError naming `where`; a syntax error is a ValueError, as json's."""
    if json_depth(text) > max_depth:
        raise InputError(f"{where}: JSON nested deeper than {max_depth} levels: not a file rare writes")
    return json.loads(text)
