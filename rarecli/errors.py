"""Errors the CLI turns into one `Error: ...` line plus a hint (exit 1).

Library code raises these; it never prints or exits. Anything else that escapes is a bug and
shows a traceback only under RARE_DEBUG=1.
"""

from __future__ import annotations

import errno


class RareError(Exception):
    """A handled failure: a message a user can act on, and optionally a hint. `written` lists the files
    that were written before it happened (the CLI prints them, as it would have on success)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.written: list = []

    def __str__(self) -> str:
        return self.message


class InputError(RareError):
    """Bad user input found after parsing (a file, a folder, a value)."""


class OutputError(RareError):
    """A file could not be written: which one, and why."""


def explain(exc: BaseException) -> RareError | None:
    """Map known third-party failures to a RareError with a hint; None when unknown.

    Matching is by class name and module so that this module never imports torch or the hub.
    """
    name = type(exc).__name__
    text = str(exc)
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return RareError(
            "the GPU ran out of memory",
            hint="try --dtype fp16, --offload, --attention-slicing, fewer --num-images or --inner-steps",
        )
    if name == "GatedRepoError" or ("gated" in text.lower() and "huggingface" in text.lower()):
        return RareError(
            "this model is gated on the Hugging Face Hub",
            hint="accept its licence on the model page, then `hf auth login` or set HF_TOKEN",
        )
    if name in {"RepositoryNotFoundError", "RevisionNotFoundError"}:
        return RareError(
            f"model not found on the Hub: {text.splitlines()[0]}",
            hint="check the id, or pass a local folder in the diffusers layout",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        where = exc.filename or "a path"
        shown = str(where) if len(str(where)) <= 120 else str(where)[:60] + "..." + str(where)[-40:]
        return RareError(
            f"a name in {shown} is longer than the file system allows (255 bytes per name)",
            hint="use shorter folder and file names",
        )
    if name in {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
        return RareError(
            "the model is not in the local Hugging Face cache and the Hub cannot be reached",
            hint="download it once while online, pass a local folder, or use an embedded model (`rare models`)",
        )
    return None


def failure_reason(exc: BaseException) -> str:
    """One line saying why a work item failed, for the record a batch job keeps of it."""
    known = explain(exc)
    first = (str(exc).splitlines() or [""])[0]
    if known is not None:
        return f"{known.message} ({type(exc).__name__}: {first})"
    if isinstance(exc, RareError):
        return exc.message
    return f"{type(exc).__name__}: {first}"
