"""`recsys services up|down|status`: real Kafka, Cassandra and Redis on 127.0.0.1, no Docker;
Prometheus too when named; a replicated cluster on 127.0.0.2 and up with `--replicas N`."""

from __future__ import annotations

import json
import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from recsys.services import cluster, manager
from recsys.services.base import Service, State, Status
from recsys.services.manager import Action, Outcome
from shared.errors import RecsysError

app = typer.Typer(
    help="Run real Apache Kafka, Apache Cassandra and Redis on 127.0.0.1 (no Docker);"
    " Prometheus when named (`up prometheus`).",
    no_args_is_help=True,
)


class Name(StrEnum):
    kafka = "kafka"
    cassandra = "cassandra"
    redis = "redis"
    prometheus = "prometheus"


Names = Annotated[
    list[Name] | None,
    typer.Argument(
        help="Services to act on (default: kafka, cassandra, redis, and prometheus only"
        " when one of ours runs; `up prometheus` starts it).",
        show_default=False,
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        help="Data, logs and pid files, one subfolder per service [default: $RECSYS_HOME/services].",
        show_default=False,
    ),
]
Replicas = Annotated[
    int,
    typer.Option(
        min=1,
        help="1: the single-node services on 127.0.0.1. N >= 2: a cluster of N Kafka nodes"
        " and N Cassandra nodes (at most 3), node i on 127.0.0.(1+i), and one Redis on"
        " 127.0.0.2, with files under <state-dir>/replicas-N; give the same N to `down` and"
        " `status`.",
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        help="Where Maven-fetched server jars are kept [default: $RECSYS_CACHE_DIR].",
        show_default=False,
    ),
]

_STATE_STYLE = {
    State.HEALTHY: "green",
    State.EXTERNAL: "cyan",
    State.UNHEALTHY: "red",
    State.STOPPED: "dim",
}


def _console() -> Console:
    # soft_wrap: one line per service even in a narrow terminal or a CI log (80 columns).
    return Console(highlight=False, soft_wrap=True)


