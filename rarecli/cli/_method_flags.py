"""Command-line flags derived from methods' options classes (`rarecli.methods.options`).

`method_flags(spec, ...)` adds one `--flag` per option of the given methods to a command, with the
option's type, default, bounds, choices and help, and hands the command `options`: the ones that were set
(on the command line, in RARE_* or the config file), by name. The command never lists a method's options
itself, so an option added to a method's class appears here with no other edit.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from rarecli.cli._options import bounded
from rarecli.methods.options import Option
from rarecli.methods.spec import MethodSpec

METHOD_DEFAULTS = "rare.method_defaults"  # where the root command keeps the config file's `methods:` section


def method_defaults(context: typer.Context | None, method: str) -> dict[str, Any]:
    """The config file's options for `method` (its `methods:` section), below anything set for the command."""
    if context is None:
        return {}
    return dict(context.meta.get(METHOD_DEFAULTS, {}).get(method, {}))


def options_of(specs: Iterable[MethodSpec], skip: Iterable[str] = ()) -> list[tuple[Option, MethodSpec]]:
    """The options of `specs`, each name once (with the first method that has it), in declaration order."""
    seen: dict[str, tuple[Option, MethodSpec]] = {}
    for spec in specs:
        for opt in spec.options.describe():
            if opt.name not in seen and opt.name not in set(skip):
                seen[opt.name] = (opt, spec)
    return list(seen.values())


def _annotation(opt: Option, panel: str) -> Any:
    info = opt.info
    kind: Any = opt.type
    extra: dict[str, Any] = {}
    if info.choices:
        kind = _choices(opt.name, info.choices)
    elif opt.type is int:
        extra.update(min=None if info.low is None else int(info.low), max=None if info.high is None else int(info.high))
    elif opt.type is float and (info.low is not None or info.high is not None or info.flag_high is not None):
        high = info.flag_high if info.flag_high is not None else info.high
        extra["callback"] = bounded(
            info.low if info.low is not None else float("-inf"),
            high if high is not None else float("inf"),
            low_open=info.low_open,
        )
    decls = [opt.flag] if opt.type is not bool else [f"{opt.flag}/--no-{opt.flag[2:]}"]
    hint = kind | None if opt.nullable else kind
    return Annotated[hint, typer.Option(*decls, help=info.help, rich_help_panel=panel, **extra)]


@functools.cache
def _choices(name: str, choices: tuple[str, ...]) -> type[enum.StrEnum]:
    return enum.StrEnum(f"{name.title().replace('_', '')}Choice", [(c, c) for c in choices])


def method_flags(specs: Iterable[MethodSpec], panel: str | None, skip: Iterable[str] = ()) -> Callable[[Any], Any]:
    """Decorate a Typer command (which takes `options: dict` and a `typer.Context`) with the flags of
    `specs`' options, under `panel` (None: a panel per method, named after the first that has the option)."""
    owned = options_of(specs, skip)
    flags = [o for o, _ in owned]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "options"]
        added = [
            inspect.Parameter(
                o.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=o.default,
                annotation=_annotation(o, panel or f"{spec.title} options"),
            )
            for o, spec in owned
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The command's own typer.Context says where each value came from (flag, RARE_*, config file).
            context = next((v for v in (*args, *kwargs.values()) if hasattr(v, "get_parameter_source")), None)
            options = {}
            for o in flags:
                value = kwargs.pop(o.name)
                source = context.get_parameter_source(o.name) if context is not None else None
                if getattr(source, "name", "DEFAULT") != "DEFAULT" or (context is None and value != o.default):
                    options[o.name] = value.value if isinstance(value, enum.Enum) else value
            return command(*args, options=options, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **{k: v for k, v in command.__annotations__.items() if k != "options"},
            **{p.name: p.annotation for p in added},
        }
        return wrapper

    return decorate

