"""The RareBench definition (rarebench/rarebench.yaml): categories, prompt-file source and checksums,
judge rubric, scoring formula and the published anchors.

RARE_RAREBENCH_DEFINITION points at another YAML of the same shape (a pinned newer commit, a mirror,
or a test set); the packaged file is used otherwise.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rarecli.errors import InputError, RareError
from rarecli.paths import data_file

ENV_DEFINITION = "RARE_RAREBENCH_DEFINITION"


@dataclass(frozen=True)
class PinnedFile:
    """A file of the authors' repository at the pinned commit, by its path there and raw SHA-256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Category:
    name: str
    file: str
    sha256: str | None
    kind: str = "single"
    about: str = ""
    authors_plans: PinnedFile | None = None  # the authors' frozen GPT-4 R2F plans for this category
    authors_plus_plans: PinnedFile | None = None  # their frozen GPT-4o R2F+ plans (multi-object categories)
    aapb_plans: PinnedFile | None = None  # AAPB's frozen GPT-4 R2F plans, in AAPB's repository (`aapb_source`)


@dataclass(frozen=True)
class PlanSource:
    """Another method's repository at a pinned commit, where its frozen plans are read (AAPB's)."""

    name: str
    repository: str
    commit: str
    base_url: str  # `{commit}` is filled in
    env_url: str  # the variable that names a mirror instead
    judge_model: str | None = None  # the judge snapshot that method's paper used


