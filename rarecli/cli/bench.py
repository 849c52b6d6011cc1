"""`rare bench`: run RareBench end to end (generate, judge, report) and compare runs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from rarecli.cli._method_flags import method_defaults
from rarecli.cli._options import (
    MAX_GUIDANCE,
    T5,
    Device,
    Dtype,
    Json,
    Masks,
    Model,
    Offload,
    Quiet,
    Revision,
    Seed,
    bounded,
)
from rarecli.cli._output import Output
from rarecli.cli._run import command, group
from rarecli.errors import InputError
from rarecli.methods import registry

_GEN = "Generation"
_JUDGE = "Judge"


class ProtocolChoice(StrEnum):
    rare = "rare"
    paper = "paper"


class PlansChoice(StrEnum):
    llm = "llm"
    authors = "authors"


class ScheduleChoice(StrEnum):
    rare = "rare"
    authors = "authors"


# The flags `rare bench` keeps for options of one method or another (each is also `--set NAME=VALUE`).
_OPTION_FLAGS = ("gamma", "schedule", "masks", "detector", "segmenter")


def _method_options(
    method: str,
    plans: PlansChoice,
    llm: dict[str, Any],
    refs_root: Path | None,
    t5: bool | None,
    flags: dict[str, Any],
    settings: list[str],
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the run's config records as the method's settings (part of its identity): where its plans
    or references come from, and its options that were set (by a flag or `--set NAME=VALUE`), checked
    and typed by the method's options class."""
    spec = registry.spec(method, "RareBench")
    names = spec.options.names()
    given: dict[str, Any] = dict(defaults or {})  # the config file's `methods:` section
    for name, value in flags.items():
        if value is None:
            continue
        if name not in names:
            owners = [s.name for s in registry.METHODS.values() if name in s.options.names()]
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} is not an option of {method}", hint=f"use it with --method {' or '.join(owners)}")
        given[name] = value.value if isinstance(value, StrEnum) else value
    given.update(_settings(settings))
    checked = spec.parse(given, text=True)  # unknown names, types and bounds: refused here, once
    given = {name: getattr(checked, name) for name in given}
    if plans is PlansChoice.authors and spec.authors_plans is None:
        raise InputError(f"--plans authors replays published plans; {method} has none", hint="use --plans llm")
    recorded: dict[str, Any] = {}
    if spec.needs_refs:
        recorded["refs_root"] = str(refs_root.resolve()) if refs_root else None
    if spec.plan_kind is not None:
        recorded.update({"plans": "authors"} if plans is PlansChoice.authors else llm)
        # The authors' plans are replayed with their step rule unless one is chosen. Only a non-default rule
        # is recorded, so runs made before there was a choice keep their identity.
        if "schedule" in names and plans is PlansChoice.authors and "schedule" not in given:
            given["schedule"] = "authors"
        if given.get("schedule") == "rare":
            del given["schedule"]
    if "masks" in names:
        given.setdefault("masks", "boxes")
    return {**recorded, **given, **({"t5": t5} if t5 is not None else {})}


def _settings(settings: list[str]) -> dict[str, str]:
    out = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set takes NAME=VALUE (got {setting!r})", hint="e.g. --set iters=10")
        out[name.strip().replace("-", "_")] = value.strip()
    return out


