"""`--checkpointing auto`: whether SeedSelect can afford to keep every denoising step's activations.

Without checkpointing, backward reads the activations autograd saved in each inner step's forward, so
an iteration holds `inner_steps` steps' worth at once (plus one VAE decode and CLIP pass per semantic
step); with it, one step's worth plus the latents, at the price of a second forward per step. The saved
bytes are measured, not guessed: one denoising step and one semantic pass of the actual batch run under
autograd's saved-tensor hooks, which see every tensor backward would keep, on any device (the weights
it keeps references to are left out: they are in memory anyway). The rule:

    off  when  inner_steps * step + semantic_steps * semantic  <=  FREE_SHARE * free memory

free memory being the device's (`torch.cuda.mem_get_info`, plus the blocks torch's allocator holds
cached but unused) or, on the CPU, the system's MemAvailable; the models are loaded before the probe, so
what they hold is already out of it. The probe keeps nothing it measures (see `saved_bytes`).
Half of what is free leaves room for the gradient buffers backward allocates and the allocator's slack.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rarecli.errors import InputError
from rarecli.methods.seedselect.objective import semantic_weights
from rarecli.runtime.device import available_system_memory

if TYPE_CHECKING:
    import torch

    from rarecli.methods.seedselect.objective import Objective

FREE_SHARE = 0.5


@dataclass(frozen=True)
class CheckpointingChoice:
    mode: str  # what was asked: auto, on or off
    enabled: bool  # what runs
    step_bytes: int | None = None  # saved activations of one denoising step of the batch
    semantic_bytes: int | None = None  # of one VAE decode + CLIP pass
    unchecked_bytes: int | None = None  # what an iteration without checkpointing would hold
    free_bytes: int | None = None
    batch: int | None = None
    note: str | None = None  # why auto chose without measuring

    @property
    def reason(self) -> str:
        if self.mode != "auto":
            return f"--checkpointing {self.mode}"
        if self.note:
            return f"auto: {self.note}"
        need, free = self.unchecked_bytes or 0, self.free_bytes or 0
        verdict = "fits" if not self.enabled else "does not fit"
        return (
            f"auto: {need / 2**20:,.0f} MiB of activations without checkpointing {verdict} in "
            f"{FREE_SHARE:.0%} of {free / 2**20:,.0f} MiB free"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def resident_storages(*modules: Any) -> set[int]:
    """Data pointers of the modules' weights and buffers: backward keeps references to them (a linear
    layer needs its weight for the input's gradient), but they are in memory anyway."""
    return {t.untyped_storage().data_ptr() for m in modules for t in (*m.parameters(), *m.buffers())}


def saved_bytes(fn: Any, *args: Any, resident: set[int] = frozenset()) -> int:
    """Bytes of the tensors autograd saves for backward while `fn(*args)` runs (each storage once),
    leaving out the `resident` storages (the weights).

    Nothing is kept: autograd is handed a placeholder in place of each saved tensor (no backward ever
    runs on this graph), so the probe's own peak is that of a forward without gradients, not the
    activations it measures (an unchecked step and a semantic pass held at once were 9 GB at 512² in
    fp32, above the checkpointed run's whole peak). With nothing kept, the allocator reuses addresses,
    so a storage is told from an earlier one at the same address by whether the earlier one is gone."""
    import torch

    seen: dict[tuple[Any, int], Any] = {}  # (device, address) -> a weak reference to a tensor on it
    total = 0

    def pack(t: torch.Tensor) -> None:
        nonlocal total
        if t.device.type == "meta":
            return None
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr in resident:
            return None
        key = (t.device, ptr)
        earlier = seen.get(key)
        if earlier is None or earlier() is None:  # a new storage (or the address of a freed one)
            total += s.nbytes()
        # A view keeps its base alive, and the base its storage: the base outlives every view of it.
        seen[key] = weakref.ref(t if t._base is None else t._base)
        return None

    def unpack(_: None) -> torch.Tensor:  # pragma: no cover - the probe's graph is never run backward
        raise RuntimeError("the activation probe's graph has no saved tensors to run backward with")

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        fn(*args)
    return total


def free_memory_bytes(device: torch.device) -> int | None:
    """What the device has free now: the CUDA driver's figure, or the system's MemAvailable."""
    import torch

    if device.type == "cuda":
        # The driver's free memory, plus what torch's allocator holds cached but unused (blocks freed by
        # earlier work, the probe's among them): both are ours to use, and the models are already resident.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + int(cached)
    return available_system_memory()


def decide(need: int, free: int | None) -> bool:
    """Checkpointing on (True) unless the unchecked iteration fits comfortably in what is free; with no
    figure for free memory, on (the safe choice: slower, never out of memory because of us)."""
    return free is None or need > FREE_SHARE * free


def choose(mode: str, objective: Objective, seeds: torch.Tensor) -> CheckpointingChoice:
    """Resolve `mode` for this batch; `auto` measures one step of it (a forward pass, no backward)."""
    offload = objective.loaded.manager.offload
    if offload and mode == "off":
        raise InputError(
            "--checkpointing off cannot run with --offload: offloading moves the UNet off the GPU while the VAE "
            "runs, so the activations kept for backward would point at weights that are gone",
            hint="use --checkpointing on (or auto), or drop --offload",
        )
    if mode != "auto":
        return CheckpointingChoice(mode, mode == "on")
    if offload:
        return CheckpointingChoice("auto", True, note="on under --offload: each step is recomputed where its weights are")
    import torch

    modules = [c for c in objective.loaded.pipe.components.values() if isinstance(c, torch.nn.Module)]
    resident = resident_storages(*modules, objective.clip.model)
    x = seeds.detach().clone().requires_grad_(True)
    step_bytes = saved_bytes(objective.step, x, 0, resident=resident)
    semantic_bytes = saved_bytes(objective.semantic, x, objective.clip_targets, resident=resident)
    n = len(objective.schedule)
    need = n * step_bytes + len(semantic_weights(n)) * semantic_bytes
    free = free_memory_bytes(torch.device(objective.loaded.manager.device))
    return CheckpointingChoice(
        "auto", decide(need, free), step_bytes, semantic_bytes, need, free, batch=int(seeds.shape[0])
    )
