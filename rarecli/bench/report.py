"""RareBench reports: merge a run's per-item results into summary.json, tabulate and plot runs.

Merging reads every `items/<category>/*.json` of a run folder, whichever process wrote it, so the
report of a run split across processes or machines is the same as that of a single process.
Scores follow the paper: an image's score is on 0..100, a category's is the mean over its judged
images, and `overall` is the mean of the category scores.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from rarecli.bench.definition import Definition, load_definition
from rarecli.bench.judges import scale_of
from rarecli.bench.layout import load_items
from rarecli.errors import InputError, RareError
from rarecli.io.atomic import write_new, write_text_replace
from rarecli.io.runfolder import read_config
from rarecli.log import console, is_quiet, warn

SUMMARY_SCHEMA = 1


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    document = read_config(run_dir)
    if document is None:
        raise InputError(
            f"{run_dir} is not a RareBench run folder (no config.json)",
            hint="pass the --out folder of `rare bench rarebench`",
        )
    identity = document["identity"]
    counts = document.get("prompts", {}).get("count", {})
    k = int(identity["images_per_prompt"])
    limit = identity.get("limit")
    items, unreadable = load_items(run_dir)
    categories: dict[str, dict[str, Any]] = {}
    failures = []
    for cat in identity["categories"]:
        n_prompts = counts.get(cat)
        n_expected = None if n_prompts is None else (min(limit, n_prompts) if limit else n_prompts) * k
        mine = [r for r in items if r.get("category") == cat]
        ok = [r for r in mine if r.get("status") == "ok"]
        failed = [r for r in mine if r.get("status") != "ok"]
        failures += [
            {"item": r["_path"], "stage": r.get("stage"), "reason": r.get("reason")}
            for r in failed  # the reasons say what to fix
        ]
        categories[cat] = {
            "score": _mean([float(r["score"]) for r in ok]),
            "ok": len(ok),
            "failed": len(failed),
            "expected": n_expected,
            "missing": (n_expected - len(ok) - len(failed)) if n_expected is not None else None,
        }
    scored = [c["score"] for c in categories.values() if c["score"] is not None]
    totals = {key: sum(c[key] or 0 for c in categories.values()) for key in ("ok", "failed", "expected", "missing")}
    provs = [r.get("provenance", {}) for r in items]
    gen = [p["generate_seconds"] for p in provs if p.get("generate_seconds") is not None]
    judge = [p["judge_seconds"] for p in provs if p.get("judge_seconds") is not None]
    peaks = [p["peak_memory_bytes"] for p in provs if p.get("peak_memory_bytes")]
    method = identity["method"]
    return {
        "schema": SUMMARY_SCHEMA,
        "run_dir": str(run_dir),
        "label": _label(method, identity["judge"]),
        "method": method,
        "judge": identity["judge"],
        "images_per_prompt": k,
        "categories": categories,
        "overall": {
            "score": _mean(scored),
            **totals,
            "categories_scored": len(scored),
        },
        "complete": totals["missing"] == 0 and len(scored) == len(categories),
        "failures": failures,
        "unreadable": unreadable,
        "timing": {
            "generate_seconds_per_image": _mean(gen),
            "judge_seconds_per_image": _mean(judge),
            "peak_memory_bytes": max(peaks) if peaks else None,
            "processes": sorted({p["num_processes"] for p in provs if "num_processes" in p}),
        },
    }


def _label(method: dict[str, Any], judge: dict[str, Any]) -> str:
    """What the table calls a run: method, model, judge and protocol, and R2F's plans and rule when not ours."""
    options = method.get("options") or {}
    extra = [f"{k}={options[k]}" for k in ("plans", "schedule") if options.get(k)]
    scale = scale_of(judge)
    where = f"{judge['model']}" + ("" if scale == judge.get("name") else f", {scale} protocol")
    return " ".join([method["name"], Path(str(method["model"])).name, *extra, f"({where})"])


