"""`rare env`: versions, devices and paths, for bug reports."""

from __future__ import annotations

from rarecli.cli._options import Json


def env(json_out: Json = False) -> None:
    """Print versions, devices and paths (paste this into bug reports)."""
    from rarecli.cli._output import emit_json
    from rarecli.runtime.report import environment_report

    report = environment_report()
    if json_out:
        emit_json(report)
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