def _quiet_drivers() -> None:
    # The probes expect refusals while a server starts; the drivers would log each as an error.
    for name in ("cassandra", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _services(
    names: list[Name] | None, state_dir: Path | None, cache_dir: Path | None, replicas: int = 1
) -> list[Service]:
    from shared.settings import Settings

    settings = Settings()  # also Prometheus' port and scrape targets
    state_dir = state_dir or settings.home / "services"
    cache_dir = cache_dir or settings.cache_dir
    wanted = [n.value for n in names or []]
    if replicas > 1:
        return cluster.cluster_services(
            wanted,
            cluster.cluster_dir(state_dir, replicas),
            cache_dir,
            cluster.layout_for(replicas),
        )
    return manager.make_services(wanted, state_dir, cache_dir, settings)


def _urls(replicas: int) -> str:
    """The settings that point the project at a cluster."""
    layout = cluster.layout_for(replicas)
    return (
        f"RECSYS_EVENT_LOG_URL={layout.kafka_url}/events "
        f"RECSYS_USER_STATE_URL={layout.redis_url} "
        f"RECSYS_CANDIDATES_URL={layout.cassandra_url}/recsys "
        f"RECSYS_HISTORY_URL={layout.cassandra_url}/recsys"
    )


def _outcome_line(svc: Service, result: Outcome | RecsysError) -> Text:
    if isinstance(result, RecsysError):
        return Text.assemble(("✗ ", "bold red"), (f"{svc.name:<11}", "bold"), str(result))
    st = result.status
    mark = ("✓ ", "green") if st.usable or result.action is not Action.KILLED else ("! ", "yellow")
    parts: list[str | tuple[str, str]] = [
        mark,
        (f"{svc.name:<11}", "bold"),
        f"{result.action.value:<16}",
        f"{svc.address:<16}",
    ]
    if st.pid is not None:
        parts.append(f"pid {st.pid:<8}")
    if st.version:
        parts.append(f"{st.version:<8}")
    if st.detail:
        parts.append((f"{st.detail}  ", "dim"))
    if result.purged:
        parts.append(("data purged  ", "yellow"))
    parts.append((f"{result.seconds:6.1f} s", "dim"))
    return Text.assemble(*parts)


@app.command()
def up(
    services: Names = None,
    replicas: Replicas = 1,
    state_dir: StateDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Start the services that are not running and wait until each answers its protocol.

    With --replicas N, the nodes of a cluster: Kafka's all at once (their controllers elect
    a leader among themselves), Cassandra's one after the other.
    """
    _quiet_drivers()
    stdout = _console()
    try:
        targets = _services(services, state_dir, cache_dir, replicas)
    except RecsysError as err:
        raise typer.BadParameter(str(err)) from err
    start = time.monotonic()
    with stdout.status(f"Starting {', '.join(s.name for s in targets)} …"):
        results = manager.up(targets, lambda s, r: stdout.print(_outcome_line(s, r)))
    took = time.monotonic() - start
    failed = [r for r in results if isinstance(r, RecsysError)]
    done = [r for r in results if isinstance(r, Outcome)]
    counts = {a: sum(1 for r in done if r.action is a) for a in Action}
    summary = ", ".join(f"{n} {a.value}" for a, n in counts.items() if n)
    if failed:
        stdout.print(
            Text(
                f"{len(failed)} of {len(targets)} services failed after {took:.1f} s"
                f"{' (' + summary + ')' if summary else ''}.",
                style="bold red",
            )
        )
        raise typer.Exit(max(e.exit_code for e in failed))
    stdout.print(Text(f"{len(done)} services ready in {took:.1f} s ({summary}).", style="bold"))
    if replicas > 1:
        stdout.print(Text(f"Point the project at them: {_urls(replicas)}", style="dim"))


@app.command()
def down(
    services: Names = None,
    purge: Annotated[bool, typer.Option(help="Also delete the services' data.")] = False,
    replicas: Replicas = 1,
    state_dir: StateDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Stop the services started by `up` (SIGTERM, then SIGKILL); external ones are left alone."""
    _quiet_drivers()
    stdout = _console()
    try:
        targets = _services(services, state_dir, cache_dir, replicas)
    except RecsysError as err:
        raise typer.BadParameter(str(err)) from err
    start = time.monotonic()
    with stdout.status(f"Stopping {', '.join(s.name for s in targets)} …"):
        results = manager.down(targets, purge, lambda s, r: stdout.print(_outcome_line(s, r)))
    failed = [r for r in results if isinstance(r, RecsysError)]
    stopped = sum(
        1 for r in results if isinstance(r, Outcome) and r.action in (Action.STOPPED, Action.KILLED)
    )
    took = time.monotonic() - start
    if failed:
        raise typer.Exit(max(e.exit_code for e in failed))
    stdout.print(Text(f"{stopped} stopped in {took:.1f} s.", style="bold"))


def _table(statuses: list[Status]) -> Table:
    table = Table(title="recsys services")
    for column in ("service", "address", "pid", "state", "version", "detail"):
        table.add_column(column)
    for st in statuses:
        table.add_row(
            st.service,
            st.address,
            str(st.pid) if st.pid is not None else "-",
            Text(str(st.state), style=_STATE_STYLE[st.state]),
            st.version or "-",
            Text(st.detail, style="dim"),
        )
    return table


@app.command()
def status(
    services: Names = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    replicas: Replicas = 1,
    state_dir: StateDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Show each service's address, pid, state and version; exit 0 only if all answer.

    A server we did not start but that answers on our address ("external") counts as up.
    """
    _quiet_drivers()
    stdout = _console()
    try:
        targets = _services(services, state_dir, cache_dir, replicas)
    except RecsysError as err:
        raise typer.BadParameter(str(err)) from err
    statuses = manager.status(targets)
    if as_json:
        # A cluster's nodes share a service name: key them by address there.
        key = (
            (lambda st: st.service) if replicas == 1 else (lambda st: f"{st.service}@{st.address}")
        )
        typer.echo(json.dumps({key(st): st.to_dict() for st in statuses}))
    else:
        stdout.print(_table(statuses))
    if not all(st.usable for st in statuses):
        raise typer.Exit(1)