def write_summary(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Merge the run's items into RUN_DIR/summary.json (replacing an older one); return path and summary."""

    summary = summarize(run_dir)
    path = Path(run_dir) / "summary.json"
    write_text_replace(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return path, summary


def anchor_table(definition: Definition, later: bool = False) -> dict[str, dict[str, float]]:
    """The paper's published numbers (`later`: the later methods' rows instead); `overall` is theirs when
    the paper gives only that, else the mean of the categories when it gives all of them (a partial row has
    no overall)."""
    names = [c.name for c in definition.categories]
    out = {}
    for name, scores in (definition.later_anchors if later else definition.anchors).items():
        row = dict(scores)
        if "overall" not in row and all(c in row for c in names):
            row["overall"] = sum(row[c] for c in names) / len(names)
        out[name] = row
    return out


def protocol_of(summary: dict[str, Any]) -> str:
    """The scale a run's scores are on: its judge's own (`clipscore`), or the rubric protocol it judged
    under (`rare` when unrecorded)."""
    return scale_of(summary["judge"])


def anchor_warnings(summaries: list[dict[str, Any]], definition: Definition) -> list[str]:
    """One line per run whose scores are not on the anchors' scale (another judge or protocol)."""
    lines = []
    for i, s in enumerate(summaries, 1):
        protocol = protocol_of(s)
        if protocol != definition.anchors_protocol:
            lines.append(
                f"[{i}] was judged with {protocol}, the paper's numbers with its {definition.anchors_protocol} "
                f"protocol: they are on different scales, shown side by side for reference only "
                f"(--protocol paper judges as the paper did)"
            )
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _row_names(summaries: list[dict[str, Any]], definition: Definition | None) -> list[str]:
    seen = {c for s in summaries for c in s["categories"]}
    order = [c.name for c in definition.categories] if definition else []
    return [c for c in order if c in seen] + sorted(seen - set(order))


def build_table(
    summaries: list[dict[str, Any]],
    anchors: dict[str, dict[str, float]] | None = None,
    definition: Definition | None = None,
):
    """A rich Table: rows are categories, then overall, failed and missing; a column per run."""

    table = Table(title="RareBench (score 0-100)", title_justify="left")
    table.add_column("category")
    for i, s in enumerate(summaries, 1):
        table.add_column(f"[{i}] {display_label(s)}", justify="right")
    for name in anchors or {}:
        table.add_column(f"paper: {name}", justify="right", style="dim")
    rows = _row_names(summaries, definition)
    for cat in rows:
        cells = [_fmt(s["categories"].get(cat, {}).get("score")) for s in summaries]
        cells += [_fmt(a.get(cat)) for a in (anchors or {}).values()]
        table.add_row(cat, *cells)
    table.add_section()
    table.add_row(
        "overall",
        *[_fmt(s["overall"]["score"]) for s in summaries],
        *[_fmt(a.get("overall")) for a in (anchors or {}).values()],
        style="bold",
    )
    table.add_row("failed", *[str(s["overall"]["failed"]) for s in summaries], *["" for _ in anchors or {}])
    table.add_row("missing", *[str(s["overall"]["missing"]) for s in summaries], *["" for _ in anchors or {}])
    return table


def print_table(
    summaries: list[dict[str, Any]],
    anchors: dict[str, dict[str, float]] | None = None,
    definition: Definition | None = None,
) -> None:

    if is_quiet():
        return
    names = [c.name for c in definition.categories] if definition else []
    full = {k: v for k, v in (anchors or {}).items() if all(c in v for c in names)}
    console.print(build_table(summaries, full or None, definition))
    partial = [
        f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items())
        for name, row in (anchors or {}).items()
        if name not in full
    ]
    if partial:
        console.print("paper, partial rows: " + "; ".join(partial), markup=False, soft_wrap=True)
    if anchors is not None and definition is not None and definition.later_anchors:
        later = anchor_table(definition, later=True)
        table = Table(title="Later methods on RareBench, as their papers report (same judge)", title_justify="left")
        table.add_column("category")
        for i, name in enumerate(later, 1):
            table.add_column(f"{name} ({i})", justify="right", style="dim")
        for cat in [*names, "overall"]:
            table.add_row(cat, *[_fmt(row.get(cat)) for row in later.values()])
        console.print(table)
        for i, name in enumerate(later, 1):
            console.print(f"({i}) {name}: {definition.later_sources[name]}", markup=False, soft_wrap=True)
    for i, s in enumerate(summaries, 1):
        if s["overall"]["failed"]:
            console.print(
                f"[{i}] {s['overall']['failed']} item(s) failed; first: {s['failures'][0]['reason']}",
                markup=False,
                soft_wrap=True,
            )


def plot(
    summaries: list[dict[str, Any]],
    path: Path,
    anchors: dict[str, dict[str, float]] | None = None,
    definition: Definition | None = None,
) -> Path:
    """A grouped bar chart (a bar per run, and per paper anchor) over categories and overall; a new PNG."""

    try:
        import matplotlib
    except ImportError as exc:
        raise RareError(
            "--plot needs matplotlib, which is not installed",
            hint='pip install "rarecli[bench]" (or matplotlib), or leave out --plot',
        ) from exc

    matplotlib.use("Agg")  # no display; also keeps it working in a headless job
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists; rare never overwrites a file", hint="choose another --plot path")
    rows = [*_row_names(summaries, definition), "overall"]
    series = [(f"[{i}] {display_label(s)}", s, False) for i, s in enumerate(summaries, 1)]
    series += [(f"paper: {name}", a, True) for name, a in (anchors or {}).items()]
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(rows) + 2), 4.5))
    for j, (label, data, is_anchor) in enumerate(series):
        values = [
            (
                data.get(r)
                if is_anchor
                else (data["overall"] if r == "overall" else data["categories"].get(r, {})).get("score")
            )
            for r in rows
        ]
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(
            xs,
            [v if v is not None else 0.0 for v in values],
            width,
            label=label,
            hatch="//" if is_anchor else None,
            alpha=0.6 if is_anchor else 1.0,
        )
    ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    ax.set_title("RareBench")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    data = buf.getvalue()
    return write_new(path, lambda fh: fh.write(data))


