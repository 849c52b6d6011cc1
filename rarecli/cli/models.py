"""`rare models`: the embedded backbones and the pipelines in the Hugging Face cache."""

from __future__ import annotations

import typer

from rarecli.cli._options import Json
from rarecli.cli._output import Output
from rarecli.cli._run import command
from rarecli.log import console


def models(json_out: Json = False) -> Output:
    """List the embedded backbones (usable offline) and the models in the Hugging Face cache."""
    from rich.table import Table  # display only: kept off the path of `rare --help`

    from rarecli.backbones.registry import EMBEDDED

    embedded = [
        {
            "name": e.name,
            "class": e.pipeline_class,
            "built": e.built,
            "path": str(e.folder),
            "description": e.description,
            # Twins: random weights in a real model's architecture, built on first use at this size.
            "random_weight_twin_of": e.twin.copies if e.twin else None,
            "parameters": e.twin.parameters if e.twin else None,
            "disk_bytes": e.twin.disk_bytes if e.twin else None,
        }
        for e in EMBEDDED.values()
    ]
    hub = _hub_cache()
    # Data on stdout: the names a user can pass to --model.
    names = [e["name"] for e in embedded] + [r["repo"] for r in hub or [] if r["type"] == "model"]
    output = Output({"embedded": embedded, "hf_cache": hub}, names)
    if json_out:
        return output
    table = Table(title="Embedded backbones (offline, CPU)", title_justify="left")
    for col in ("name", "class", "built", "description"):
        table.add_column(col)
    for e in embedded:
        if e["random_weight_twin_of"] is None:
            table.add_row(e["name"], e["class"], "yes" if e["built"] else "on first use", e["description"])
    console.print(table)
    table = Table(
        title="Architecture twins (random weights at the real size; their images are noise)", title_justify="left"
    )
    for col in ("name", "parameters", "disk", "built", "copies"):
        table.add_column(col, no_wrap=col in ("name", "parameters", "disk"))
    for e in embedded:
        if e["random_weight_twin_of"] is not None:
            built = "yes" if e["built"] else "on first use"
            size = f"{e['disk_bytes'] / 1e9:.1f} GB"
            copies = e["random_weight_twin_of"].split("@")[0]
            table.add_row(e["name"], f"{e['parameters'] / 1e9:.2f} B", size, built, copies)
    console.print(table)
    if hub is None:
        console.print("Hugging Face cache: none yet", markup=False)
    else:
        table = Table(title="Hugging Face cache", title_justify="left")
        for col in ("repo", "type", "size", "revisions"):
            table.add_column(col)
        for r in hub:
            table.add_row(r["repo"], r["type"], r["size"], str(len(r["revisions"])))
        console.print(table)
    return output


def register(app: typer.Typer) -> None:
    command(app, "models", example="rare models --json", no_args_is_help=False)(models)


def _hub_cache() -> list[dict] | None:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return None
    return [
        {
            "repo": r.repo_id,
            "type": r.repo_type,
            "size": r.size_on_disk_str,
            "revisions": sorted(rev.commit_hash for rev in r.revisions),
        }
        for r in sorted(info.repos, key=lambda r: r.repo_id)
    ]
