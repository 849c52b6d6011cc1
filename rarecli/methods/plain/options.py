"""Plain sampling's options and registry entry. Its registry name is `sd`, the name every run folder,
file name and record made so far carries."""

from __future__ import annotations

from typing import ClassVar

from rarecli.methods.options import MethodOptions, option
from rarecli.methods.spec import MethodSpec

PLAIN = "sd"


class PlainOptions(MethodOptions):
    method: ClassVar[str] = PLAIN

    negative_prompt: str | None = option(None, "Negative prompt.")
    batch_size: int = option(1, "Seeds drawn in one pipeline call.", low=1)


SPEC = MethodSpec(
    PLAIN,
    "plain sampling: the pipeline from each seed's noise (the baseline)",
    PlainOptions,
    frozenset({"sd", "sdxl", "sd3", "flux"}),
    "rarecli.methods.sample:PlainSampling",
)
