"""The one driver of a method: prepare it once, then for each request generate its images and write each
as soon as it is made. Every command, RareBench, `rare augment`, the Python API and the toy evaluations
run methods through it, so its rules hold everywhere:

- nothing is written unless a writer is given (the Python API keeps images in memory);
- a write that fails raises with every file written before it (`RareError.written`): the CLI prints them,
  as it would have on success, so nothing made is lost from view;
- an image cut short by Ctrl-C (`Generated.interrupted`, SeedSelect's best seed so far) is written and
  then the run stops, or, where an interrupted image must not count as done (a resumable dataset), it is
  not written and the interrupt goes on (`keep_interrupted=False`); a re-run makes it whole;
- resuming is the request's business (`Request.only`: the indices still to make, each the image the
  whole request would give).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rarecli.errors import RareError
from rarecli.log import warn
from rarecli.methods.output import Written, write_generated
from rarecli.methods.protocol import Generated, Method, MethodContext, Prepared, Request

Writer = Callable[[Generated], Written | None]


@dataclass
class Drawn:
    """One image as made, and what was written of it (None when nothing was)."""

    made: Generated
    written: Written | None = None


@dataclass
class Driver:
    method: Method
    prepared: Prepared
    written: list[Path] = field(default_factory=list)  # every file written so far, in order

    @classmethod
    def prepare(cls, method: Method, context: MethodContext) -> Driver:
        """Check the options and load what the method needs, once."""
        return cls(method, method.prepare(context))

    def run(self, request: Request, write: Writer | None = None, keep_interrupted: bool = True) -> Iterator[Drawn]:
        for made in self.prepared.generate(request):
            if made.interrupted and not keep_interrupted:
                warn("interrupted: the images in progress are not kept; run the same command to resume")
                raise KeyboardInterrupt
            written = None
            if write is not None:
                try:
                    written = write(made)
                except RareError as exc:
                    exc.written = self.written + exc.written
                    raise
                if written is not None:
                    self.written.extend(written.files)
            yield Drawn(made, written)
            if made.interrupted:
                return


def to_folder(folder: Path, seeds: bool = True) -> Writer:
    """A writer of numbered files in `folder`: the PNG with its metadata, beside it the initial noise
    (`seeds`: a `.safetensors` seed file), the method's run record and its extra pictures."""

    def write(made: Generated) -> Written:
        return write_generated(
            made.image,
            made.provenance,
            folder=folder,
            seed_tensor=made.seed_tensor if seeds or made.run_record is not None else None,
            run_record=made.run_record,
            extras=made.extras,
        )

    return write

