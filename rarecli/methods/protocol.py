"""One protocol for every generation method: prepare once, then generate per request.

The CLI, RareBench and the toy evaluation all drive a method the same way:

    method = registry.get(name)
    options = method.check(options)               # the method's options class: bad ones fail before anything loads
    prepared = method.prepare(MethodContext(model, revision, manager, steps, guidance, options))
    for made in prepared.generate(Request(prompt, seeds, refs=...)):
        write_generated(made.image, made.provenance, folder=out, ...)   # or keep it in memory

A request is one prompt and the integer seeds to draw it from (image i of a request uses seeds[i]);
a method yields one `Generated` per seed (or per index in `only`), in order, as soon as each is done. Methods that need more
than a prompt read it from the request: reference images (`refs`, SeedSelect), an R2F plan (`plan`;
without one, R2F asks its planner).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rarecli.backbones.loading import LoadedPipeline, load_pipeline
from rarecli.llm.schema import Plan
from rarecli.methods.options import MethodOptions
from rarecli.methods.output import Provenance
from rarecli.methods.spec import MethodSpec
from rarecli.runtime.device import DeviceManager

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class MethodContext:
    """What a method is prepared with: the model, the device, shared sampling settings (None: the
    method's or the model family's default) and the method's own options."""

    model: str
    revision: str | None
    manager: DeviceManager
    steps: int | None = None
    guidance: float | None = None
    # The method's options: its options class's instance (`Method.check`), or by name (checked in prepare).
    options: Mapping[str, Any] | MethodOptions = field(default_factory=dict)
    command: str = "library"  # recorded in the provenance of what it makes
    # Image size in pixels (None: the model's native size); the seed shape follows it.
    height: int | None = None
    width: int | None = None
    # SD3's optional T5 encoder: False loads the pipeline without it, True requires it, None as saved.
    t5: bool | None = None

    def load_pipeline(self, method: Method, purpose: str | None = None) -> LoadedPipeline:
        """The pipeline this context names, refused (before any weights load) unless it is of a family
        `method` runs on; `purpose` says who asked, in that refusal."""
        return load_pipeline(
            self.model,
            self.manager,
            self.revision,
            families=method.spec.families,
            purpose=purpose or f"{self.command} --method {method.name}",
            t5=self.t5,
        )


@dataclass
class Request:
    prompt: str
    seeds: Sequence[int]
    refs: Path | None = None
    plan: Plan | None = None
    # Iterative methods: also return the image each seed would give after these iterations (0: the start).
    snapshots: Collection[int] = ()
    # Make only the images at these indices, each the one the whole request would give (a batch job
    # resuming: SeedSelect's reference resamples and NAO's start points depend on an image's index).
    only: Collection[int] | None = None

    def wanted(self) -> list[int]:
        """The indices to make, in order; ValueError for an index outside the request."""
        if self.only is None:
            return list(range(len(self.seeds)))
        out = sorted(set(self.only))
        if out and (out[0] < 0 or out[-1] >= len(self.seeds)):
            raise ValueError(f"only={out} is outside a request of {len(self.seeds)} seeds")
        return out


@dataclass
class Generated:
    """One image and everything needed to write it: its provenance, the initial noise it was drawn
    from (written as a seed file), and the method's own account of the run (a `.run.json`)."""

    index: int
    seed: int
    image: Image.Image
    provenance: Provenance
    seed_tensor: torch.Tensor | None = None
    run_record: dict[str, Any] | None = None
    checkpoints: dict[int, Image.Image] = field(default_factory=dict)
    interrupted: bool = False
    # Pictures that belong with the image (R2F+: each object's own image and mask, the boxes drawn),
    # written beside it as `<stem>.<name>.png` with the same metadata.
    extras: dict[str, Image.Image] = field(default_factory=dict)


class Prepared(Protocol):
    def generate(self, request: Request) -> Iterator[Generated]: ...


class Method(Protocol):
    """An implementation; its description (`MethodSpec`: options class, families, ...) is `spec`."""

    spec: MethodSpec

    @property
    def name(self) -> str: ...

    @property
    def needs_refs(self) -> bool: ...  # a request must carry reference images (`Request.refs`)

    def check(self, options: Mapping[str, Any] | MethodOptions | None) -> MethodOptions:
        """The options, checked: InputError for ones this method cannot work with (before any model loads)."""

    def prepare(self, context: MethodContext) -> Prepared: ...
