"""RareBench's files from the authors' repository: download once into the cache and verify, or read a
local copy of the prompts (--data).

None of these files is part of this project (the authors' repository has no licence): each is fetched
for the user from the public repository at the pinned commit (or a mirror of it, RARE_RAREBENCH_URL)
and accepted only when its SHA-256 matches the definition. Prompt files are compared after
normalisation (also in rarebench/rarebench.yaml): UTF-8 without BOM, any line ending, trailing
whitespace stripped per line, empty lines dropped, lines joined by "\\n" with one final "\\n". The
other files (the authors' frozen plans, their judge script) are compared as raw bytes.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecli.bench.definition import Category, Definition, PinnedFile, PlanSource
from rarecli.errors import InputError, RareError
from rarecli.io.atomic import cache_write, write_replace, write_text_replace
from rarecli.io.inputs import read_text
from rarecli.llm.schema import Plan
from rarecli.log import info, warn
from rarecli.methods.r2f.authors import import_plans, import_plus_plans
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.paths import cache_dir

ENV_URL = "RARE_RAREBENCH_URL"
TIMEOUT_S = 30.0
MAX_BYTES = 2 * 1024 * 1024  # a prompt file is a few kB; anything this large is not one


@dataclass(frozen=True)
class PromptFile:
    category: Category
    prompts: tuple[str, ...]
    sha256: str  # of the normalised text
    verified: bool  # matches the definition's pinned checksum
    path: Path  # where it was read (cache or --data)


def normalise(raw: bytes | str) -> str:
    """The checksummed form of a prompt file."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    text = text.removeprefix("\ufeff")
    lines = [line.rstrip() for line in text.splitlines()]
    return "".join(line + "\n" for line in lines if line)


def sha256_text(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def _decode(raw: bytes, where: str) -> str:
    try:
        return normalise(raw)
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not UTF-8 text: {exc}") from exc


def cache_folder(definition: Definition) -> Path:
    return cache_dir() / "rarebench" / (definition.commit or "unpinned")


def repository_url(definition: Definition, path: str) -> str:
    """Where a file of the repository at the pinned commit is read: the definition's base, or the
    mirror in RARE_RAREBENCH_URL (`{commit}` is filled in either way)."""
    base = os.environ.get(ENV_URL) or definition.base_url
    return base.replace("{commit}", definition.commit or "").rstrip("/") + "/" + path.lstrip("/")


def file_url(definition: Definition, category: Category) -> str:
    path = f"{definition.prompts_dir}/{category.file}" if definition.prompts_dir else category.file
    return repository_url(definition, path)


def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "rare (RareBench download)"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RareError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}",
            hint="check the pinned commit in the RareBench definition, or pass --data DIR with a local copy",
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RareError(
            f"cannot download {url}: {reason}",
            hint="check your network (or set RARE_RAREBENCH_URL to a mirror), or pass --data DIR with a local copy",
        ) from exc
    if len(data) > MAX_BYTES:
        raise RareError(f"{url} is larger than {MAX_BYTES} bytes: not a RareBench file")
    return data


def fetch_pinned(definition: Definition, pinned: PinnedFile, what: str, source: PlanSource | None = None) -> bytes:
    """A pinned file of the authors' repository (raw SHA-256), from the cache or downloaded once; with
    `source`, of that other repository (AAPB's) at its own pinned commit.

    Nothing is cached unless the digest matches; a cached copy that no longer matches is fetched again.
    `what` names the file in messages ("the authors' judge script").
    """
    if source is None and definition.commit is None:
        raise RareError(f"the RareBench definition pins no commit, so {what} cannot be verified")
    folder = cache_folder(definition) if source is None else cache_dir() / "rarebench" / source.name / source.commit
    path = folder / pinned.file
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == pinned.sha256:
            return data
        warn(f"cached {path} does not match its checksum; downloading it again")
    if source is None:
        url = repository_url(definition, pinned.file)
    else:
        base = os.environ.get(source.env_url) or source.base_url
        url = base.replace("{commit}", source.commit).rstrip("/") + "/" + pinned.file.lstrip("/")
    info(f"Downloading {what} from {url}")
    data = _download(url)
    got = hashlib.sha256(data).hexdigest()
    if got != pinned.sha256:
        raise RareError(
            f"checksum mismatch for {pinned.file} from {url}: expected {pinned.sha256}, got {got}; nothing was cached",
            hint="the file changed upstream or the download was corrupted; check the pinned commit or the mirror",
        )
    cache_write("downloaded RareBench file", lambda: write_replace(path, lambda fh: fh.write(data)))
    return data


def _require_pin(definition: Definition, category: Category) -> str:
    if definition.commit is None or category.sha256 is None:
        missing = "commit" if definition.commit is None else f"SHA-256 of {category.file}"
        raise RareError(
            f"the RareBench definition pins no {missing}, so a download could not be verified",
            hint=f"pass --data DIR with the prompt files (a copy you checked), or fill in the pin in "
            f"{definition.path} (it says how)",
        )
    return category.sha256


