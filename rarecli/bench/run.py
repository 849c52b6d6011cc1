"""A RareBench run: plan the work items, generate every image, judge them, write the summary.

A work item is (category, prompt index, image index); the run folder's layout is `layout`'s. Every
item's result is written atomically on its own, so a killed run loses at most the items in flight, and
re-running the same command skips what is done (an image already on disk is judged, not drawn again).

Scale: under `accelerate launch` each process takes the items whose index modulo the world size is
its rank (accelerate's PartialState), writes its own files, and the main process waits for the
others (wait_for_everyone) before it merges every item file into summary.json.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli import __version__
from rarecli.bench import judges as judges_mod
from rarecli.bench import methods as methods_mod
from rarecli.bench.dataset import PromptFile, load_prompts, load_replayed_plans, provenance
from rarecli.bench.definition import Definition, load_definition
from rarecli.bench.layout import SCHEMA, WorkItem, check_config, read_item
from rarecli.bench.report import print_table, write_summary
from rarecli.errors import InputError, RareError, failure_reason
from rarecli.io.runfolder import write_result
from rarecli.llm.openai_client import url_without_credentials
from rarecli.llm.schema import Plan
from rarecli.log import info, progress, warn
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.methods.registry import PLAIN as _PLAIN
from rarecli.runtime.cache import MODEL_CACHE
from rarecli.runtime.device import DeviceManager
from rarecli.runtime.distributed import main_first, process_state

PLAIN = _PLAIN.name


@dataclass
class RunConfig:
    out: Path
    method: str = PLAIN
    model: str = "stabilityai/stable-diffusion-3-medium-diffusers"
    revision: str | None = None
    categories: list[str] | None = None
    limit: int | None = None
    images_per_prompt: int = 1
    judge: str = "gpt-4o"
    judge_model: str | None = None
    protocol: str = "rare"  # rare: our rubric; paper: the authors' judge, as they ran it
    base_url: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    data: Path | None = None
    force: bool = False
    retry_failed: bool = False
    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    definition: Path | None = None  # None: the packaged rarebench/rarebench.yaml (or RARE_RAREBENCH_DEFINITION)
    # Method-specific settings (r2f: llm_backend, llm_model, llm_base_url); part of the run's identity.
    method_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    process_index: int
    num_processes: int
    summary_path: Path | None  # only the main process writes it
    summary: dict[str, Any] | None
    generated: int = 0
    judged: int = 0
    failed: int = 0
    skipped: int = 0
    timing: dict[str, Any] = field(default_factory=dict)


def plan_items(files: list[PromptFile], limit: int | None, images_per_prompt: int, seed: int) -> list[WorkItem]:
    """Every work item in a fixed order (category, prompt, image): the same on every process.

    Seed policy: image k of every prompt uses seed `seed + k`, so methods and prompts share noise.
    """
    items = []
    for f in files:
        prompts = f.prompts[:limit] if limit else f.prompts
        for p, prompt in enumerate(prompts):
            for k in range(images_per_prompt):
                items.append(WorkItem(f.category.name, p, k, images_per_prompt, prompt, seed + k))
    return items


def seed_policy(seed: int) -> dict[str, Any]:
    return {"rule": "image k of every prompt uses seed base + k", "base": seed}


# How a seed becomes noise here, recorded beside each run: the same seed gives the same image on every
# device with rare, but not the authors' image (they seeded torch's CUDA generator and drew on the GPU).
NOISE_SOURCE = (
    "torch.Generator('cpu').manual_seed(seed), one per image, standard normal in fp32, then moved to the "
    "device; the paper's runs drew their noise on the GPU after torch.manual_seed(42)"
)


def _identity(
    config: RunConfig, definition: Definition, files: list[PromptFile], dtype: str, protocol: Any
) -> dict[str, Any]:
    spec = methods_mod.spec_of(config.method)
    replayed: dict[str, Any] = {}
    if _replays_authors(config):
        pins = {f.category.name: getattr(f.category, spec.authors_plans or "") for f in files}
        replayed["authors_plans_sha256"] = {name: p.sha256 if p else None for name, p in pins.items()}
        source = definition.plan_source(spec.authors_plans or "")
        if source is not None:  # another method's own plans: its repository and its paper's judge
            replayed[f"{spec.name}_plans_source"] = f"{source.repository}@{source.commit}"
            replayed[f"{spec.name}_judge_model"] = source.judge_model
    return {
        "benchmark": {"name": definition.name, "definition_version": definition.version},
        "prompts_sha256": {f.category.name: f.sha256 for f in files},
        "categories": [f.category.name for f in files],
        "limit": config.limit,
        "images_per_prompt": config.images_per_prompt,
        "method": {
            "name": config.method,
            "model": config.model,
            "revision": config.revision,
            "steps": config.steps,
            "guidance": config.guidance,
            "dtype": dtype,
            "options": {
                k: (url_without_credentials(v) if k.endswith("url") else v) for k, v in config.method_options.items()
            },
            **replayed,
        },
        "seed_policy": seed_policy(config.seed),
        "judge": judges_mod.identity(config.judge, config.judge_model, definition, protocol),
    }


def _replays_authors(config: RunConfig) -> bool:
    return config.method_options.get("plans") == "authors"


@dataclass
class _Run:
    """What the phases of one run share: what was checked and loaded before any work."""

    config: RunConfig
    definition: Definition
    categories: list[Any]
    judge_kind: Any
    protocol: Any
    judge: Any  # built before generation when the judge calls a service, else after
    state: Any
    device: str
    manager: DeviceManager
    run_dir: Path
    plans: dict[str, Plan | PlusPlan] | None = None
    refused: dict[str, str] = field(default_factory=dict)
    gen_provenance: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    failed_keys: set[tuple[str, str]] = field(default_factory=set)


def run_benchmark(config: RunConfig) -> RunResult:
    """Generate, judge and summarise; resumable, and shared across processes under accelerate."""
    run = _set_up(config)
    files = main_first(run.state, lambda write: _write_config(run, write))
    if config.data is not None and not all(f.verified for f in files):
        info("Prompt files from --data are used as given (not all match a pinned checksum); config.json records theirs")
    result = RunResult(run.run_dir, run.state.process_index, run.state.num_processes, None, None)
    todo = _pending(run, files, result)
    gen_seconds = _draw(run, todo, result)
    judge_seconds = _judge(run, todo, result)
    result.timing = {
        "generate_seconds_per_image": (sum(gen_seconds) / len(gen_seconds)) if gen_seconds else None,
        "judge_seconds_per_image": (sum(judge_seconds) / len(judge_seconds)) if judge_seconds else None,
        "peak_memory_bytes": max((p["peak_memory_bytes"] or 0 for p in run.gen_provenance.values()), default=0)
        or None,
    }
    _log_timing(result)
    run.state.wait_for_everyone()
    if run.state.is_main_process:
        _summarise(run, result)
    return result


def _set_up(config: RunConfig) -> _Run:
    """Every check that can fail before the run folder is touched or any model loads."""
    definition = load_definition(config.definition)
    categories = definition.select(config.categories)
    methods_mod.check(config.method, config.method_options)  # bad method settings fail before any work
    kind = judges_mod.get(config.judge, config.protocol)
    if config.images_per_prompt < 1 or (config.limit is not None and config.limit < 1):
        raise InputError("--images-per-prompt and --limit must be at least 1")
    # A judge that cannot work (no API key, an unverifiable script) fails before the run folder or hours
    # of generation.
    protocol = kind.protocol_for(definition, config.protocol)
    judge = judges_mod.build(config.judge, config.judge_model, definition, None, config.base_url, protocol) if kind.online else None
    state, device = process_state(config.device)
    manager = DeviceManager(device, config.dtype, offload=config.offload)
    return _Run(config, definition, categories, kind, protocol, judge, state, device, manager, Path(config.out))


def _write_config(run: _Run, write: bool) -> list[PromptFile]:
    """The prompts (and replayed plans) read, and config.json checked against them (the main process
    writes it first; the others read what it made)."""
    config, definition = run.config, run.definition
    files = load_prompts(definition, run.categories, config.data)
    if _replays_authors(config):
        spec = methods_mod.spec_of(config.method)
        run.plans, run.refused = load_replayed_plans(
            definition, run.categories, spec.authors_plans or "", plus=methods_mod.reads_plus_plans(spec)
        )
        for prompt, reason in run.refused.items():  # their items fail with the reason, and are counted
            warn(f"the authors' R2F+ plan of {prompt!r} is refused by our checks: {reason}")
    document = {
        "schema": SCHEMA,
        "identity": _identity(config, definition, files, run.manager.dtype, run.protocol),
        "prompts": provenance(definition, files, config.data),
        "judge_base_url": run.judge_kind.endpoint(config.base_url),
        "noise": NOISE_SOURCE,
        "rare_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    check_config(run.run_dir, document, config.force, write=write)
    return files


def _pending(run: _Run, files: list[PromptFile], result: RunResult) -> list[WorkItem]:
    """This process's items that have no result yet; damaged item files are set aside and redone."""
    config, run_dir = run.config, run.run_dir
    items = plan_items(files, config.limit, config.images_per_prompt, config.seed)
    mine = items[run.state.process_index :: run.state.num_processes]
    damaged: list[str] = []

    def pending(item: WorkItem) -> bool:
        path = item.result_path(run_dir)
        if not os.path.lexists(path):
            return True
        record, problem = read_item(path)
        if record is None:  # edited or cut short outside rare: set aside, made again, and said so
            damaged.append(f"{path.relative_to(run_dir)} ({problem})")
            os.replace(path, path.with_name(path.name + ".damaged"))
            return True
        return config.retry_failed and record["status"] != "ok"

    todo = [item for item in mine if pending(item)]
    result.skipped = len(mine) - len(todo)
    if damaged:
        warn(f"{len(damaged)} damaged item file(s) will be made again: " + "; ".join(damaged[:3]))
    if result.skipped:
        info(f"Resuming: {result.skipped} of {len(mine)} items already have a result")
    return todo


