"""``recsys storage``: create schemas and check that every storage role answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from recsys.console import console
from shared.errors import RecsysError
from shared.settings import Settings

app = typer.Typer(help="Storage roles: create schemas, check connectivity.", no_args_is_help=True)


def _role_urls(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("event log", settings.event_log_url),
        ("user state", settings.user_state_url),
        ("candidates", settings.candidates_url),
        ("event history", settings.history_url),
    ]


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
    openers: dict[str, Callable[[], Any]] = {
        "event log": lambda: factory.open_event_log(settings.event_log_url),
        "user state": lambda: factory.open_user_state(
            settings.user_state_url, settings.user_state_ttl_s, settings.recent_items_cap
        ),
        "candidates": lambda: factory.open_candidates(settings.candidates_url),
        "event history": lambda: factory.open_history(settings.history_url),
    }
    results: dict[str, dict[str, str]] = {}
    for role, url in _role_urls(settings):
        try:
            store = openers[role]()
            try:
                store.ping()
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
