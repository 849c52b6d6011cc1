"""Silence third-party progress bars and chatter: rare shows its own progress on stderr."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


def silence_libraries() -> None:
    """Turn off diffusers/transformers/hub progress bars and info logs for this process."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    silence_libraries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        yield
