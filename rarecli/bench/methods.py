"""Generation methods a RareBench run can use: a name -> a factory that builds, once per process,
the function rendering one image for (prompt, seed).

`sd` is plain sampling from the seed's noise (the baseline of every paper here); `r2f` plans each
prompt with an LLM (cached on disk, so a resumed run asks nothing twice) and samples with the R2F
schedule from the same noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import family_of, pipelines_for
from rarecli.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

    from rarecli.runtime.device import DeviceManager


@dataclass
class MethodContext:
    """What a method factory gets: the run's generation settings and the process's device."""

    model: str
    revision: str | None
    manager: DeviceManager
    steps: int | None = None
    guidance: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Where a method may keep what it makes besides the image (seedselect: seeds, loss curves).
    work_dir: Path | None = None


@dataclass
class Generated:
    image: Image.Image
    settings: dict[str, Any]  # resolved hyper-parameters, recorded per item and in the PNG
    model_meta: dict[str, Any]  # ModelRef.to_meta() of what was actually loaded


# (prompt, seed) -> Generated
Generate = Callable[[str, int], Generated]
Factory = Callable[[MethodContext], Generate]

METHODS: dict[str, Factory] = {}
# Checks of a method's options that must fail before the run folder exists or any model loads.
VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {}


def register(
    name: str, factory: Factory, *, validate: Callable[[dict[str, Any]], None] | None = None, replace: bool = False
) -> None:
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = factory
    if validate is not None:
        VALIDATORS[name] = validate


def validate(name: str, options: dict[str, Any]) -> None:
    """Fail early, with a hint, for an unknown method or options it cannot work with."""
    factory(name)
    if name in VALIDATORS:
        VALIDATORS[name](options)


def build(name: str, context: MethodContext) -> Generate:
    return factory(name)(context)


def factory(name: str) -> Factory:
    """The factory of `name`; fails at once (before any work) for an unknown method."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} for RareBench", hint="choose from: " + ", ".join(METHODS))
    return METHODS[name]


def _sd(context: MethodContext) -> Generate:
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.methods.sample import sample
    from rarecli.seeds.noise import noise_from_seed

    loaded = load_pipeline(
        context.model, context.manager, context.revision, families=pipelines_for("sd"), purpose="rare bench --method sd"
    )
    shape = latent_shape(loaded.ref)
    # The pipeline's own default steps when --steps is left out: what the model card means.
    family = family_of(loaded.family)
    steps = context.steps or family.steps
    guidance = family.guidance if context.guidance is None else context.guidance
    settings = {"steps": steps, "guidance": guidance, "family": loaded.family, "latent_shape": list(shape)}

    def generate(prompt: str, seed: int) -> Generated:
        image = sample(loaded, prompt, noise_from_seed(seed, shape), steps=steps, guidance=guidance)
        return Generated(image, settings, loaded.ref.to_meta())

    return generate


def _r2f(context: MethodContext) -> Generate:
    """Rare-to-Frequent (Park et al., ICLR 2025). Planner settings come from `context.options`
    (llm_backend, llm_model, llm_base_url), which the run's config.json records."""
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.llm.planner import PlannerSettings, make_planner
    from rarecli.methods.r2f.sampler import DEFAULT_STEPS as R2F_STEPS
    from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f, sampler_name
    from rarecli.methods.r2f.schedule import build_schedule
    from rarecli.seeds.noise import noise_from_seed

    loaded = load_pipeline(
        context.model,
        context.manager,
        context.revision,
        families=pipelines_for("r2f"),
        purpose="rare bench --method r2f",
    )
    options = context.options
    planner = make_planner(
        PlannerSettings(
            backend=options.get("llm_backend", "openai"),
            llm_model=options.get("llm_model"),
            base_url=options.get("llm_base_url"),
        )
    )
    shape = latent_shape(loaded.ref)
    steps = context.steps or R2F_STEPS
    guidance = family_of(loaded.family).guidance if context.guidance is None else context.guidance
    base = {
        "steps": steps,
        "guidance": guidance,
        "family": loaded.family,
        "latent_shape": list(shape),
        "sampler": sampler_name(loaded),
    }
    prepared: dict[str, tuple[Any, Any, Any]] = {}  # prompt -> (plan, schedule, embeddings), reused across seeds

    def generate(prompt: str, seed: int) -> Generated:
        if prompt not in prepared:
            plan = planner.plan(prompt)
            schedule = build_schedule(plan, loaded.family, steps)
            prepared.clear()  # items come prompt by prompt: keep one prompt's embeddings, not all of them
            prepared[prompt] = (plan, schedule, encode_schedule(loaded, schedule, guidance, None))
        plan, schedule, conds = prepared[prompt]
        image = sample_r2f(loaded, schedule, conds, noise_from_seed(seed, shape), guidance)
        settings = {**base, "plan": plan.to_json(), "schedule": schedule.to_json()}
        return Generated(image, settings, loaded.ref.to_meta())

    return generate


def _check_refs_root(options: dict[str, Any]) -> None:
    refs_root = options.get("refs_root")
    if not refs_root:
        raise InputError(
            "seedselect needs reference images: --refs-root DIR with one folder per prompt",
            hint="name each folder after the prompt's slug, e.g. DIR/a-hairy-frog/ for 'A hairy frog'",
        )
    if not Path(refs_root).is_dir():
        raise InputError(f"--refs-root {refs_root} is not a folder")


def _seedselect(method: str) -> Factory:
    """SeedSelect / NAO-SeedSelect (Samuel et al., AAAI 2024; NeurIPS 2023) on RareBench.

    RareBench has no reference images, so the user supplies them: `refs_root/<prompt slug>/` holds the
    references of each prompt (an item whose folder is missing fails with that reason; the run goes
    on). The optimised seed, its loss curve and the method's own PNG stay under `work_dir`.
    """

    def factory(context: MethodContext) -> Generate:
        from PIL import Image

        from rarecli.io.naming import slugify
        from rarecli.methods.seedselect import SeedSelectConfig, run

        _check_refs_root(context.options)
        refs_root = Path(context.options["refs_root"])
        work = context.work_dir or Path("out/bench-seedselect")

        def generate(prompt: str, seed: int) -> Generated:
            refs = refs_root / slugify(prompt)
            if not refs.is_dir():
                raise InputError(f"no reference folder for this prompt: {refs}")
            config = SeedSelectConfig(
                prompt=prompt,
                refs=refs,
                method=method,
                model=context.model,
                revision=context.revision,
                inner_steps=context.steps or SeedSelectConfig.inner_steps,
                guidance=context.guidance,
                seed=seed,
                out=work / slugify(prompt),
            )
            result = run(config, context.manager)
            with Image.open(result.images[0]) as image:
                image.load()
                made = image.copy()
            settings = {
                "inner_steps": config.inner_steps,
                "guidance": context.guidance,
                "refs": str(refs),
                "seed_file": str(result.seeds[0]),
                "run": str(result.runs[0]) if result.runs else None,
                "loss": result.losses[0] if result.losses else None,
            }
            return Generated(made, settings, {"model": context.model, "model_revision": context.revision})

        return generate

    return factory


register("sd", _sd)
register("r2f", _r2f)
register("seedselect", _seedselect("seedselect"), validate=_check_refs_root)
register("nao-seedselect", _seedselect("nao-seedselect"), validate=_check_refs_root)