def _provenance_base(run: _Run) -> dict[str, Any]:
    return {"process_index": run.state.process_index, "num_processes": run.state.num_processes, "device": run.device}


def _draw(run: _Run, todo: list[WorkItem], result: RunResult) -> list[float]:
    """Phase 1: draw every missing image; a failed item is recorded and the run goes on."""
    config, run_dir, manager = run.config, run.run_dir, run.manager
    to_draw = [item for item in todo if not item.image_path(run_dir, config.method).is_file()]
    seconds: list[float] = []
    if not to_draw:
        return seconds
    drawer = methods_mod.Drawer.prepare(
        config.method,
        config.model,
        config.revision,
        manager,
        config.steps,
        config.guidance,
        config.method_options,
        work_dir=run_dir / "method" / config.method,
        plans=run.plans,
        refused=run.refused,
    )
    with progress(f"generating ({config.method})", total=len(to_draw)) as bar:
        for item in to_draw:
            manager.reset_peak_memory()
            try:
                with manager.timed() as t:
                    made = drawer.draw(item.prompt, item.seed)
                where = {"category": item.category, "prompt_index": item.prompt_index, "image_index": item.image_index}
                with contextlib.suppress(FileExistsError):  # drawn meanwhile by another process
                    drawer.write(made, item.image_path(run_dir, config.method), where)
                seconds.append(t["seconds"])
                run.gen_provenance[(item.category, item.key)] = {
                    "generate_seconds": t["seconds"],
                    "peak_memory_bytes": manager.peak_memory_bytes(),
                }
                result.generated += 1
            except Exception as exc:  # any per-item failure is recorded, the run goes on
                manager.free_memory()
                record = _record(item, config, status="failed", stage="generate", reason=failure_reason(exc))
                record["provenance"] = _provenance_base(run)
                write_result(item.result_path(run_dir), record, replace=config.retry_failed)
                run.failed_keys.add((item.category, item.key))
                result.failed += 1
            bar.advance(status=f"{item.category} {item.key}")
    del drawer
    if run.judge_kind.uses_device:
        MODEL_CACHE.clear()  # frees the diffusion model before the judge loads
    return seconds


