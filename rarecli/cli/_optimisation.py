"""Options shared by the commands that run SeedSelect / NAO-SeedSelect (`rare seedselect`, `rare augment`)
besides the methods' own (which `_method_flags` derives from their options classes).

Defaults of None mean "the method's own" (SeedSelect CFG 7.5; NAO-SeedSelect 1), which the library
resolves, so both commands show and apply the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import typer

from rarecli.cli._options import MAX_GUIDANCE, bounded

PANEL = "Optimisation"


InnerSteps = Annotated[
    int,
    typer.Option(
        "--inner-steps",
        min=1,
        help="DDIM denoising steps inside each iteration (gradients flow through all of them).",
        rich_help_panel=PANEL,
    ),
]


Guidance = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        callback=bounded(0.0, MAX_GUIDANCE),
        help="Classifier-free guidance. Default: 7.5 for seedselect, 1 for nao-seedselect.",
        rich_help_panel=PANEL,
    ),
]


def unused_options(given: Mapping[str, Any], used: Iterable[str]) -> list[str]:
    """The options set (anywhere but their defaults) that the chosen method does not read, as --flags:
    named rather than silently ignored."""
    used = set(used)
    return ["--" + name.replace("_", "-") for name in given if name not in used]
