"""`rare seedselect` and `rarecli.seedselect` as one library call: run a method on a prompt and its
references, write every image with its seed file and run record (or keep them in memory), and say what
was made and written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecli.io.atomic import check_writable
from rarecli.methods import registry
from rarecli.methods.driver import Driver, to_folder
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.seedselect.config import SeedSelectConfig, clean_prompt
from rarecli.runtime.device import DeviceManager


@dataclass
class SeedSelectResult:
    images: list[Path]
    seeds: list[Path]
    runs: list[Path] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    made: list[Generated] = field(default_factory=list)  # every image, in memory, with its provenance
    written: list[Path] = field(default_factory=list)  # every file written, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [str(p) for p in self.images],
            "seeds": [str(p) for p in self.seeds],
            "runs": [str(p) for p in self.runs],
            "losses": self.losses,
            "interrupted": self.interrupted,
        }


def run(
    config: SeedSelectConfig, manager: DeviceManager, write: bool = True, command: str = "seedselect"
) -> SeedSelectResult:
    """Run `config.method` and write its outputs under `config.out` (`write=False`: keep them in memory).

    All input checks (prompt, options, reference folder) happen before any model is loaded, and no
    file is written unless the run gets to the end of at least one optimisation. `--method sd` is the
    plain-sampling baseline from seeds seed, seed+1, ... at `inner_steps` steps.
    """
    prompt = clean_prompt(config.prompt)
    if write:
        check_writable(config.out)
    method = registry.get(config.method, "rare seedselect")
    context = MethodContext(
        config.model,
        config.revision,
        manager,
        config.inner_steps,
        config.guidance,
        config.options,
        command=command,  # recorded in each image's provenance
        height=config.height,
        width=config.width,
    )
    # SeedSelect records the prompt as given beside the cleaned one itself; plain sampling draws the cleaned one.
    request = Request(
        config.prompt if method.needs_refs else prompt,
        range(config.seed, config.seed + config.num_images),
        refs=config.refs,
    )
    result = SeedSelectResult([], [], [], [])
    for drawn in Driver.prepare(method, context).run(request, to_folder(config.out) if write else None):
        made, written = drawn.made, drawn.written
        result.made.append(made)
        result.interrupted = result.interrupted or made.interrupted
        if written is None:
            continue
        result.written.extend(written.files)
        result.images.append(written.image)
        if written.seed is not None:
            result.seeds.append(written.seed)
        if written.run is not None:
            result.runs.append(written.run)
            loss = made.provenance.extra
            result.losses.append({"image": str(written.image), "initial": loss["initial_loss"], "best": loss["loss"]})
    return result