def _judge(run: _Run, todo: list[WorkItem], result: RunResult) -> list[float]:
    """Phase 2: judge every image that has no result yet."""
    config, run_dir = run.config, run.run_dir
    to_judge = [item for item in todo if (item.category, item.key) not in run.failed_keys]
    seconds: list[float] = []
    if not to_judge:
        return seconds
    judge = run.judge or judges_mod.build(
        config.judge, config.judge_model, run.definition, run.manager, config.base_url, run.protocol
    )
    with progress(f"judging ({config.judge})", total=len(to_judge)) as bar:
        for item in to_judge:
            image = item.image_path(run_dir, config.method)
            started = time.perf_counter()
            try:
                verdict = judge(image, item.prompt)
                record = _record(item, config, status="ok")
                record["score"] = verdict.score
                record["judge"] = {"name": config.judge, **verdict.raw}
                prov = {"judge_seconds": time.perf_counter() - started, "judge_cached": verdict.cached}
                prov["judge_attempts"] = verdict.attempts
                seconds.append(prov["judge_seconds"])
                result.judged += 1
            except Exception as exc:
                record = _record(item, config, status="failed", stage="judge", reason=failure_reason(exc))
                prov = {"judge_seconds": time.perf_counter() - started}
                result.failed += 1
            record["image"] = str(image.relative_to(run_dir))
            generated = run.gen_provenance.get((item.category, item.key), {})
            record["provenance"] = {**_provenance_base(run), **generated, **prov}
            write_result(item.result_path(run_dir), record, replace=config.retry_failed)
            bar.advance(status=f"{item.category} {item.key}")
    return seconds


