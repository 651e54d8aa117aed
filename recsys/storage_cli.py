"""``recsys storage``: create schemas and check that every storage role answers."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
import typer
from rich.table import Table

from recsys.console import console
from shared.errors import RecsysError
from shared.settings import Settings

app = typer.Typer(help="Storage roles: create schemas, check connectivity.", no_args_is_help=True)


@app.command()
def init() -> None:
    """Create topics, keyspaces and tables for every role (idempotent)."""
    from shared.storage.factory import open_stores

    settings = Settings()
    started = time.perf_counter()
    stores = open_stores(settings)
    try:
        stores.init_schema()
    finally:
        stores.close()
    console.print(f"schemas ready for 4 roles in {time.perf_counter() - started:.2f} s")


@app.command()
def check(
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Open every role from settings and ping it; exit 3 if any does not answer."""
    from shared.storage import factory

    settings = Settings()
    results: dict[str, dict[str, str]] = {}
    for role, url in factory.role_urls(settings).items():
        try:
            store = factory.open_role(role, settings)
            try:
                factory.ping(store)
            finally:
                store.close()
            results[role] = {"url": url, "status": "ok"}
        except RecsysError as err:
            results[role] = {"url": url, "status": "error", "error": str(err)}
    if json:
        console.print_json(orjson.dumps(results).decode())
    else:
        table = Table("role", "url", "status")
        for role, r in results.items():
            status = "[green]ok[/]" if r["status"] == "ok" else f"[red]{r.get('error')}[/]"
            table.add_row(role, r["url"], status)
        console.print(table)
    if any(r["status"] != "ok" for r in results.values()):
        raise typer.Exit(3)
