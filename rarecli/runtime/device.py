"""Device manager: picks the device and dtype, places pipelines, draws noise reproducibly.

One seed must give the same noise on every device, so generators always live on the CPU and the
noise is moved afterwards.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rarecli.errors import InputError, RareError
from rarecli.runtime.finite import refuse_non_finite_decodes
from rarecli.runtime.precision import apply_precision

if TYPE_CHECKING:
    import torch

DTYPES = ("fp32", "fp16", "bf16")


def available_system_memory() -> int | None:
    """Bytes the system can still give without swapping (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resolve_device(spec: str) -> str:
    """auto -> cuda > mps > cpu; validates an explicit choice against what this machine has."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise RareError("--device mps: Metal is not available on this machine", hint="use --device cpu")
        return "mps"
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if m:
        if not torch.cuda.is_available():
            raise RareError(
                f"--device {spec}: CUDA is not available (torch {torch.__version__}, built for "
                f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU only'})",
                hint="install a CUDA build of torch, or use --device cpu",
            )
        index = int(m.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise RareError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible",
                hint="check CUDA_VISIBLE_DEVICES",
            )
        return f"cuda:{index}"
    raise InputError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N, mps")


HALF = ("fp16", "bf16")
# For the test suite only: lets `--dtype fp16` run on the CPU, with the mixed-precision rules CUDA gets
# (autocast, loss scaling, the family's fp32 components), so the seams between fp16 and fp32 components
# are exercised where CI runs. Users are refused fp16 on the CPU: it is slower there than fp32.
CPU_HALF_FOR_TESTS = "RARE_TEST_CPU_HALF"


def cpu_half_for_tests() -> bool:
    return os.environ.get(CPU_HALF_FOR_TESTS) == "1"


def cuda_bf16_supported() -> bool:
    """Whether the CUDA GPU has bf16 arithmetic (compute capability 8.0 and newer: A100, RTX 30xx, H100)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_dtype(spec: str, device: str, auto_preference: tuple[str, ...] = ("bf16", "fp16")) -> str:
    """The dtype a run uses. `auto`: on CUDA the first of `auto_preference` (the model family's, from
    its `DtypePolicy`) that the GPU runs, bf16 needing compute capability 8.0; fp32 on the CPU and MPS."""
    spec = spec.strip().lower()
    aliases = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
    spec = aliases.get(spec, spec)
    if spec == "auto":
        if not device.startswith("cuda"):
            return "fp32"
        bf16 = cuda_bf16_supported()
        return next((d for d in auto_preference if d != "bf16" or bf16), "fp32")
    if spec not in DTYPES:
        raise InputError(f"--dtype {spec!r} is not one of auto, fp32, fp16, bf16")
    if spec == "fp16" and device == "cpu" and not cpu_half_for_tests():
        raise InputError("--dtype fp16 is not supported on the CPU", hint="use --dtype fp32 or bf16 on the CPU")
    return spec


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


@dataclass
class DeviceManager:
    """Where and in what precision models run, and how they save memory.

    `dtype` may be `auto` when made: it is resolved here to the usual choice for the device, and again
    for a model family when a pipeline is loaded (`for_family`), since `auto` is a per-family fact."""

    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    attention_slicing: bool = False
    requested_dtype: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        if not self.requested_dtype:
            self.requested_dtype = self.dtype.strip().lower()
        self.dtype = resolve_dtype(self.dtype, self.device)
        if self.offload and not self.is_cuda:
            raise InputError("--offload needs a CUDA device", hint="drop --offload on the CPU and MPS")

    def for_family(self, auto_preference: tuple[str, ...]) -> DeviceManager:
        """This manager with `--dtype auto` resolved by a family's preference (itself when no change)."""
        if self.requested_dtype != "auto":
            return self
        dtype = resolve_dtype("auto", self.device, auto_preference)
        if dtype == self.dtype:
            return self
        return dataclasses.replace(self, dtype=dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def autocast_device(self) -> str:
        return "cuda" if self.is_cuda else self.torch_device.type

    @property
    def mixed_precision(self) -> bool:
        """Half-precision weights on CUDA (or on the CPU under the tests' switch): the UNet runs under
        autocast while latents, the DDIM update and the optimised seed stay fp32 (elsewhere the weights
        run in their own dtype)."""
        return self.dtype in HALF and (self.is_cuda or (self.device == "cpu" and cpu_half_for_tests()))

    @property
    def loss_scaling(self) -> bool:
        """fp16 gradients through many UNet steps can underflow; bf16 and fp32 need no scaling."""
        return self.mixed_precision and self.dtype == "fp16"

    def free_memory(self) -> None:
        """Return what the collector can free, and torch's cached GPU blocks (after a failure or an
        out-of-memory retry, before the next model or batch)."""

        gc.collect()
        if self.is_cuda:
            import torch

            torch.cuda.empty_cache()

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @property
    def key(self) -> tuple[str, str, bool, bool]:
        return (self.device, self.dtype, self.offload, self.attention_slicing)

    def place(self, pipe: Any, fp32_components: tuple[str, ...] = ()) -> dict[str, str]:
        """Move a diffusers pipeline to the device (or set up offload), apply memory savers, and the
        precision rule: under fp16, `fp32_components` (the family's, see `DtypePolicy`) run in fp32,
        and every component casts what it receives to its own dtype. Returns each component's dtype."""
        if self.offload:
            pipe.enable_model_cpu_offload(gpu_id=self.torch_device.index or 0)
        else:
            pipe.to(self.device)
        if self.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        precision = apply_precision(pipe, fp32_components, half=self.dtype == "fp16")
        if getattr(pipe, "vae", None) is not None:
            refuse_non_finite_decodes(pipe.vae)
        return precision

    def generator(self, seed: int) -> torch.Generator:
        import torch

        return torch.Generator("cpu").manual_seed(int(seed))

    def randn(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """Standard normal noise drawn on the CPU from `seed`, then moved to the device (fp32)."""
        import torch

        noise = torch.randn(shape, generator=self.generator(seed), dtype=torch.float32)
        return noise.to(self.device)

    def synchronize(self) -> None:
        import torch

        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)
        elif self.device == "mps":
            torch.mps.synchronize()

    def reset_peak_memory(self) -> None:
        import torch

        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.torch_device)

    def peak_memory_bytes(self) -> int | None:
        """Peak GPU memory allocated by torch since the last reset; None off CUDA."""
        import torch

        if self.is_cuda:
            return int(torch.cuda.max_memory_allocated(self.torch_device))
        return None

    @contextmanager
    def timed(self) -> Iterator[dict[str, float]]:
        """Wall time of a block, synchronised with the device so GPU work is counted."""
        out: dict[str, float] = {}
        self.synchronize()
        start = time.perf_counter()
        try:
            yield out
        finally:
            self.synchronize()
            out["seconds"] = time.perf_counter() - start


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or an allocator's "out of memory" RuntimeError (MPS, older CUDA)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