def fetch(definition: Definition, category: Category) -> PromptFile:
    """The category's prompt file from the cache, downloading and verifying it on first use.

    Nothing is cached unless the checksum matches; a cached copy that no longer matches (edited,
    corrupted) is fetched again.
    """

    expected = _require_pin(definition, category)
    path = cache_folder(definition) / category.file
    if path.is_file():
        text = _decode(path.read_bytes(), str(path))
        if sha256_text(text) == expected:
            return _prompt_file(category, text, True, path)
        warn(f"cached {path} does not match its checksum; downloading it again")
    url = file_url(definition, category)
    info(f"Downloading RareBench {category.name} prompts from {url}")
    text = _decode(_download(url), url)
    got = sha256_text(text)
    if got != expected:
        raise RareError(
            f"checksum mismatch for {category.file} from {url}: expected {expected}, got {got}; nothing was cached",
            hint="the file changed upstream or the download was corrupted; check the pinned commit, "
            "or pass --data DIR with a copy you trust",
        )
    # Another process of the same run may write the same verified file at the same time: replace is
    # atomic, and both write identical bytes.
    cache_write("downloaded RareBench file", lambda: write_text_replace(path, text))
    return _prompt_file(category, text, True, path)


def read_local(definition: Definition, category: Category, folder: Path) -> PromptFile:
    """The category's prompt file from a user folder (--data); checked against the pin when there is one."""

    path = Path(folder) / category.file
    if not path.is_file():
        raise InputError(
            f"prompt file for {category.name} not found: {path}",
            hint=f"--data must hold the RareBench files by their repository names ({category.file}, ...)",
        )
    text = _decode(read_text(path, "prompt file", limit=MAX_BYTES).encode("utf-8"), str(path))
    got = sha256_text(text)
    verified = category.sha256 is not None and got == category.sha256
    if category.sha256 is not None and not verified:
        warn(
            f"{path} differs from the pinned RareBench {category.name} file (SHA-256 {got}); "
            "scores are not comparable with the published numbers"
        )
    return _prompt_file(category, text, verified, path)


def _prompt_file(category: Category, text: str, verified: bool, path: Path) -> PromptFile:
    prompts = tuple(text.splitlines())
    if not prompts:
        raise InputError(f"prompt file for {category.name} is empty: {path}")
    return PromptFile(category, prompts, sha256_text(text), verified, path)


def load_prompts(definition: Definition, categories: list[Category], data: Path | None = None) -> list[PromptFile]:
    """Every selected category's prompts: from `data` when given, else from the verified cache/download."""
    if data is not None:
        if not Path(data).is_dir():
            raise InputError(f"--data is not a folder: {data}")
        return [read_local(definition, c, data) for c in categories]
    return [fetch(definition, c) for c in categories]


def provenance(definition: Definition, files: list[PromptFile], data: Path | None) -> dict[str, Any]:
    """What config.json records about the prompts: their checksums (the identity) and the source."""
    return {
        "source": "local" if data is not None else "download",
        "data": str(Path(data).resolve()) if data is not None else None,
        "repository": definition.repository,
        "commit": definition.commit,
        "sha256": {f.category.name: f.sha256 for f in files},
        "verified": {f.category.name: f.verified for f in files},
        "count": {f.category.name: len(f.prompts) for f in files},
    }


def load_replayed_plans(
    definition: Definition, categories: list[Category], pins: str, plus: bool = False
) -> tuple[dict[str, Plan | PlusPlan], dict[str, str]]:
    """Frozen plans of the selected categories, as a method's paper ran them: the files each category pins
    in its `pins` field (`authors_plans`, `authors_plus_plans`, `aapb_plans`), fetched at the pin and
    verified, by prompt with its whitespace collapsed (their keys are the benchmark's prompts); and the
    prompts whose plan our checks refuse, with why (R2F+: their validator allows a box of zero width).
    `plus`: the files hold R2F+ plans."""
    source = definition.plan_source(pins)
    owner = f"{source.name.upper()}'s" if source is not None else "the authors'"
    plans: dict[str, Plan | PlusPlan] = {}
    refused: dict[str, str] = {}
    for category in categories:
        pinned = getattr(category, pins)
        what = f"{owner} {category.name}" + (" R2F+ plans" if plus else " plans")
        if pinned is None:
            raise RareError(f"the RareBench definition names no {owner} {'R2F+ ' if plus else ''}plans for {category.name}")
        data = fetch_pinned(definition, pinned, what, source)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RareError(f"{pinned.file} is not UTF-8 text: {exc}") from exc
        if plus:
            read, bad = import_plus_plans(text, pinned.file)
            refused.update(bad)
        else:
            read = import_plans(text, pinned.file)
        plans.update({plan_key(plan.prompt): plan for plan in read})
    return plans, refused


def load_authors_plus_plans(
    definition: Definition, categories: list[Category]
) -> tuple[dict[str, PlusPlan], dict[str, str]]:
    """The authors' frozen R2F+ plans (see `load_replayed_plans`)."""
    return load_replayed_plans(definition, categories, "authors_plus_plans", plus=True)  # type: ignore[return-value]


def plan_key(prompt: str) -> str:
    return " ".join(prompt.split())