@dataclass(frozen=True)
class JudgeSpec:
    model: str
    rubric: str
    rubric_version: int
    temperature: float = 0.0
    max_tokens: int = 300

    @property
    def rubric_sha256(self) -> str:
        return hashlib.sha256(self.rubric.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PaperJudgeSpec:
    """The authors' judge script and how it judged (see rarebench.yaml); its rubric is read at run time."""

    script: PinnedFile
    function: str
    variable: str
    model: str
    max_tokens: int
    image_mime: str
    attempts: int
    scale: tuple[int, int]


@dataclass(frozen=True)
class Definition:
    name: str
    version: int
    repository: str
    commit: str | None
    base_url: str
    categories: tuple[Category, ...]
    judge: JudgeSpec
    paper_judge: PaperJudgeSpec | None = None
    prompts_dir: str = ""
    anchors: dict[str, dict[str, float]] = field(default_factory=dict)
    anchors_source: str = ""
    anchors_protocol: str = "paper"
    path: Path | None = None
    aapb: PlanSource | None = None
    def plan_source(self, pins: str) -> PlanSource | None:
        """Where the plans a category pins in its field `pins` are read: another method's repository
        (`aapb_plans`: AAPB's), or None for R2F's own."""
        if pins == "aapb_plans":
            if self.aapb is None:
                raise RareError("the RareBench definition names no AAPB repository (aapb_source)")
            return self.aapb
        return None

    # Later methods' published rows (same judge and protocol as `anchors`), each with its source.
    later_anchors: dict[str, dict[str, float]] = field(default_factory=dict)
    later_sources: dict[str, str] = field(default_factory=dict)

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name.lower() == name.strip().lower():
                return c
        raise InputError(
            f"unknown RareBench category {name!r}",
            hint="choose from: " + ", ".join(c.name for c in self.categories),
        )

    def select(self, names: list[str] | None) -> list[Category]:
        """Categories in the definition's order; `names` may be repeated or comma-separated."""
        if not names:
            return list(self.categories)
        wanted = {self.category(n).name for item in names for n in item.split(",") if n.strip()}
        if not wanted:
            raise InputError("--categories is empty")
        return [c for c in self.categories if c.name in wanted]


def image_score(judge_score: float) -> float:
    """The paper's per-image score: a 1..5 judge score s maps to max(s - 1, 0) / 4 * 100."""
    return max(float(judge_score) - 1.0, 0.0) / 4.0 * 100.0


def default_path() -> Path:
    """RARE_RAREBENCH_DEFINITION, else rarebench/rarebench.yaml: the one copy, in the checkout or shipped
    in the wheel."""
    env = os.environ.get(ENV_DEFINITION)
    if env:
        return Path(env).expanduser()
    return data_file("rarebench", "rarebench.yaml")


def load_definition(path: Path | None = None) -> Definition:
    """Read and check a definition YAML (the packaged one by default)."""

    path = Path(path) if path is not None else default_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RareError(
            f"RareBench definition not found: {path}",
            hint=f"reinstall rare from its source checkout, or point {ENV_DEFINITION} at a definition YAML",
        ) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise RareError(f"cannot read the RareBench definition {path}: {exc}") from exc
    try:
        return _parse(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise RareError(f"malformed RareBench definition {path}: {exc!r}") from exc


def _pinned(data: Any) -> PinnedFile | None:
    if not data:
        return None
    file = str(data["file"])
    if file.startswith(("/", ".")) or ".." in file.split("/") or "\\" in file:
        raise ValueError(f"a pinned file must be a path inside the repository, got {file!r}")
    return PinnedFile(file, str(data["sha256"]).lower())


def _paper_judge(data: Any) -> PaperJudgeSpec | None:
    if not data:
        return None
    script = PinnedFile(str(data["file"]), str(data["sha256"]).lower())
    low, high = (int(x) for x in data.get("judge_scale", (0, 5)))
    return PaperJudgeSpec(
        script=script,
        function=str(data["function"]),
        variable=str(data["variable"]),
        model=str(data["model"]),
        max_tokens=int(data["max_tokens"]),
        image_mime=str(data.get("image_mime", "image/png")),
        attempts=int(data.get("attempts", 3)),
        scale=(low, high),
    )


def _parse(data: dict[str, Any], path: Path) -> Definition:
    source = data["source"]
    categories = tuple(
        Category(
            name=str(c["name"]),
            file=str(c["file"]),
            sha256=(str(c["sha256"]).lower() if c.get("sha256") else None),
            kind=str(c.get("kind", "single")),
            about=str(c.get("about", "")),
            authors_plans=_pinned(c.get("authors_plans")),
            authors_plus_plans=_pinned(c.get("authors_plus_plans")),
            aapb_plans=_pinned(c.get("aapb_plans")),
        )
        for c in data["categories"]
    )
    names = [c.name for c in categories]
    if len(set(names)) != len(names) or not names:
        raise ValueError("category names must be unique and at least one must be given")
    for c in categories:
        if "/" in c.file or "\\" in c.file or c.file.startswith("."):
            raise ValueError(f"category {c.name}: file must be a plain file name, got {c.file!r}")
    j = data["judge"]
    judge = JudgeSpec(
        model=str(j["model"]),
        rubric=str(j["rubric"]),
        rubric_version=int(j.get("rubric_version", 1)),
        temperature=float(j.get("temperature", 0.0)),
        max_tokens=int(j.get("max_tokens", 300)),
    )
    anchors_block = data.get("anchors") or {}
    anchors = {
        str(run): {str(k): float(v) for k, v in scores.items()}
        for run, scores in (anchors_block.get("runs") or {}).items()
    }
    commit = source.get("commit")
    aapb = data.get("aapb_source")
    later = data.get("later_anchors") or {}
    return Definition(
        name=str(data.get("name", "rarebench")),
        version=int(data.get("version", 1)),
        repository=str(source.get("repository", "")),
        commit=str(commit) if commit else None,
        base_url=str(source["base_url"]),
        categories=categories,
        judge=judge,
        paper_judge=_paper_judge(data.get("paper_judge")),
        prompts_dir=str(source.get("prompts_dir", "")).strip("/"),
        anchors=anchors,
        anchors_source=str(anchors_block.get("source", "")),
        anchors_protocol=str(anchors_block.get("protocol", "paper")),
        path=path,
        aapb=_source("aapb", aapb, "RARE_AAPB_URL") if aapb else None,
        later_anchors={
            str(n): {str(k): float(v) for k, v in row["scores"].items()} for n, row in later.items()
        },
        later_sources={str(n): str(row["source"]) for n, row in later.items()},
    )


def _source(name: str, data: dict[str, Any], env_url: str) -> PlanSource:
    return PlanSource(
        name=name,
        repository=str(data["repository"]),
        commit=str(data["commit"]),
        base_url=str(data["base_url"]),
        env_url=env_url,
        judge_model=str(data["judge_model"]) if data.get("judge_model") else None,
    )
