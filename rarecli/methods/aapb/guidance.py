"""AAPB's guidance: the anchor prompt's prediction blended into the target's, with a closed-form weight.

Lee, Cha, Ahn, Oh, Koh, Kim, "Adaptive Auxiliary Prompt Blending for Target-Faithful Diffusion
Generation", CVPR 2026 (arXiv 2603.19158). At every step, with guidance scale w and, at the same latent,
the unconditional prediction U, the target's T (the rare prompt) and the anchor's F (a frequent prompt
that shares its attributes):

    C = (1 - w)(U - T),   D = w(F - T)
    gamma* = clamp(-<C, D> / ||D||^2, 0.01, 0.99)                      (Eq. 13)
    S = (1 - gamma*) T + gamma* F,   eps = U + w (S - U)               (Eq. 8)

and eps = U + w(T - U), plain CFG, where ||D||^2 <= 1e-12 (the anchor predicts what the target does).
A fixed gamma replaces gamma* at every step (the paper's ablation). All in fp32, cast back after.

The sums run over each image's own elements: one gamma* per image. The authors' code sums over the
whole batch (one gamma for all, batch 1 in all their runs); with one image both are the same.

The three predictions come from one call of the denoiser with a batch of 3 (not three calls): the
pipeline's own CFG batch [U, T] is extended with the anchor's conditioning on the way in (a forward
pre-hook on the denoiser), and the output is given back to the pipeline as [U, S] (a forward hook), so
the pipeline's CFG combination U + w(S - U) is exactly Eq. 8 and its scheduler steps as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

GAMMA_MIN, GAMMA_MAX = 0.01, 0.99
DEGENERATE = 1e-12  # ||D||^2 at or below this: the anchor adds nothing, plain CFG


def adaptive_gamma(u: torch.Tensor, t: torch.Tensor, f: torch.Tensor, w: float) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma* per image (Eq. 13) of the predictions (N, ...), and which images are degenerate (N,)."""
    u, t, f = u.float(), t.float(), f.float()
    c = (1.0 - w) * (u - t)
    d = w * (f - t)
    inner = (c * d).flatten(1).sum(1)
    norm = (d * d).flatten(1).sum(1)
    degenerate = norm <= DEGENERATE
    gamma = (-inner / norm.clamp_min(DEGENERATE)).clamp(GAMMA_MIN, GAMMA_MAX)
    return gamma.masked_fill(degenerate, 0.0), degenerate


def blended_target(
    u: torch.Tensor | None, t: torch.Tensor, f: torch.Tensor, w: float, gamma: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """S (N, ...) in fp32, the prediction that takes the target's place, and the gamma used per image.

    `gamma` None: adaptive (needs `u`); a degenerate image keeps S = T exactly."""
    import torch

    t32, f32 = t.float(), f.float()
    if gamma is None:
        g, degenerate = adaptive_gamma(u, t32, f32, w)
    else:
        g = torch.full((t.shape[0],), float(gamma), device=t.device)
        degenerate = torch.zeros_like(g, dtype=torch.bool)
    shape = (-1,) + (1,) * (t.dim() - 1)
    s = (1.0 - g).view(shape) * t32 + g.view(shape) * f32
    s = torch.where(degenerate.view(shape), t32, s)
    return s, g


@dataclass
class AnchorInputs:
    """The anchor prompt's conditioning, one image's worth (positive half only): what the pre-hook
    appends to the denoiser's batch."""

    embeds: torch.Tensor  # (1, L, D)
    pooled: torch.Tensor | None = None  # SD3: pooled_projections; SDXL: added_cond_kwargs' text_embeds


@dataclass
class GammaTrace:
    """gamma per step and image, kept on the device until read (no host sync inside the loop)."""

    steps: list[Any] = field(default_factory=list)

    def per_image(self) -> list[list[float]]:
        """image -> its gamma at each step (rounded to 4 decimals)."""
        if not self.steps:
            return []
        import torch

        table = torch.stack([g.float().cpu() for g in self.steps])  # (steps, N)
        return [[round(float(x), 4) for x in table[:, j]] for j in range(table.shape[1])]


def _latent_arg(args: tuple, kwargs: dict) -> tuple[str | int, torch.Tensor]:
    for key in ("hidden_states", "sample"):
        if key in kwargs:
            return key, kwargs[key]
    return 0, args[0]


def _set(args: tuple, kwargs: dict, where: str | int, value: Any) -> tuple[tuple, dict]:
    if isinstance(where, int):
        args = args[:where] + (value,) + args[where + 1 :]
    else:
        kwargs = {**kwargs, where: value}
    return args, kwargs


def _extend(x: Any, n: int, tail: Any) -> Any:
    """`x` (batch B) with `tail` appended along the batch: the anchor's rows."""
    import torch

    return torch.cat([x, tail.to(x.dtype).expand(n, *x.shape[1:])])


@contextlib.contextmanager
def anchored(denoiser: Any, anchor: AnchorInputs, w: float, cfg: bool, gamma: float | None, trace: GammaTrace) -> Iterator[None]:
    """Within this block every call of `denoiser` also evaluates the anchor in the same batch and hands
    back [U, S] (with CFG) or S (without: fixed gamma only), recording gamma per image in `trace`."""
    import torch

    state: dict[str, int] = {}

    def pre(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        where, x = _latent_arg(args, kwargs)
        b = x.shape[0]
        n = b // 2 if cfg else b
        state["n"] = n
        args, kwargs = _set(args, kwargs, where, torch.cat([x, x[b - n :]]))
        t_where, t = ("timestep", kwargs["timestep"]) if "timestep" in kwargs else (1, args[1])
        if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == b:
            args, kwargs = _set(args, kwargs, t_where, torch.cat([t, t[b - n :]]))
        kwargs = {**kwargs, "encoder_hidden_states": _extend(kwargs["encoder_hidden_states"], n, anchor.embeds)}
        if "pooled_projections" in kwargs:  # SD3
            kwargs["pooled_projections"] = _extend(kwargs["pooled_projections"], n, anchor.pooled)
        added = kwargs.get("added_cond_kwargs")
        if added:  # SDXL: the pooled text embeddings and the size conditioning of the target's rows
            added = dict(added)
            added["text_embeds"] = _extend(added["text_embeds"], n, anchor.pooled)
            added["time_ids"] = torch.cat([added["time_ids"], added["time_ids"][b - n :]])
            kwargs["added_cond_kwargs"] = added
        return args, kwargs

    def post(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        n = state["n"]
        out = output[0] if isinstance(output, tuple) else output.sample
        if cfg:
            u, t, f = out[:n], out[n : 2 * n], out[2 * n :]
        else:
            u, t, f = None, out[:n], out[n:]
        s, g = blended_target(u, t, f, w, gamma)
        trace.steps.append(g.detach())
        blended = s.to(out.dtype) if u is None else torch.cat([u, s.to(out.dtype)])
        if isinstance(output, tuple):
            return (blended, *output[1:])
        output.sample = blended
        return output

    handles = [
        denoiser.register_forward_pre_hook(pre, with_kwargs=True),
        denoiser.register_forward_hook(post, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
