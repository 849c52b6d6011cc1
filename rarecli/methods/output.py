"""The one writer of a generated image and the record of how it was made.

Every command, RareBench and the toy world's side-by-side write their images here, so every PNG carries
the same two text chunks (docs/architecture.md):
- `parameters`: A1111-style text (prompt, negative prompt, then `Steps: .., Sampler: .., CFG scale: ..,
  Seed: .., Model: ..`), which other tools already display;
- `rare`: JSON with the command, method, prompt, seed, model id and revision, hyper-parameters and
  whatever the method adds (plan, schedule, references, loss), plus rare's version.
Beside the PNG, with the same stem, go the image's seed (`.safetensors`, the same record as metadata)
and the method's run record (`.run.json`) when there are any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarecli.errors import RareError
from rarecli.io.atomic import write_replace, write_text_new, write_text_replace
from rarecli.io.images import a1111_parameters, png_bytes, save_numbered_png, save_png
from rarecli.seeds.files import save_seed, seed_bytes

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class Provenance:
    """How an image was made. `settings` are the A1111 `Key: value` pairs; the rest goes to `rare`."""

    command: str
    method: str | None = None
    prompt: str | None = None
    seed: int | str | None = None  # what the output name and the `Seed:` field show
    model: dict[str, Any] = field(default_factory=dict)  # ModelRef.to_meta() of what was loaded
    hyper: dict[str, Any] | None = None  # the resolved hyper-parameters
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific: plan, schedule, refs, loss, ...
    settings: dict[str, Any] = field(default_factory=dict)
    negative_prompt: str | None = None

    def rare_chunk(self) -> dict[str, Any]:
        head = {"command": self.command, "method": self.method, "prompt": self.prompt, "seed": self.seed}
        out = {k: v for k, v in head.items() if v is not None}
        out.update(self.model)
        if self.hyper is not None:
            out["hyper"] = self.hyper
        out.update(self.extra)
        return out

    def parameters(self) -> str:
        if self.prompt is None and not self.settings:
            return ""
        return a1111_parameters(self.prompt or "", self.settings, self.negative_prompt)


def settings_text(sampler: str, steps: int, guidance: float | None, seed: int | str, model: str, **more: Any):
    """The usual A1111 fields, in A1111's order, then `more` (e.g. `Method`)."""
    return {"Steps": steps, "Sampler": sampler, "CFG scale": guidance, "Seed": seed, "Model": model, **more}


@dataclass
class Written:
    image: Path
    seed: Path | None = None
    run: Path | None = None
    extras: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.image, self.seed, self.run) if p is not None] + self.extras


def write_generated(
    image: Image.Image,
    provenance: Provenance,
    *,
    folder: Path | None = None,
    path: Path | None = None,
    name_method: str | None = None,
    seed_tensor: torch.Tensor | None = None,
    run_record: dict[str, Any] | None = None,
    extras: dict[str, Image.Image] | None = None,
) -> Written:
    """Write `image` with its metadata: under the next free `{index:05d}_{seed}_{method}_{slug}.png` in
    `folder` (the method part is `name_method` when given), or at exactly `path` (FileExistsError if
    taken). Then the seed file, the run record and the `extras` (`<stem>.<name>.png`, the same metadata
    plus `part: name`) beside it, if given. No image is ever overwritten.

    At an exact `path` (a batch job's item) the seed file and run record are written first and the image
    last, so the image marks a whole item: a job killed in between leaves no image, and its re-run
    replaces the side files it left."""
    if (folder is None) == (path is None):
        raise ValueError("give exactly one of folder= and path=")
    chunk = provenance.rare_chunk()
    if path is not None:
        return _write_item(Path(path), image, provenance, chunk, seed_tensor, run_record, extras or {})
    png = save_numbered_png(
        Path(folder),
        image,
        seed=provenance.seed if provenance.seed is not None else 0,
        method=name_method or provenance.method or provenance.command,
        prompt=provenance.prompt or provenance.command,
        parameters=provenance.parameters(),
        rare=chunk,
    )
    written = Written(png)
    try:
        if seed_tensor is not None:
            written.seed = save_seed(png.with_suffix(".safetensors"), seed_tensor, chunk)
        if run_record is not None:
            written.run = write_text_new(_run_path(png), _run_text(chunk, png, written.seed, run_record))
        for name, extra in (extras or {}).items():
            written.extras.append(
                save_png(_extra_path(png, name), extra, provenance.parameters(), {**chunk, "part": name})
            )
    except RareError as exc:
        exc.written = written.files + exc.written  # the image is kept: it was written whole
        raise
    return written


def _write_item(
    png: Path,
    image: Image.Image,
    provenance: Provenance,
    chunk: dict[str, Any],
    seed_tensor: torch.Tensor | None,
    run_record: dict[str, Any] | None,
    extras: dict[str, Image.Image],
) -> Written:
    if png.exists():
        raise FileExistsError(png)
    seed = run = None
    written_extras = []
    for name, extra in extras.items():  # replaced, like the side files: a killed run may have left them
        data = png_bytes(extra, provenance.parameters(), {**chunk, "part": name})
        written_extras.append(write_replace(_extra_path(png, name), lambda fh, data=data: fh.write(data)))
    if seed_tensor is not None:
        data = seed_bytes(seed_tensor, chunk)
        seed = write_replace(png.with_suffix(".safetensors"), lambda fh: fh.write(data))
    if run_record is not None:
        run = write_text_replace(_run_path(png), _run_text(chunk, png, seed, run_record))
    return Written(save_png(png, image, provenance.parameters(), chunk), seed, run, written_extras)


def _extra_path(png: Path, name: str) -> Path:
    return png.with_name(f"{png.stem}.{name}.png")


def _run_path(png: Path) -> Path:
    return png.with_name(png.stem + ".run.json")


def _run_text(chunk: dict[str, Any], png: Path, seed: Path | None, run_record: dict[str, Any]) -> str:
    doc = {**chunk, "image": png.name, **({"seed_file": seed.name} if seed else {}), **run_record}
    return json.dumps(doc, indent=2, default=str) + "\n"
