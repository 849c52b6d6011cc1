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


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """The Hub client's own retry and warning lines off for a block (rare says what failed, once),
    without importing diffusers or transformers as `quiet_libraries` does."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
