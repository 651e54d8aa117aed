"""``recsys models``: list, show, promote and roll back model bundles."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

import orjson
import typer
from rich.table import Table

from offline.gate import DEFAULT_METRIC, DEFAULT_TOLERANCE
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
def promote(
    version: str,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate finds it worse.")
    ] = False,
    metric: Annotated[str, typer.Option(help="What the gate compares.")] = DEFAULT_METRIC,
    tolerance: Annotated[
        float, typer.Option(help="How much worse than the live bundle it may be (absolute).")
    ] = DEFAULT_TOLERANCE,
) -> None:
    """Make a bundle live with its candidates, if the promotion gate lets it.

    The previous bundle is kept for rollback. The gate scores the bundle's and the live bundle's lists on the new bundle's holdout and
    refuses it (exit 1) when it is worse than the live one beyond the tolerance. Every
    decision goes to the registry's history (``recsys models history``).
    """
    from offline.gate import promote_gated

    verdict = promote_gated(Settings(), version, force=force, metric=metric, tolerance=tolerance)
    forced = "" if verdict.passed else " (forced past the gate)"
    console.print(f"live bundle is now {version}{forced}: {verdict.reason}")


@app.command()
def rollback() -> None:
    """Make the previously live bundle live again, with its candidates."""
    from offline.publish import rollback as rollback_bundle

    settings = Settings()
    before = _registry().live()
    info = rollback_bundle(settings)
    _registry().record(
        {
            "action": "rollback",
            "version": info.version,
            "live": before.version if before else None,
            "reason": "asked for",
            "by": "recsys models rollback",
        }
    )
    console.print(f"rolled back: live bundle is now {info.version}")


@app.command()
def history(
    json: JsonFlag = False,
    last: Annotated[int, typer.Option(help="How many of the latest decisions.")] = 20,
) -> None:
    """The registry's decisions: promotions, refusals, rollbacks, retraining runs.

    Oldest first, as the registry recorded them (``decisions.jsonl`` beside ``live.json``).
    """
    decisions = _registry().decisions()[-last:] if last > 0 else []
    if json:
        console.print_json(orjson.dumps(decisions).decode())
        return
    table = Table("when", "action", "version", "was live", "by", "why")
    for d in decisions:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["at"]))
        table.add_row(
            when,
            str(d.get("action")),
            str(d.get("version") or "-"),
            str(d.get("live") or "-"),
            str(d.get("by") or "-"),
            str(d.get("reason") or ""),
        )
    console.print(table)
    if not decisions:
        console.print("no decisions recorded yet")