def _summarise(run: _Run, result: RunResult) -> None:
    """The main process merges every item into summary.json and prints the table; a run where every item
    failed is an error that names the first failure."""
    result.summary_path, result.summary = write_summary(run.run_dir)
    print_table([result.summary], None, run.definition)
    overall = result.summary["overall"]
    if overall["ok"] == 0 and overall["failed"]:
        first = result.summary["failures"][0]
        error = RareError(
            f"every item failed ({overall['failed']} of {overall['expected'] or overall['failed']}); "
            f"first, at {first['stage']}: {first['reason']}",
            hint="fix the cause, then run again with --retry-failed",
        )
        error.written = [result.summary_path]
        raise error


def _record(item: WorkItem, config: RunConfig, status: str, stage: str | None = None, reason: str | None = None) -> dict:
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "category": item.category,
        "prompt_index": item.prompt_index,
        "image_index": item.image_index,
        "seed": item.seed,
        "prompt": item.prompt,
        "method": config.method,
        "status": status,
    }
    if stage is not None:
        record["stage"] = stage
        record["reason"] = reason
    return record


def _log_timing(result: RunResult) -> None:
    t = result.timing
    parts = [f"process {result.process_index + 1}/{result.num_processes}:"]
    if result.generated:
        parts.append(f"generated {result.generated} image(s), {t['generate_seconds_per_image']:.2f} s/image;")
    if result.judged:
        parts.append(f"judged {result.judged}, {t['judge_seconds_per_image']:.2f} s/image;")
    parts.append(f"{result.failed} failed, {result.skipped} already done")
    if t.get("peak_memory_bytes"):
        parts.append(f"; peak GPU memory {t['peak_memory_bytes'] / 2**30:.2f} GiB")
    info(" ".join(parts))
