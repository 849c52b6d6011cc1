"""rare from Python: draw images with any registered method and get them back, in memory, with how each
was made; nothing is written unless asked (`Images.save`, or `out=`).

    import rarecli

    images = rarecli.generate("a hairy frog", model="tiny-sd", num_images=2, steps=4)
    images[0]                       # a PIL image
    images.provenance[0]["seed"]    # what its PNG's `rare` metadata would say
    images.save("out/")             # the PNGs, with their metadata, as the CLI writes them

    rarecli.seedselect("a handwritten digit seven", "refs/seven", model="toy-digits", iters=5)
    plan = rarecli.r2f.plan("A hairy frog", backend="llama", llm_model="smollm2")
    rarecli.r2f.generate(plan, model="tiny-sd3", steps=4)

A method's options are keyword arguments, checked by its options class (`rare methods` lists them); the
CLI runs the same methods through the same driver (`rarecli.methods.driver`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.backbones.families import pipelines_of
from rarecli.errors import InputError
from rarecli.llm.schema import Plan
from rarecli.methods import registry
from rarecli.methods.driver import Driver, to_folder
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.r2f_plus.schema import PlusPlan
from rarecli.methods.seedselect.config import DEFAULT_INNER_STEPS, SeedSelectConfig
from rarecli.methods.seedselect.run import run as run_seedselect
from rarecli.runtime.device import DeviceManager

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Images", "available_methods", "generate", "seedselect"]

COMMAND = "python"  # what each image's provenance says made it


@dataclass
class Images(Sequence["Image.Image"]):
    """The images a call made, in order, with everything needed to write them as the CLI does."""

    made: list[Generated] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # the files written, when the call was given `out`

    def __getitem__(self, index: Any) -> Any:
        return [m.image for m in self.made][index]

    def __len__(self) -> int:
        return len(self.made)

    def __iter__(self) -> Iterator[Image.Image]:
        return (m.image for m in self.made)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.made]

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """Per image, the `rare` metadata its PNG carries (method, prompt, seed, model, settings, ...)."""
        return [m.provenance.rare_chunk() for m in self.made]

    def save(self, folder: str | Path, seeds: bool = True) -> list[Path]:
        """Write every image into `folder` as the CLI does (numbered PNGs with their metadata; beside each,
        its seed file when `seeds`, and the method's run record); return the paths written."""
        write = to_folder(Path(folder), seeds=seeds)
        out: list[Path] = []
        for made in self.made:
            out.extend(write(made).files)
        return out


def pipelines_for(method: str) -> frozenset[str]:
    """The diffusers pipeline classes the method called `method` runs on (none for an unknown name)."""
    spec = registry.METHODS.get(method)
    return pipelines_of(spec.families) if spec is not None else frozenset()


def available_methods() -> list[str]:
    """The names of the registered methods (`rare methods` describes them)."""
    return list(registry.METHODS)


def generate(
    prompt: str,
    *,
    model: str,
    method: str = registry.PLAIN.name,
    num_images: int = 1,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
    refs: str | Path | None = None,
    plan: Plan | PlusPlan | None = None,
    device: str = "auto",
    dtype: str = "auto",
    out: str | Path | None = None,
    **options: Any,
) -> Images:
    """`num_images` images of `prompt` (seeds `seed`, `seed + 1`, ...) by `method` on `model` (a Hugging
    Face id, a local folder in the diffusers layout, or an embedded name such as `tiny-sd`). `refs`: the
    reference images a method needs (SeedSelect); `plan`: an R2F / R2F+ plan (`rarecli.r2f.plan`).
    `options` are the method's own. With `out`, the images are also written there as the CLI writes them."""
    spec = registry.spec(method, "rarecli.generate")
    checked = spec.parse(options)  # before anything loads
    if spec.needs_refs and refs is None:
        raise InputError(f"{method} needs reference images", hint="pass refs=FOLDER")
    if num_images < 1:
        raise InputError(f"num_images must be at least 1 (got {num_images})")
    manager = DeviceManager(device, dtype)
    context = MethodContext(
        model, None, manager, steps, guidance, checked, command=COMMAND, height=height, width=width
    )
    request = Request(prompt, range(seed, seed + num_images), refs=Path(refs) if refs else None, plan=plan)
    return _run(Driver.prepare(spec.load(), context), [request], out)


def seedselect(
    prompt: str,
    refs: str | Path,
    *,
    model: str,
    method: str = registry.SEEDSELECT.name,
    num_images: int = 1,
    seed: int = 0,
    steps: int = DEFAULT_INNER_STEPS,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    out: str | Path | None = None,
    **options: Any,
) -> Images:
    """SeedSelect (or `method="nao-seedselect"`) images of `prompt` matched to the images in `refs`, as
    `rare seedselect` makes them (the same library call); `steps` are the denoising steps inside each
    iteration, `options` the method's (`iters`, `lr`, `checkpointing`, ...)."""
    if not registry.spec(method).needs_refs:
        raise InputError(f"{method} does not take reference images", hint="use rarecli.generate")
    config = SeedSelectConfig(
        prompt, Path(refs), method=method, model=model, inner_steps=steps, guidance=guidance, height=height,
        width=width, num_images=num_images, seed=seed, out=Path(out) if out is not None else Path("."), **options,
    )  # fmt: skip
    result = run_seedselect(config, DeviceManager(device, dtype), write=out is not None, command=COMMAND)
    return Images(result.made, result.written)


def _run(driver: Driver, requests: Sequence[Request], out: str | Path | None) -> Images:
    write = to_folder(Path(out), seeds=True) if out is not None else None
    result = Images()
    for request in requests:
        for drawn in driver.run(request, write):
            result.made.append(drawn.made)
            if drawn.written is not None:
                result.written.extend(drawn.written.files)
    return result
