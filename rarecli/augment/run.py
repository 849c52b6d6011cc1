"""`rare augment` as a library call: generate K images of each class of ROOT into DATASET, resumably.

Work items are (class, image index); image i of every class is drawn from seed `seed + i`, and for
SeedSelect from the i-th reference resample / NAO start point, so an item is the same image whichever
run or process makes it, and raising `per_class` later adds images without changing the first ones.
An item whose image exists is done; re-running the same command resumes. A class that cannot be done
(an empty folder, no readable image, no name in the mapping) fails on its own, with its reason, and
the other classes go on.

Scale: under `accelerate launch`, as for `rare bench`, each process takes the items whose position modulo
the world size is its rank, prepares the method once per class it has work in (a class's references are
DDIM-inverted once per process, and cached on disk by `rarecli.methods.inversion`), and the main process
merges the manifest and the summary after the others finish.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli import __version__
from rarecli.augment.classes import ClassFolder, read_root, select
from rarecli.augment.layout import (
    DATASET_FOLDER,
    MANIFEST,
    SCHEMA,
    SUMMARY,
    DatasetItem,
    failures_path,
    manifest_text,
    remove_partial_files,
)
from rarecli.errors import InputError, OutputError, RareError, failure_reason
from rarecli.io.atomic import check_writable, write_text_replace
from rarecli.io.inputs import png_is_complete, read_text
from rarecli.log import info, progress, warn
from rarecli.methods import registry
from rarecli.methods.driver import Driver
from rarecli.methods.options import MethodOptions
from rarecli.methods.output import Written, write_generated
from rarecli.methods.protocol import MethodContext, Request
from rarecli.runtime.device import DeviceManager
from rarecli.runtime.distributed import main_first, process_state

COMMAND = "augment"


@dataclass
class AugmentConfig:
    root: Path
    out: Path
    method: str = registry.SEEDSELECT.name
    per_class: int = 10
    classes: list[str] | None = None
    only_below: int | None = None
    prompt_template: str = "a photo of a {}"
    model: str = "stabilityai/stable-diffusion-2-1-base"
    revision: str | None = None
    steps: int | None = None  # SeedSelect: inner DDIM steps; sd: sampling steps (None: the default)
    guidance: float | None = None
    seed: int = 0
    # The method's own options (iters, lr, nao_starts, ...): by name, or its options class's instance.
    options: Mapping[str, Any] | MethodOptions = field(default_factory=dict)
    force: bool = False
    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False


@dataclass
class AugmentResult:
    dataset: Path
    process_index: int = 0
    num_processes: int = 1
    written: list[Path] = field(default_factory=list)
    skipped: int = 0  # items whose image was already there
    failed: list[dict[str, Any]] = field(default_factory=list)  # one record per failed class
    left_out: list[str] = field(default_factory=list)  # classes --only-below left out
    manifest: Path | None = None
    summary: dict[str, Any] | None = None
    interrupted: bool = False
    timing: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "written": [str(p) for p in self.written],
            "skipped": self.skipped,
            "failed": self.failed,
            "left_out": self.left_out,
            "manifest": str(self.manifest) if self.manifest else None,
            "interrupted": self.interrupted,
            "timing": self.timing,
        }


def check_template(template: str) -> None:
    if template.count("{}") != 1:
        raise InputError(
            f"--prompt-template must hold {{}} exactly once, where the class name goes (got {template!r})",
            hint='e.g. --prompt-template "a photo of a {}"',
        )


def _identity(
    config: AugmentConfig, options: MethodOptions, names_from: dict[str, Any], dtype: str
) -> dict[str, Any]:
    # What makes image i of a class what it is. Not the class list, --only-below or --per-class: a later
    # run may add classes or images to the same dataset.
    return {
        "method": config.method,
        "model": config.model,
        "revision": config.revision,
        "steps": config.steps,
        "guidance": config.guidance,
        "dtype": dtype,
        "options": dict(sorted(options.as_dict().items())),
        "seed_policy": {"rule": "image i of every class uses seed base + i", "base": config.seed},
        "prompt_template": config.prompt_template,
        "class_names": names_from,
    }


def run_augment(config: AugmentConfig) -> AugmentResult:
    """Generate the missing images of every selected class; see the module docstring."""
    check_template(config.prompt_template)
    if config.per_class < 1:
        raise InputError(f"--per-class must be at least 1 (got {config.per_class})")
    if config.only_below is not None and config.only_below < 1:
        raise InputError(f"--only-below must be at least 1 (got {config.only_below})")
    method = registry.get(config.method, "rare augment")
    options = method.check(config.options)
    root = read_root(config.root)
    chosen, left_out = select(root, config.classes, config.only_below)
    dataset = Path(config.out)
    if dataset.resolve() == root.path.resolve() or root.path.resolve() in dataset.resolve().parents:
        raise InputError("--out must not be inside ROOT", hint="the generated classes would be read as real ones")
    if dataset.resolve() in root.path.resolve().parents:
        raise InputError("--out must not contain ROOT", hint="the dataset's class folders would sit beside your input")
    check_writable(dataset)

    state, device = process_state(config.device)
    manager = DeviceManager(device, config.dtype, offload=config.offload)
    document = {
        "schema": SCHEMA,
        "identity": _identity(config, options, root.names_from, manager.dtype),
        "root": str(root.path.resolve()),
        "rare_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }

    def prepare(main: bool) -> None:
        DATASET_FOLDER.check(dataset, document, config.force and main, write=main)
        # Only the main process, before the others start writing: a temporary file then is a dead write's.
        removed = remove_partial_files(dataset) if main else 0
        if removed:
            info(f"removed {removed} partial file(s) a killed run left in {dataset}")

    main_first(state, prepare)

    result = AugmentResult(dataset, state.process_index, state.num_processes, left_out=left_out)
    for line in left_out:
        info(f"--only-below: leaving out {line}")
    try:
        _generate(config, method, options, chosen, dataset, manager, state, result)
    except KeyboardInterrupt:
        result.interrupted = True
    _write_failures(dataset, result)
    if not result.interrupted:
        state.wait_for_everyone()
    if state.is_main_process:
        _finish(dataset, result, state.num_processes)
    failed = result.summary["failed"] if result.summary else []
    if state.is_main_process and not result.interrupted and chosen and len(failed) == len(chosen):
        first = failed[0]
        error = RareError(f"every class failed; first, {first['class']}: {first['reason']}", hint=first.get("hint"))
        error.written = [p for p in (result.manifest, dataset / SUMMARY) if p is not None]
        raise error
    return result


def _generate(config, method, options, chosen, dataset, manager, state, result) -> None:
    items = [(c, i) for c in chosen for i in range(config.per_class)]
    mine = items[state.process_index :: state.num_processes]
    # Per class, the indices this process has to make (an image on disk is a finished item).
    todo: dict[str, tuple[ClassFolder, list[int]]] = {}
    prompts: dict[str, str] = {}
    unnamed: dict[str, tuple[ClassFolder, InputError, int]] = {}
    for cls, i in mine:
        if cls.folder not in prompts and cls.folder not in unnamed:
            try:
                prompts[cls.folder] = cls.prompt(config.prompt_template)
            except InputError as exc:
                unnamed[cls.folder] = (cls, exc, 0)
        if cls.folder in unnamed:
            c, exc, n = unnamed[cls.folder]
            unnamed[cls.folder] = (c, exc, n + 1)
            continue
        path = DatasetItem(cls, i, config.seed + i, prompts[cls.folder]).path(dataset, config.method)
        if png_is_complete(path):
            result.skipped += 1
            continue
        if os.path.lexists(path):  # damaged (truncated, or not a regular file): set aside and made again
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            warn(f"{path} is damaged (truncated, or not a regular file): moved to {aside.name}, making it again")
        todo.setdefault(cls.folder, (cls, []))[1].append(i)
    for cls, exc, n in unnamed.values():  # this process's share of the class's images
        _fail(result, cls, exc, n, "name it in classes.json / classes.txt")
    if result.skipped:
        info(f"Resuming: {result.skipped} of {len(mine)} images already made")
    total = sum(len(v[1]) for v in todo.values())
    if not total:
        return
    context = MethodContext(
        config.model, config.revision, manager, config.steps, config.guidance, options, command=COMMAND
    )
    driver = Driver.prepare(method, context)
    seconds: list[float] = []
    class_seconds: dict[str, float] = {}
    with progress("classes", total=len(todo)) as class_bar, progress("images", total=total) as image_bar:
        for n, (cls, indices) in enumerate(todo.values()):
            prompt = prompts[cls.folder]
            info(f"class {n + 1}/{len(todo)} {cls.folder!r} ({prompt!r}): {len(indices)} image(s)")
            class_bar.update(status=cls.folder)
            request = Request(
                prompt,
                range(config.seed, config.seed + config.per_class),
                refs=cls.path if method.needs_refs else None,
                only=indices,
            )
            started = last = time.perf_counter()
            try:
                # A seed cut short is not the item (keep_interrupted=False): a re-run makes it whole.
                write = lambda made, cls=cls, prompt=prompt: _write(  # noqa: E731
                    made, DatasetItem(cls, made.index, made.seed, prompt), dataset, config.method, result
                )
                for drawn in driver.run(request, write, keep_interrupted=False):
                    made = drawn.made
                    now = time.perf_counter()
                    seconds.append(now - last)
                    last = now
                    image_bar.advance(status=f"{cls.folder} #{made.index}")
            except OutputError:
                raise  # the dataset cannot be written: no other class could be either
            except Exception as exc:  # a class that cannot be done fails alone; the others go on
                manager.free_memory()
                _fail(result, cls, exc, len(indices))
            class_seconds[cls.folder] = time.perf_counter() - started
            class_bar.advance()
    result.timing = {
        "seconds_per_image": sum(seconds) / len(seconds) if seconds else None,
        "seconds_per_class": class_seconds,
        "peak_memory_bytes": manager.peak_memory_bytes(),
    }
    _log_timing(result)


def _write(made, item: DatasetItem, dataset: Path, method: str, result: AugmentResult) -> Written | None:
    provenance = made.provenance
    provenance.extra = {
        **provenance.extra,
        "augment": {"class": item.cls.folder, "class_name": item.cls.name, "index": item.index},
    }
    path = item.path(dataset, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = write_generated(
            made.image, provenance, path=path, seed_tensor=made.seed_tensor, run_record=made.run_record
        )
    except FileExistsError:
        return None  # made meanwhile by another process of the same run
    result.written.append(written.image)
    return written


def _fail(result: AugmentResult, cls: ClassFolder, exc: BaseException, images: int, hint: str | None = None) -> None:
    reason = failure_reason(exc)
    hint = hint or (exc.hint if isinstance(exc, RareError) else None)
    warn(f"class {cls.folder!r} failed: {reason}")
    result.failed.append({"class": cls.folder, "images": images, "reason": reason, "hint": hint})


def _write_failures(dataset: Path, result: AugmentResult) -> None:
    text = json.dumps({"process_index": result.process_index, "failed": result.failed}, indent=2, ensure_ascii=False)
    write_text_replace(failures_path(dataset, result.process_index), text + "\n")


def _other_failures(path: Path) -> list[dict[str, Any]]:
    """Another process's failure records; a file that is not what rare wrote is warned about and left out."""
    if not path.exists():
        return []
    try:
        document = json.loads(read_text(path, "failure file"))
        records = document["failed"]
        if not all(isinstance(r, dict) and isinstance(r.get("class"), str) and isinstance(r.get("images"), int)
                   for r in records):  # fmt: skip
            raise ValueError("records are not classes with image counts")
    except (InputError, ValueError, TypeError, KeyError) as exc:
        warn(f"{path} is damaged and left out of the summary ({str(exc).splitlines()[0][:120]})")
        return []
    return list(records)


