"""``recsys models``: list, show, promote and roll back model bundles."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

import orjson
import typer
from rich.table import Table

from recsys.console import console
from shared.registry import ModelRegistry
from shared.settings import Settings

app = typer.Typer(help="Model bundles: list, show, promote, rollback.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry() -> ModelRegistry:
    return ModelRegistry(Settings().registry_url)


@app.command("list")
def list_bundles(json: JsonFlag = False) -> None:
    """Every bundle, oldest first; the live one is marked."""
    registry = _registry()
    live = registry.live()
    bundles = registry.list()
    if json:
        rows = [
            {**asdict(b), "live": live is not None and b.version == live.version} for b in bundles
        ]
        console.print_json(orjson.dumps(rows).decode())
        return
    table = Table("version", "parent", "created", "data", "metrics", "live")
    for b in bundles:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(b.metrics.items())[:4])
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.created_at))
        is_live = "*" if live is not None and b.version == live.version else ""
        table.add_row(
            b.version, b.parent or "-", created, b.data_fingerprint[:12], metrics, is_live
        )
    console.print(table)
    if not bundles:
        console.print(f"no bundles in {registry.root}")


@app.command()
def show(version: str) -> None:
    """A bundle's manifest: lineage, data fingerprint, parameters, metrics, files."""
    console.print_json(orjson.dumps(asdict(_registry().get(version))).decode())


@app.command()
def promote(version: str) -> None:
    """Make a bundle live with its candidates (the previous one is kept for rollback)."""
    from offline.publish import promote as promote_bundle  # the offline job's own step

    info = promote_bundle(Settings(), version)
    console.print(f"live bundle is now {info.version}")


@app.command()
def rollback() -> None:
    """Make the previously live bundle live again."""
    info = _registry().rollback()
    console.print(f"rolled back: live bundle is now {info.version}")
