"""Settings from the YAML config file, fed to click's default_map.

Precedence (click's own order): CLI flag > RARE_* environment variable > config file > default.
The file holds top-level keys shared by every command that has an option of that name, and one
section per command (nested for groups), e.g.::

    device: cuda:0
    dtype: fp16
    seedselect:
      iters: 30
    r2f:
      generate:
        steps: 28
    methods:            # each method's options, wherever it runs (flags and sections above win)
      seedselect:
        iters: 10
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from rarecli.errors import RareError
from rarecli.io.inputs import read_text
from rarecli.methods import registry

MAX_CONFIG_BYTES = 2**20


def load_config(path: Path, explicit: bool = False) -> dict[str, Any]:
    """The config file's mapping; {} when there is none. `explicit`: the path was named (RARE_CONFIG),
    so a missing file is an error, not an absent config."""
    if not path.is_file():
        if explicit:
            if path.is_dir():
                raise RareError(f"RARE_CONFIG names {path}, a folder, not a config file", hint="point it at a YAML file")
            raise RareError(f"RARE_CONFIG names {path}, which does not exist", hint="create it, or unset RARE_CONFIG")
        return {}
    # Imported only when a config file exists: every command's --help passes through here.
    import yaml

    text = read_text(path, "config file", limit=MAX_CONFIG_BYTES)
    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader without aliases
    except yaml.YAMLError as exc:
        raise RareError(f"cannot read config file {path}: {exc}", hint="fix or remove it, or set RARE_CONFIG") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RareError(f"config file {path} must hold a mapping at the top level", hint="see the README's Settings")
    return data


def _loader() -> Any:
    """PyYAML's SafeLoader refusing aliases: settings never need them, and nested aliases expand
    exponentially (a 503-byte file of them made every command take gigabytes before this)."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                line = self.peek_event().start_mark.line + 1
                raise yaml.YAMLError(f"line {line}: aliases (*name) are not allowed in a rare config file")
            return super().compose_node(parent, index)

    return NoAliases


def default_map(command: Any, config: dict[str, Any], path: Path | str = "config", ctx: Any = None) -> dict[str, Any]:
    """Click's default_map for `command`'s subtree from a config mapping, every key and value checked:
    an unknown setting, a section given as a value or a value its option cannot take is a RareError
    naming the file and the setting (never a complaint about a command-line flag the user did not give).
    Values are checked when the running command's context `ctx` is given."""

    def fail(message: str, hint: str | None = None) -> RareError:
        return RareError(f"config file {path}: {message}", hint=hint or "see the README's Settings and `rare --help`")

    def options(cmd: Any) -> dict[str, Any]:
        return {p.name: p for p in cmd.params if getattr(p, "param_type_name", "") == "option"}

    def everywhere(cmd: Any) -> set[str]:
        names = set(options(cmd))
        for sub in getattr(cmd, "commands", {}).values():
            names |= everywhere(sub)
        return names

    def check(param: Any, value: Any, where: str) -> None:
        # Every value is a scalar, or a list of scalars for an option given many times: a list where one
        # value is wanted would otherwise be turned into its text.
        scalar = (str, int, float, bool, type(None))
        many = bool(getattr(param, "multiple", False)) or getattr(param, "nargs", 1) != 1
        if isinstance(value, list) and many:
            if not all(isinstance(v, scalar) for v in value):
                raise fail(f"`{where}` must be a list of plain values")
        elif not isinstance(value, scalar):
            raise fail(f"`{where}` must be a single value, not a {type(value).__name__}")
        if ctx is None:
            return
        try:  # the option's own conversion and callback, as for a value given on the command line
            param.process_value(ctx, value)
        except Exception as exc:  # click's BadParameter (typer runs on a click of its own)
            raise fail(f"`{where}`: {getattr(exc, 'message', exc)}") from None

    def build(cmd: Any, section: dict[str, Any], where: list[str], shared: dict[str, Any]) -> dict[str, Any]:
        opts, subs = options(cmd), getattr(cmd, "commands", {})
        here = everywhere(cmd)
        out: dict[str, Any] = {}
        shared = dict(shared)
        for key, value in section.items():
            name, dotted = str(key).replace("-", "_"), ".".join([*where, str(key)])
            if key in subs:
                if not isinstance(value, dict):
                    raise fail(f"`{dotted}` must be a section: a mapping of option names to values")
            elif isinstance(value, dict):
                raise fail(f"unknown section `{dotted}`", hint=_suggest(key, subs))
            elif name in opts:
                check(opts[name], value, dotted)
                out[name] = value
            elif name in here:  # an option of commands below: shared by this subtree
                shared[name] = (value, dotted)
            else:
                raise fail(f"unknown setting `{dotted}`", hint=_suggest(key, [n.replace("_", "-") for n in here]))
        for name, (value, dotted) in shared.items():
            if name in opts and name not in out:
                check(opts[name], value, dotted)
                out[name] = value
        for name, sub in subs.items():
            out[name] = build(sub, section.get(name) or {}, [*where, name], shared)
        return out

    config = {k: v for k, v in config.items() if k != METHODS_SECTION}  # read by `method_sections`
    return build(command, config, [], {})


METHODS_SECTION = "methods"


def method_sections(config: dict[str, Any], path: Path | str = "config") -> dict[str, dict[str, Any]]:
    """The config file's `methods:` section: each registered method's options, checked by the method's
    own options class (a RareError names the file and the setting)."""
    section = config.get(METHODS_SECTION) or {}
    if not isinstance(section, dict):
        raise RareError(f"config file {path}: `{METHODS_SECTION}` must be a section: method names to their options")
    out = {}
    for name, values in section.items():
        where = f"{METHODS_SECTION}.{name}"
        if str(name) not in registry.METHODS:
            raise RareError(f"config file {path}: unknown method `{where}`", hint=_suggest(name, registry.METHODS))
        if not isinstance(values, dict):
            raise RareError(f"config file {path}: `{where}` must be a section: option names to values")
        try:
            checked = registry.spec(str(name)).parse({str(k).replace("-", "_"): v for k, v in values.items()})
        except RareError as exc:
            raise RareError(f"config file {path}: `{where}`: {exc}", hint=exc.hint) from None
        out[str(name)] = {str(k).replace("-", "_"): getattr(checked, str(k).replace("-", "_")) for k in values}
    return out


def _suggest(key: Any, known: Any) -> str | None:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f"did you mean {close[0]}?" if close else None
