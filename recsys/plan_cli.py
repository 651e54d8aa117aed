"""``recsys plan``: counts and sizes for a traffic, from the benchmarks' measured figures."""

from __future__ import annotations

import re
from typing import Annotated

import orjson
import typer
from rich.table import Table

from recsys.console import console
from recsys.plan import Assumptions, as_dicts, plan
from shared.errors import DataError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def number(text: str, what: str) -> float:
    """``10M``, ``100k``, ``5000``, ``2.5m`` as a number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGbB]?)\s*", text)
    if match is None:
        raise DataError(f"{what} {text!r}: use a number like 5000, 100k or 10M")
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]


def command(
    users: Annotated[str, typer.Option(help="Users (10M, 250k ...).")] = "1M",
    items: Annotated[str, typer.Option(help="Items in the catalogue.")] = "50k",
    rps: Annotated[str, typer.Option(help="Recommendation requests per second at peak.")] = "500",
    events_per_s: Annotated[str, typer.Option(help="User events per second at peak.")] = "5k",
    active_share: Annotated[
        float, typer.Option(help="Share of users active within the state's TTL.")
    ] = 1.0,
    history_days: Annotated[float, typer.Option(help="Days of event history kept.")] = 90.0,
    training_days: Annotated[float, typer.Option(help="Days of the lake a run trains on.")] = 90.0,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A capacity plan: API, nearline, Kafka, Redis, Cassandra and offline, from measured figures.

    Each line gives its formula and the benchmark result it stands on, and says whether the
    traffic asked for is beyond what was measured (extrapolated).
    """
    asked = {
        "users": number(users, "--users"),
        "items": number(items, "--items"),
        "rps": number(rps, "--rps"),
        "events_per_s": number(events_per_s, "--events-per-s"),
    }
    assumptions = Assumptions(
        active_share=active_share, history_days=history_days, training_days=training_days
    )
    lines = plan(**asked, a=assumptions)
    if json:
        out = {"asked": asked, "assumptions": assumptions.__dict__, "plan": as_dicts(lines)}
        console.print_json(orjson.dumps(out).decode())
        return
    table = Table("part", "figure", "value", "formula", "from", title="capacity plan")
    for line in lines:
        value = f"{line.value:,.0f}" if line.value >= 10 else f"{line.value:,.2f}"
        mark = " (extrapolated)" if line.extrapolated else " (measured basis)"
        table.add_row(
            line.part, line.figure, f"{value} {line.unit}", line.formula, line.source + mark
        )
    console.print(table)
