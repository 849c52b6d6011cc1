"""The layout of a RareBench run folder, and reading and writing what is in it::

    config.json                         the run's configuration (a different one is refused)
    images/<category>/<name>.png        one PNG per item, with its settings embedded
    items/<category>/p<PPP>_i<II>.json  one result per item: score, or failure and reason
    summary.json                        per-category and overall scores (main process, at the end)
    method/<method>/...                 what a method makes besides the image (seeds, loss curves)
    superseded-<time>/                  an older run's files, moved aside by --force (never deleted)

Every file is written atomically on its own, so a killed run loses at most the items in flight.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import InputError, RareError
from rarecli.io.atomic import write_text_new, write_text_replace
from rarecli.io.naming import output_name
from rarecli.log import warn

SCHEMA = 1


@dataclass(frozen=True)
class Item:
    category: str
    prompt_index: int
    image_index: int
    images_per_prompt: int
    prompt: str
    seed: int

    @property
    def key(self) -> str:
        return f"p{self.prompt_index:03d}_i{self.image_index:02d}"

    def result_path(self, run_dir: Path) -> Path:
        return run_dir / "items" / self.category / f"{self.key}.json"

    def image_path(self, run_dir: Path, method: str) -> Path:

        index = self.prompt_index * self.images_per_prompt + self.image_index
        return run_dir / "images" / self.category / output_name(index, self.seed, method, self.prompt)


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def read_config(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RareError(f"cannot read {path}: {exc}", hint="fix it, or use a new --out") from exc


def archive(run_dir: Path) -> Path:
    """Move an old run's files aside (never delete): RUN_DIR/superseded-<time>/."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = run_dir / f"superseded-{stamp}"
    n = 1
    while dest.exists():
        dest = run_dir / f"superseded-{stamp}-{n}"
        n += 1
    dest.mkdir(parents=True)
    for name in ("config.json", "summary.json", "items", "images"):
        if (run_dir / name).exists():
            os.rename(run_dir / name, dest / name)
    return dest


def check_config(run_dir: Path, document: dict[str, Any], force: bool, write: bool) -> None:
    """Refuse a run folder made with another configuration; the main process creates config.json."""

    old = read_config(run_dir)
    if old is None and ((run_dir / "items").exists() or (run_dir / "images").exists()) and not force:
        raise InputError(
            f"{run_dir} holds RareBench results but no config.json",
            hint="use a new --out, or --force to move the old results aside",
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
    if old is not None or (run_dir / "items").exists() or (run_dir / "images").exists():
        dest = archive(run_dir)
        warn(f"--force: moved the previous results of {run_dir} to {dest}")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_text_new(run_dir / "config.json", json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    except FileExistsError:
        check_config(run_dir, document, force=False, write=False)  # another run created it just now


def write_result(path: Path, record: dict[str, Any], replace: bool) -> None:

    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    if replace:
        write_text_replace(path, text)
        return
    # Written meanwhile by another process of the same run: that result stands.
    with contextlib.suppress(FileExistsError):
        write_text_new(path, text)


def load_items(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item result of a run, and the paths of unreadable ones."""
    items, unreadable = [], []
    for path in sorted((Path(run_dir) / "items").glob("*/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            unreadable.append(str(path.relative_to(run_dir)))
            continue
        record["_path"] = str(path.relative_to(run_dir))
        items.append(record)
    return items, unreadable
