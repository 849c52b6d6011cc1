"""Generation methods a RareBench run can use: a name -> a factory that builds, once per process,
the function rendering one image for (prompt, seed).

`sd` is plain sampling from the seed's noise (the baseline of every paper here). The lead wires
`r2f` (issue 7) and `seedselect` (issue 5) by calling `register(name, factory, replace=True)` from
those modules; until then they fail before any work starts, with a hint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rarecli.errors import InputError, NotImplementedYet

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


@dataclass
class Generated:
    image: Image.Image
    settings: dict[str, Any]  # resolved hyper-parameters, recorded per item and in the PNG
    model_meta: dict[str, Any]  # ModelRef.to_meta() of what was actually loaded


# (prompt, seed) -> Generated
Generate = Callable[[str, int], Generated]
Factory = Callable[[MethodContext], Generate]

METHODS: dict[str, Factory] = {}


def register(name: str, factory: Factory, *, replace: bool = False) -> None:
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = factory


def build(name: str, context: MethodContext) -> Generate:
    return factory(name)(context)


def factory(name: str) -> Factory:
    """The factory of `name`; fails at once (before any work) for unknown or not-yet-wired methods."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} for RareBench", hint="choose from: " + ", ".join(METHODS))
    pending = getattr(METHODS[name], "not_yet", None)
    if pending is not None:
        raise NotImplementedYet(*pending)
    return METHODS[name]


# The pipelines' own defaults (diffusers), so `--steps` left out means what the model card means.
DEFAULT_STEPS = {"StableDiffusionPipeline": 50, "StableDiffusionXLPipeline": 50, "StableDiffusion3Pipeline": 28}
SD_FAMILIES = frozenset(DEFAULT_STEPS)


def _sd(context: MethodContext) -> Generate:
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.methods.sample import DEFAULT_GUIDANCE, sample
    from rarecli.seeds.noise import noise_from_seed

    loaded = load_pipeline(
        context.model, context.manager, context.revision, families=SD_FAMILIES, purpose="rare bench --method sd"
    )
    shape = latent_shape(loaded.ref)
    steps = context.steps or DEFAULT_STEPS[loaded.family]
    guidance = DEFAULT_GUIDANCE[loaded.family] if context.guidance is None else context.guidance
    settings = {"steps": steps, "guidance": guidance, "family": loaded.family, "latent_shape": list(shape)}

    def generate(prompt: str, seed: int) -> Generated:
        image = sample(loaded, prompt, noise_from_seed(seed, shape), steps=steps, guidance=guidance)
        return Generated(image, settings, loaded.ref.to_meta())

    return generate


def _not_yet(method: str, issue: str) -> Factory:
    command = f"bench rarebench --method {method}"

    def unavailable(context: MethodContext) -> Generate:
        raise NotImplementedYet(command, issue)

    unavailable.not_yet = (command, issue)  # type: ignore[attr-defined]
    return unavailable


register("sd", _sd)
register("r2f", _not_yet("r2f", "issue 7"))
register("seedselect", _not_yet("seedselect", "issue 5"))