def _finish(dataset: Path, result: AugmentResult, num_processes: int) -> None:
    """The manifest of every image in the dataset and the run's summary (main process)."""
    text, count = manifest_text(dataset)
    result.manifest = write_text_replace(dataset / MANIFEST, text)
    by_class: dict[str, dict[str, Any]] = {}
    for rank in range(num_processes):
        path = failures_path(dataset, rank)
        records = result.failed if rank == result.process_index else _other_failures(path)
        for record in records:  # a class several processes had work in failed on each: one record
            if record["class"] in by_class:
                by_class[record["class"]]["images"] += record["images"]
            else:
                by_class[record["class"]] = dict(record)
    failed = list(by_class.values())
    result.summary = {
        "schema": SCHEMA,
        "images": count,
        "written_by_main_process": len(result.written),
        "already_made": result.skipped,
        "failed": failed,
        "left_out": result.left_out,
        "interrupted": result.interrupted,
        "timing_main_process": result.timing,
    }
    write_text_replace(dataset / SUMMARY, json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n")
    info(f"{count} image(s) in {dataset}; manifest {result.manifest}")


def _log_timing(result: AugmentResult) -> None:
    t = result.timing
    parts = [f"process {result.process_index + 1}/{result.num_processes}: wrote {len(result.written)} image(s)"]
    if t.get("seconds_per_image") is not None:
        parts.append(f"{t['seconds_per_image']:.2f} s/image")
    parts.append(f"{len(result.failed)} class(es) failed, {result.skipped} already made")
    if t.get("peak_memory_bytes"):
        parts.append(f"peak GPU memory {t['peak_memory_bytes'] / 2**30:.2f} GiB")
    info(", ".join(parts))
