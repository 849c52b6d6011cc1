"""The rules every resumable batch folder follows (a RareBench run, an augmented dataset).

The folder holds a `config.json` whose `identity` says what the results in it were made with. Running
again with the same identity resumes; with another, it is refused unless `force`, which first moves the
old results aside (never deletes them). The main process writes config.json; under `accelerate` the
others only check it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import InputError, RareError
from rarecli.io.atomic import write_text_new, write_text_replace
from rarecli.io.inputs import read_text
from rarecli.log import warn

CONFIG = "config.json"


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`key.path: old -> new` for every leaf that differs between two JSON documents."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def read_config(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    try:
        document = json.loads(read_text(path, CONFIG))
    except (OSError, ValueError, InputError) as exc:
        raise DamagedConfig(f"cannot read {path}: {str(exc).splitlines()[0]}", hint=DAMAGED_HINT) from None
    if not isinstance(document, dict) or not isinstance(document.get("identity"), dict):
        raise DamagedConfig(f"{path} is damaged: it holds no run identity", hint=DAMAGED_HINT)
    return document


DAMAGED_HINT = "use a new --out, or remove or fix that file (rare cannot tell it wrote it, so --force leaves it)"


class DamagedConfig(RareError):
    """A config.json that rare did not write as it is (edited, truncated)."""


@dataclass(frozen=True)
class RunFolder:
    """What a kind of run folder calls its results, how to tell it holds some, and how to move them aside."""

    what: str  # "RareBench results", "an augmented dataset"
    has_results: Callable[[Path], bool]
    archive: Callable[[Path], Path]  # moves the old results (and config.json) aside; returns where to

    def check(self, run_dir: Path, document: dict[str, Any], force: bool, write: bool) -> None:
        """Refuse a folder made with another identity (unless `force`); with `write`, create config.json."""

        # --force sets aside only what rare wrote, recognised by its config.json: a folder of other files,
        # or one whose config.json is damaged, is never moved (it may hold the input, or anything else).
        old = read_config(run_dir)
        if old is None and self.has_results(run_dir):
            raise InputError(
                f"{run_dir} holds files but no {CONFIG} of rare's, so it is not {self.what} rare made"
                + (": --force only sets aside what rare wrote" if force else ""),
                hint="use a new --out (an empty or new folder)",
            )
        if old is not None:
            diffs = diff(old.get("identity"), document["identity"])
            if not diffs:
                return
            if not force:
                shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
                raise InputError(
                    f"{run_dir} holds a run with another configuration ({shown})",
                    hint="use a new --out, or add --force to move the old results aside and start again",
                )
        if not write:
            return
        if old is not None or self.has_results(run_dir):
            dest = self.archive(run_dir)
            warn(f"--force: moved the previous results of {run_dir} to {dest}")
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            write_text_new(run_dir / CONFIG, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        except FileExistsError:
            self.check(run_dir, document, force=False, write=False)  # another run created it just now


def write_result(path: Path, record: dict[str, Any], replace: bool) -> None:
    """One item's result, atomically; without `replace`, a result another process wrote meanwhile stands."""
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    if replace:
        write_text_replace(path, text)
        return
    with contextlib.suppress(FileExistsError):
        write_text_new(path, text)
