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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rarecli.errors import RareError


def load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    # Imported only when a config file exists: every command's --help passes through here.
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RareError(f"cannot read config file {path}: {exc}", hint="fix or remove it, or set RARE_CONFIG") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RareError(f"config file {path} must hold a mapping at the top level")
    return data


def default_map(command, config: dict[str, Any]) -> dict[str, Any]:
    """Build click's default_map for `command`'s subtree from a config mapping."""
    config = _normalise(config)
    shared = {k: v for k, v in config.items() if not isinstance(v, dict)}

    def build(cmd: Any, section: dict[str, Any]) -> dict[str, Any]:
        names = {p.name for p in cmd.params}
        out: dict[str, Any] = {k: v for k, v in shared.items() if k in names}
        out.update({k: v for k, v in section.items() if not isinstance(v, dict)})
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                sub_section = section.get(name, {})
                if not isinstance(sub_section, dict):
                    raise RareError(f"config: `{name}` must be a mapping of option names to values")
                out[name] = build(sub, sub_section)
        return out

    return build(command, {k: v for k, v in config.items() if isinstance(v, dict)})


def _normalise(section: dict[str, Any]) -> dict[str, Any]:
    # Users write option names as on the command line (inner-steps); click keys them inner_steps.
    return {
        str(k).replace("-", "_") if not isinstance(v, dict) else str(k): (_normalise(v) if isinstance(v, dict) else v)
        for k, v in section.items()
    }
