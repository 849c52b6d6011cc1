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

import datetime
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import InputError
from rarecli.io.inputs import read_text
from rarecli.io.naming import output_name
from rarecli.io.runfolder import RunFolder

SCHEMA = 1


@dataclass(frozen=True)
class WorkItem:
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


def _has_results(run_dir: Path) -> bool:
    return (run_dir / "items").exists() or (run_dir / "images").exists()


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


RUN_FOLDER = RunFolder("RareBench results", _has_results, archive)


def check_config(run_dir: Path, document: dict[str, Any], force: bool, write: bool) -> None:
    """Refuse a run folder made with another configuration; the main process creates config.json."""
    RUN_FOLDER.check(run_dir, document, force, write)


def item_problem(record: Any) -> str | None:
    """What is wrong with an item file's record (None: a result rare could have written). WorkItem files
    are rare's own, written atomically; one that fails this was edited or damaged outside rare."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not an item record"
    if record.get("status") not in ("ok", "failed"):
        return f"status {record.get('status')!r} is neither ok nor failed"
    if not isinstance(record.get("category"), str):
        return "has no category"
    if record["status"] == "ok":
        score = record.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            return f"score {score!r} is not a finite number"
        if not 0.0 <= float(score) <= 100.0:
            return f"score {score!r} is outside 0-100"
    return None


def read_item(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """An item file's record, or None and what is wrong with the file (unreadable, truncated, edited,
    a FIFO: nothing here waits on a special file)."""
    try:
        record = json.loads(read_text(path, "item file"))
    except (OSError, ValueError, InputError) as exc:
        return None, str(exc).splitlines()[0][:200]
    problem = item_problem(record)
    return (None, problem) if problem else (record, None)


def load_items(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item result of a run, and the paths of unreadable ones (with what is wrong)."""
    items, unreadable = [], []
    for path in sorted((Path(run_dir) / "items").glob("*/*.json")):
        record, problem = read_item(path)
        if record is None:
            unreadable.append(f"{path.relative_to(run_dir)}: {problem}")
            continue
        record["_path"] = str(path.relative_to(run_dir))
        items.append(record)
    return items, unreadable
