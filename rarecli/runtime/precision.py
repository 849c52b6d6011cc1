"""Mixed-dtype pipelines: components kept in fp32 beside half-precision ones, and the seams between them.

Under `--dtype fp16` some components of some families must stay in fp32 (the SD/SDXL VAE overflows in
fp16; which ones, and why, is the family table's `DtypePolicy`). diffusers' pipelines hand each component
whatever the previous one produced (the denoiser's fp16 latents to an fp32 VAE, an fp32 T5's embeddings
to an fp16 transformer), and a convolution or linear layer refuses an input of another dtype. So rather
than a cast at each call site, every component that runs in a dtype of its own gets one rule at its
entry: floating-point inputs are cast to the component's dtype. Integer inputs (token ids, discrete
timesteps) pass untouched. What crosses a seam is therefore always in the receiving component's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Where a component is entered. A pipeline calls a VAE through `encode` / `decode`, not `forward`, so its
# entry points are the submodules those methods start with (each absent where the config turns it off:
# SD3's and FLUX's VAEs have no quant convolutions).
_ENTRY_POINTS = {
    "AutoencoderKL": ("encoder", "quant_conv", "post_quant_conv", "decoder"),
}

_HOOKED = "_rare_casts_inputs"


def _cast_tensor(value: Any, dtype: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    return value


def _cast(value: Any, dtype: Any) -> Any:
    """`value` with its floating tensors in `dtype`: a tensor, or the tensors of a tuple or a dict (SDXL's
    `added_cond_kwargs`), one level deep. A container is rebuilt only when something in it changes, and
    lists are never touched: a list handed to a component may be where it writes (an attention store)."""
    if isinstance(value, tuple):
        cast = tuple(_cast_tensor(v, dtype) for v in value)
        return value if all(a is b for a, b in zip(cast, value, strict=True)) else cast
    if isinstance(value, dict):
        cast = {k: _cast_tensor(v, dtype) for k, v in value.items()}
        return value if all(cast[k] is v for k, v in value.items()) else cast
    return _cast_tensor(value, dtype)


def module_dtype(module: Any) -> Any:
    """The dtype of a module's first floating-point parameter (None for a module without one)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def entry_points(component: Any) -> list[Any]:
    names = _ENTRY_POINTS.get(type(component).__name__)
    if names is None:
        return [component]
    return [m for m in (getattr(component, n, None) for n in names) if m is not None]


def cast_inputs_to_own_dtype(component: Any) -> None:
    """Install the seam rule on `component` (idempotent): its floating inputs, positional and keyword,
    are cast to its own dtype as they enter. The dtype is read at call time, so a later `.to(dtype)`
    (offload hooks move devices, not dtypes, but a user may) is followed."""

    for module in entry_points(component):
        if getattr(module, _HOOKED, False):
            continue

        def hook(mod: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            dtype = module_dtype(mod)
            if dtype is None:
                return None
            new_args = tuple(_cast(a, dtype) for a in args)
            new_kwargs = {k: _cast(v, dtype) for k, v in kwargs.items()}
            unchanged = all(a is b for a, b in zip(new_args, args, strict=True)) and all(
                new_kwargs[k] is v for k, v in kwargs.items()
            )
            return None if unchanged else (new_args, new_kwargs)

        module.register_forward_pre_hook(hook, with_kwargs=True)
        setattr(module, _HOOKED, True)


def apply_precision(pipe: Any, fp32_components: Iterable[str], half: bool) -> dict[str, str]:
    """Move the named components of a half-precision pipeline to fp32 and put the seam rule on every
    module component (in fp32 runs nothing is moved and the rule is a no-op). Returns each module
    component's dtype, as recorded in what the run writes."""
    import torch

    keep = set(fp32_components) if half else set()
    out: dict[str, str] = {}
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        if name in keep:
            component.to(dtype=torch.float32)
        cast_inputs_to_own_dtype(component)
        dtype = module_dtype(component)
        if dtype is not None:
            out[name] = str(dtype).removeprefix("torch.")
    return out
