"""Which share of a batch job this process does: HF accelerate's PartialState, as `accelerate launch`
sets it up (one process, rank 0, when run plainly)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# The main process waits for the slowest process: long, since a share of a job can take hours.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


def process_state(device: str) -> tuple[Any, str]:
    """accelerate's PartialState, and this process's device (cuda:<local rank> under a multi-GPU launch)."""
    import torch
    from accelerate import PartialState

    spec = device.strip().lower()
    wants_cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    state = PartialState(cpu=not wants_cuda, timeout=BARRIER_TIMEOUT)
    if state.num_processes > 1 and wants_cuda and spec in ("auto", "cuda"):
        return state, f"cuda:{state.local_process_index}"
    return state, device


def main_first(state: Any, prepare: Callable[[bool], T]) -> T:
    """`prepare(True)` on the main process (it writes what the others read: a run's config.json), then
    `prepare(False)` on the others once it is done. An error on the main process is raised on every
    process after the barrier, so none of them hangs waiting."""
    error: BaseException | None = None
    made: Any = None
    if state.is_main_process:
        try:
            made = prepare(True)
        except Exception as exc:  # re-raised below, after the others are released
            error = exc
    state.wait_for_everyone()
    if error is not None:
        raise error
    if not state.is_main_process:
        made = prepare(False)
    return made
