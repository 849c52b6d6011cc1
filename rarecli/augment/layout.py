"""The DATASET folder `rare augment` writes: ROOT's layout, so an ImageFolder-style loader reads it as is::

    config.json                       what the images were made with (a different one is refused)
    <class folder>/<name>.png         one generated image, its settings embedded; `<name>` is
                                      `{index:05d}_{seed}_{method}_{slug}` (image `index` of the class)
    <class folder>/<name>.safetensors its initial noise (SeedSelect: the optimised seed)
    <class folder>/<name>.run.json    SeedSelect's account of the run: loss curve, timings
    manifest.jsonl                    one JSON line per image (rebuilt from the PNGs at the end of a run)
    summary.json                      counts, the classes that failed and why, timings
    failed-<process>.json             each process's failures, merged into summary.json

No folder but the class folders: a loader would take any other for a class. An image is written last,
after its side files, so an image on disk is a finished item; `--force` moves the whole old dataset to a
sibling folder, `DATASET.superseded-<time>`.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.augment.classes import ClassFolder
from rarecli.io.images import read_metadata
from rarecli.io.naming import output_name
from rarecli.io.runfolder import RunFolder
from rarecli.log import warn

SCHEMA = 1
MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class DatasetItem:
    cls: ClassFolder
    index: int  # image `index` of its class
    seed: int
    prompt: str

    def path(self, dataset: Path, method: str) -> Path:
        return dataset / self.cls.folder / output_name(self.index, self.seed, method, self.prompt)


def _has_results(dataset: Path) -> bool:
    return dataset.is_dir() and any(p.is_dir() for p in dataset.iterdir())


def archive(dataset: Path) -> Path:
    """Move the old dataset aside, whole (never delete): DATASET.superseded-<time>/."""
    dataset = dataset.resolve()  # `--out .` has no name of its own until resolved
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = dataset.with_name(f"{dataset.name}.superseded-{stamp}")
    n = 1
    while dest.exists():
        dest = dataset.with_name(f"{dataset.name}.superseded-{stamp}-{n}")
        n += 1
    os.rename(dataset, dest)
    return dest


DATASET_FOLDER = RunFolder("an augmented dataset", _has_results, archive)


def remove_partial_files(dataset: Path) -> int:
    """Delete the temporary files of writes a killed run left (`.rare-*.part`: never a finished file).
    Only the main process calls it, before the others start writing."""
    removed = 0
    if dataset.is_dir():
        for folder in (p for p in dataset.iterdir() if p.is_dir()):
            for part in folder.glob(".rare-*.part"):
                part.unlink(missing_ok=True)
                removed += 1
    return removed


def failures_path(dataset: Path, process_index: int) -> Path:
    return dataset / f"failed-{process_index}.json"


def images(dataset: Path) -> Iterator[Path]:
    """Every PNG in the dataset's class folders, in order."""
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        yield from sorted(folder.glob("*.png"))


def manifest_line(dataset: Path, png: Path) -> dict[str, Any] | None:
    """The manifest's record of one image, from the settings its PNG carries (None: not one of ours)."""
    try:
        meta = read_metadata(png).get("rare")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is left out with a warning
        warn(f"left out of the manifest: {png} ({exc})")
        return None
    if not isinstance(meta, dict) or "augment" not in meta:
        return None
    aug = meta["augment"]
    loss = meta.get("loss")
    seed_file, run = png.with_suffix(".safetensors"), png.with_name(png.stem + ".run.json")
    return {
        "path": str(png.relative_to(dataset)),
        "class": aug["class"],
        "class_name": aug["class_name"],
        "index": aug["index"],
        "method": meta.get("method"),
        "seed": meta.get("seed"),
        "prompt": meta.get("prompt"),
        "loss": loss.get("total") if isinstance(loss, dict) else None,
        "initial_loss": (meta.get("initial_loss") or {}).get("total"),
        "refs": meta.get("refs", []),
        "start": meta.get("start"),
        "seed_file": str(seed_file.relative_to(dataset)) if seed_file.is_file() else None,
        "run": str(run.relative_to(dataset)) if run.is_file() else None,
        "model": meta.get("model"),
    }


def manifest_text(dataset: Path) -> tuple[str, int]:
    lines = [line for png in images(dataset) if (line := manifest_line(dataset, png)) is not None]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), len(lines)
