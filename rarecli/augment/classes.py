"""The classes of an image-classification folder (`torchvision.datasets.ImageFolder`'s layout).

ROOT holds one folder per class, each with a few images. A class's name, which goes into the prompt, is
its folder's name with underscores as spaces (`tiger_cat` -> "tiger cat"), unless ROOT holds a mapping:
- `classes.json`: an object from folder name to class name (`{"n02123159": "tiger cat"}`), or the
  `imagenet_class_index.json` form (`{"281": ["n02123159", "tiger_cat"]}`);
- `classes.txt`: one class per line, `FOLDER NAME...`; when NAME lists comma-separated synonyms (ImageNet's
  `LOC_synset_mapping.txt`: `n02123159 tiger cat`), the first is used. Blank lines and `#` comments are
  ignored.
A class folder the mapping does not name is an error for that class, not a silent fallback to an id.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.errors import InputError
from rarecli.io.hashing import file_sha256
from rarecli.io.images import IMAGE_SUFFIXES
from rarecli.io.inputs import loads, read_text

MAPPINGS = ("classes.json", "classes.txt")


@dataclass(frozen=True)
class ClassFolder:
    folder: str  # the folder's name, under ROOT and under the DATASET
    name: str | None  # what the prompt calls it; None when the mapping does not name it
    path: Path
    real_images: int  # files with an image suffix: what --only-below counts

    def prompt(self, template: str) -> str:
        if self.name is None:
            raise InputError(f"no class name for folder {self.folder!r} in the mapping file")
        return template.replace("{}", self.name)


@dataclass(frozen=True)
class Root:
    path: Path
    classes: list[ClassFolder]
    names_from: dict[str, Any]  # where class names came from (recorded in the dataset's config)


def read_root(root: Path) -> Root:
    """The class folders of `root`, in name order (hidden folders are not classes)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"not a folder: {root}", hint="ROOT is a folder with one folder of images per class")
    mapping, names_from = _read_mapping(root)
    classes = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if mapping is None:
            name: str | None = " ".join(path.name.replace("_", " ").split()) or None
        else:
            name = mapping.get(path.name)
        count = sum(1 for f in path.iterdir() if f.is_file() and not f.name.startswith(".") and _is_image_name(f))
        classes.append(ClassFolder(path.name, name, path, count))
    if not classes:
        raise InputError(f"no class folders in {root}", hint="ROOT holds one folder per class, e.g. ROOT/tiger_cat/")
    return Root(root, classes, names_from)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _read_mapping(root: Path) -> tuple[dict[str, str] | None, dict[str, Any]]:
    present = [root / name for name in MAPPINGS if (root / name).is_file()]
    if len(present) > 1:
        raise InputError(f"{root} holds both classes.json and classes.txt", hint="keep one of them")
    if not present:
        return None, {"source": "folder names"}
    path = present[0]
    text = read_text(path, "class-name mapping")
    mapping = _parse_json(text, path) if path.suffix == ".json" else _parse_txt(text, path)
    return mapping, {"source": path.name, "sha256": file_sha256(path)}


def _parse_json(text: str, path: Path) -> dict[str, str]:
    data = loads(text, str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object from folder name to class name")
    out = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            out[value[0]] = value[1]  # imagenet_class_index.json: index -> [wnid, name]
        else:
            raise InputError(
                f"{path}: the entry {key!r} is neither a name nor a [folder, name] pair",
                hint='use {"n02123159": "tiger cat"}',
            )
    return {folder: _clean(name, path, folder) for folder, name in out.items()}


def _parse_txt(text: str, path: Path) -> dict[str, str]:
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise InputError(f"{path}:{number}: expected `FOLDER NAME`, got {line!r}", hint="e.g. n02123159 tiger cat")
        folder = parts[0].rstrip(":,")
        out[folder] = _clean(parts[1].split(",")[0], path, folder)
    return out


def _clean(name: str, path: Path, folder: str) -> str:
    text = " ".join(name.replace("_", " ").split())
    if not text:
        raise InputError(f"{path}: the class name for {folder!r} is empty")
    return text


def select(root: Root, wanted: list[str] | None, only_below: int | None) -> tuple[list[ClassFolder], list[str]]:
    """The classes to augment (`--classes`, by folder or class name; `--only-below N`: fewer than N real
    images), and a line for each class left out by --only-below."""
    classes = root.classes
    if wanted:
        by_key: dict[str, ClassFolder] = {}
        for c in classes:
            by_key.setdefault(c.folder, c)
            if c.name:
                by_key.setdefault(c.name, c)
        missing = [w for w in wanted if w not in by_key]
        if missing:
            close = difflib.get_close_matches(missing[0], list(by_key), n=3)
            raise InputError(
                f"no class {missing[0]!r} in {root.path}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                hint=("did you mean " + ", ".join(close) + "?") if close else "name a class folder, or its class name",
            )
        chosen = {id(by_key[w]) for w in wanted}
        classes = [c for c in classes if id(c) in chosen]
    left_out = []
    if only_below is not None:
        kept = []
        for c in classes:
            if c.real_images < only_below:
                kept.append(c)
            else:
                left_out.append(f"{c.folder}: {c.real_images} real images, not fewer than {only_below}")
        classes = kept
    return classes, left_out
