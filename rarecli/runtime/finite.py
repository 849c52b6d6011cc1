"""A decoded image must be finite: NaN or inf pixels are written as black (PIL rounds them to 0), so a
run that overflowed (a huge guidance scale, an fp16 VAE that overflows) would otherwise exit 0 with a
black PNG. The check sits on the VAE's decoder, where every image of every method passes."""

from __future__ import annotations

from typing import Any

from rarecli.errors import RareError

_HOOKED = "_rare_checks_finite"


class NonFiniteImage(RareError):
    pass


def refuse_non_finite_decodes(vae: Any) -> None:
    """Raise NonFiniteImage when the VAE decodes non-finite pixels outside of autograd (sampling and
    rendering; an optimisation reads its own loss instead). One device-to-host read per decode."""
    decoder = getattr(vae, "decoder", None)
    if decoder is None or getattr(decoder, _HOOKED, False):
        return

    def check(module: Any, args: Any, output: Any) -> None:
        import torch

        if torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return
        if not bool(torch.isfinite(output).all()):
            raise NonFiniteImage(
                "the VAE decoded non-finite pixels (NaN or inf): the sampling overflowed",
                hint="lower --guidance; under --dtype fp16 try bf16 or fp32",
            )

    decoder.register_forward_hook(check)
    setattr(decoder, _HOOKED, True)
