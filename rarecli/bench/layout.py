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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.io.naming import output_name
from rarecli.io.runfolder import RunFolder

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