def rarebench(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", file_okay=False, help="Run folder: one result file per work item; re-running resumes."
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="A registered method; `rare methods` lists them with their options and model families: "
            + ", ".join(registry.METHODS) + ".",
            rich_help_panel=_GEN,
        ),
    ] = registry.PLAIN.name,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="NAME=VALUE",
            help="A method option (repeatable), e.g. --set iters=10 for seedselect; checked by the method and "
            "recorded in the run's identity. `rare methods` lists each method's options.",
            rich_help_panel=_GEN,
        ),
    ] = None,
    model: Model = "stabilityai/stable-diffusion-3-medium-diffusers",
    revision: Revision = None,
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            "-c",
            help="Categories to run (repeat, or comma-separated): S-property S-shape S-texture S-action "
            "S-complex M-and M-relation M-complex; default all eight.",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N prompts of each category.")] = None,
    images_per_prompt: Annotated[
        int, typer.Option("--images-per-prompt", "-k", min=1, help="Images per prompt (seeds: --seed + k).")
    ] = 1,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Denoising steps [default: the pipeline's own].", rich_help_panel=_GEN),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance", callback=bounded(0.0, MAX_GUIDANCE), help="Classifier-free guidance [default: per model].", rich_help_panel=_GEN
        ),
    ] = None,
    llm_backend: Annotated[
        str,
        typer.Option("--llm-backend", help="r2f planner: openai or llama.", rich_help_panel=_GEN),
    ] = "openai",
    llm_model: Annotated[
        str | None,
        typer.Option(
            "--llm-model",
            help="r2f planner model: openai name [gpt-4o], or for llama a GGUF path, REPO/FILE.gguf or smollm2.",
            rich_help_panel=_GEN,
        ),
    ] = None,
    llm_base_url: Annotated[
        str | None,
        typer.Option("--llm-base-url", help="r2f planner: OpenAI-compatible server URL.", rich_help_panel=_GEN),
    ] = None,
    plans: Annotated[
        PlansChoice,
        typer.Option(
            "--plans",
            help="r2f, r2f-plus, aapb: llm plans each prompt with --llm-backend (cached on disk); authors replays "
            "the authors' frozen GPT-4 plans (R2F+: their GPT-4o plans of M-and, M-relation, M-complex; AAPB: "
            "AAPB's own, from its repository), fetched at the pinned commit and verified (the papers' rows). A "
            "plan our checks refuse fails its items.",
            rich_help_panel=_GEN,
        ),
    ] = PlansChoice.llm,
    gamma: Annotated[
        float | None,
        typer.Option(
            "--gamma",
            min=0.0,
            max=1.0,
            help="aapb: a fixed anchor weight at every step (the paper's ablation) instead of adaptive gamma*.",
            rich_help_panel=_GEN,
        ),
    ] = None,
    schedule: Annotated[
        ScheduleChoice | None,
        typer.Option(
            "--schedule",
            help="r2f step rule: rare (ours: sorted, scaled to --steps) or authors (theirs, quirks included). "
            "Default: authors with --plans authors, else rare.",
            rich_help_panel=_GEN,
        ),
    ] = None,
    masks: Annotated[
        Masks | None,
        typer.Option(
            "--masks",
            help="r2f-plus: boxes [default] (each object's box is its mask; offline) or detector (--detector + "
            "--segmenter, as the authors: GroundingDINO-tiny + SAM ViT-B by default).",
            rich_help_panel=_GEN,
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option("--detector", help="r2f-plus --masks detector: detector id or folder.", rich_help_panel=_GEN),
    ] = None,
    segmenter: Annotated[
        str | None,
        typer.Option("--segmenter", help="r2f-plus --masks detector: segmenter id or folder.", rich_help_panel=_GEN),
    ] = None,
    refs_root: Annotated[
        Path | None,
        typer.Option(
            "--refs-root",
            file_okay=False,
            help="seedselect / nao-seedselect: folder with one subfolder of reference images per prompt, "
            "named after the prompt's slug (e.g. a-hairy-frog/).",
            rich_help_panel=_GEN,
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="gpt-4o (the paper's protocol; OPENAI_API_KEY) or clipscore (offline); `rare bench judges` "
            "lists every registered judge.",
            rich_help_panel=_JUDGE,
        ),
    ] = "gpt-4o",
    protocol: Annotated[
        ProtocolChoice,
        typer.Option(
            "--protocol",
            help="rare (default): our rubric, temperature 0 and a validated JSON score, so reruns agree; its "
            "scale is not the paper's. paper: the authors' judge exactly as they ran it (their script at the "
            "pinned commit, fetched and verified; temperature 1, a free-text score 0-5): compare with --anchors.",
            rich_help_panel=_JUDGE,
        ),
    ] = ProtocolChoice.rare,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            help="gpt-4o: the pinned model string [default: gpt-4o-2024-05-13]; clipscore: ARCH/TAG, a "
            "Hugging Face CLIP id, a folder or tiny-clip [default: ViT-H-14/laion2b_s32b_b79k].",
            rich_help_panel=_JUDGE,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="OPENAI_BASE_URL",
            help="OpenAI-compatible endpoint for the gpt-4o judge.",
            rich_help_panel=_JUDGE,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            file_okay=False,
            help="Folder with the prompt files (offline); default: download once and verify checksums.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run folder made with other settings: move its results aside, start again.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed items again.")] = False,
    seed: Seed = 0,
    device: Device = "auto",
    dtype: Dtype = "auto",
    offload: Offload = False,
    t5: T5 = None,
    json_out: Json = False,
    quiet: Quiet = False,
) -> Output | None:
    """Generate, judge and report RareBench (Park et al., ICLR 2025); resumable.

    Under `accelerate launch` the work items are split across processes (GPUs, machines sharing the
    run folder). Prints the path of summary.json (or, with --json, the summary).
    """
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.bench.run import RunConfig, run_benchmark

    result = run_benchmark(
        RunConfig(
            out=out,
            method=method,
            model=model,
            revision=revision,
            categories=categories,
            limit=limit,
            images_per_prompt=images_per_prompt,
            judge=judge,
            judge_model=judge_model,
            base_url=base_url,
            steps=steps,
            guidance=guidance,
            seed=seed,
            data=data,
            force=force,
            retry_failed=retry_failed,
            device=device,
            dtype=dtype,
            offload=offload,
            protocol=protocol.value,
            method_options=_method_options(
                method,
                plans,
                {"llm_backend": llm_backend, "llm_model": llm_model, "llm_base_url": llm_base_url},
                refs_root,
                t5,
                {"gamma": gamma, "schedule": schedule, "masks": masks, "detector": detector, "segmenter": segmenter},
                settings or [],
                method_defaults(ctx, method),
            ),
        )
    )
    if result.summary_path is None:  # not the main process: it prints nothing
        return None
    return Output(result.summary, [result.summary_path])


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to report and compare.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", dir_okay=False, help="Write a comparison bar chart to this new PNG.")
    ] = None,
    anchors: Annotated[bool, typer.Option("--anchors", help="Show the paper's published numbers beside.")] = False,
    json_out: Json = False,
) -> Output:
    """Merge each run's item results into its summary.json; compare runs per category and overall.

    Prints the summary paths (and the plot path), or with --json one document with every summary.
    """
    from rarecli.bench.report import report_runs

    result = report_runs(runs, plot_path=plot, with_anchors=anchors)
    document = {
        "runs": result.summaries,
        "anchors": result.anchors,
        "later_anchors": result.later_anchors,
        "anchor_warnings": result.anchor_warnings,
        "plot": str(result.plot) if result.plot else None,
    }
    return Output(document, [*result.summary_paths, *([result.plot] if result.plot else [])])


def judges(json_out: Json = False) -> Output:
    """List the registered judges: name, the protocols each judges under, and what it needs.

    Prints one line per judge (NAME: summary), or with --json every judge.
    """
    from rarecli.bench.judges import JUDGES

    document = [
        {"name": k.name, "summary": k.summary, "protocols": list(k.protocols), "online": k.online}
        for k in JUDGES.values()
    ]
    return Output(document, [f"{k.name}: {k.summary} (protocols: {', '.join(k.protocols)})" for k in JUDGES.values()])


def register(app: typer.Typer) -> None:
    bench = group("bench", "Benchmarks: RareBench (R2F, ICLR 2025).")
    command(
        bench,
        "rarebench",
        example="rare bench rarebench --out runs/sd3 --model stabilityai/stable-diffusion-3-medium-diffusers\n"
        "rare bench rarebench --out runs/tiny --model tiny-sd --judge clipscore --judge-model tiny-clip --data DIR",
    )(rarebench)
    command(bench, "report", example="rare bench report runs/sd3 runs/r2f --anchors --plot compare.png")(report)
    command(bench, "judges", example="rare bench judges --json", no_args_is_help=False)(judges)
    app.add_typer(bench, name="bench")