@dataclass
class ReportResult:
    summary_paths: list[Path]
    summaries: list[dict[str, Any]]
    anchors: dict[str, dict[str, float]] | None
    plot: Path | None
    anchor_warnings: list[str] = field(default_factory=list)
    later_anchors: dict[str, dict[str, Any]] | None = None  # rows of later methods, each with its source


def display_label(summary: dict[str, Any]) -> str:
    """A run's label in a table or a legend: its own, or with its folder's name when another run shown
    beside it has the same (runs of one configuration)."""
    return summary.get("_display_label", summary["label"])


def _tell_apart(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = [s["label"] for s in summaries]
    return [
        {**s, "_display_label": f"{s['label']} ({Path(s['run_dir']).name})"} if labels.count(s["label"]) > 1 else s
        for s in summaries
    ]


def report_runs(run_dirs: list[Path], plot_path: Path | None = None, with_anchors: bool = False) -> ReportResult:
    """Merge each run's items into its summary.json, print the comparison table, optionally plot."""
    if not run_dirs:
        raise InputError("give at least one run folder")
    if plot_path is not None and Path(plot_path).exists():  # before any work: the table is not printed for nothing
        raise InputError(f"{plot_path} exists; rare never overwrites a file", hint="choose another --plot path")
    definition = load_definition()
    paths, summaries = [], []
    for run_dir in run_dirs:
        path, summary = write_summary(Path(run_dir))
        paths.append(path)
        summaries.append(summary)
    shown = _tell_apart(summaries)
    anchors = anchor_table(definition) if with_anchors else None
    print_table(shown, anchors, definition)
    cautions = anchor_warnings(summaries, definition) if with_anchors else []
    for line in cautions:
        warn(line)  # shown under --json and --quiet too: it says what the numbers mean
    for s in summaries:
        if s.get("unreadable"):
            warn(
                f"{s['run_dir']}: {len(s['unreadable'])} damaged item file(s), counted missing "
                f"({s['unreadable'][0]}); the same `rare bench rarebench` command makes them again"
            )
    written = plot(shown, plot_path, anchors, definition) if plot_path is not None else None
    later = (
        {n: {**row, "source": definition.later_sources[n]} for n, row in anchor_table(definition, later=True).items()}
        if with_anchors
        else None
    )
    return ReportResult(paths, summaries, anchors, written, cautions, later)
