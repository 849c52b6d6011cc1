"""Built backbones are verified: a completion marker, written last, lists every file and its size.

A build goes into a temporary sibling folder named after the building process (`.<name>-<pid>-XXXX`),
gets its marker, and is renamed into place, so a folder under its final name is complete. What can still
go wrong is outside rare's control: a disk that filled up, a copy cut short, a file edited or deleted, a
folder half-built by an older version. `problem` says what is wrong with a folder (the marker's files
must all be there at their recorded size), `discard` removes a damaged one so it can be built again,
and `clean_stale_temps` removes the temporary folders of builds whose process is gone (a twin's can be
tens of GB).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from rarecli.errors import RareError

MARKER = "rare_build.json"
# Temporary folders from before the marker had no process id in their name: removed once this old.
UNOWNED_STALE_SECONDS = 3600


def write_marker(folder: Path, about: dict | None = None) -> None:
    """List every file of a finished build with its size, in a marker written last."""
    files = {
        str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER
    }
    (folder / MARKER).write_text(json.dumps({"files": files, **(about or {})}, indent=1) + "\n", encoding="utf-8")


def problem(folder: Path, required: str) -> str | None:
    """What is wrong with a built folder (None: complete). `required` is the file a loader needs first
    (model_index.json or config.json); a folder without a marker that has it was built before markers
    existed and is taken as it is."""
    if not folder.exists():
        return "not built"
    marker = folder / MARKER
    if not marker.is_file():
        return None if (folder / required).is_file() else f"incomplete: no {required} (a build cut short)"
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, {size} when built (truncated or changed)"
    return None


def discard(folder: Path) -> None:
    """Remove a damaged build (rare's own cache folder) so it can be built again."""
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise RareError(
            f"{folder} is damaged and could not be removed: {exc.strerror or exc}",
            hint=f"delete {folder} by hand; rare builds it again",
        ) from None


def temp_prefix(name: str) -> str:
    return f".{name.replace(':', '-')}-{os.getpid()}-"


_OWNED = re.compile(r"^\.(?P<name>.+)-(?P<pid>\d+)-[^-]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_stale_temps(parent: Path) -> list[Path]:
    """Remove the temporary folders of builds whose process has died (and old ones with no owner)."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        if not path.is_dir() or not path.name.startswith("."):
            continue
        owned = _OWNED.match(path.name)
        if owned:
            stale = not _alive(int(owned.group("pid")))
        else:
            stale = time.time() - path.stat().st_mtime > UNOWNED_STALE_SECONDS
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def no_space(exc: BaseException) -> bool:
    """A build that failed because the disk filled up (OSError ENOSPC, or safetensors' own error)."""
    return getattr(exc, "errno", None) == 28 or "No space left" in str(exc)
