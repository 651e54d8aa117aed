"""``recsys bench online``: the online API under a stepped locust ramp, stage by stage, beside
a bare FastAPI endpoint.

Against the real services by default (``--redis-url``, ``--cassandra-url``, ``--kafka-url``;
``--embedded`` for SQLite stores), on a Redis namespace, keyspace and topic of the run's own
(dropped after), with a synthetic bundle of its own (:mod:`recsys.bench.online_data`).

Targets, one after the other, each in its own uvicorn process (one worker by default):

- ``bare``: a FastAPI app answering a constant, the ceiling of a Python service here;
- ``floor``: the full path's external calls only (one Redis read, one FAISS search, one
  ranker forward over the cached candidates, the top ``k`` as JSON; no merge, quotas, genre
  cap, metrics or impressions), on the same stack and stores: what no request path doing
  this work goes below (:mod:`recsys.bench.floor`; not in ``--quick``'s default, and not
  with ``--embedded``, as it reads Redis);
- ``precomputed``: recommendations from the precomputed candidates only (no fresh or
  trending candidates, stored order instead of the ranker, no genre cap);
- ``fresh``: plus fresh and trending candidates; ``ranker``: plus the ranker;
- ``full``: plus diversification, i.e. the request path as it is served;
- ``mix``: the full path under the realistic mix (75% home page, 10% similar items, 15%
  events), with every answer checked.

With both ``full`` and ``floor``, ``floor_ratio`` is full's CPU per request over the floor's:
what the request path's own logic costs on top of the unavoidable calls.

Every API target logs impressions, as the API is served (``RECSYS_LOG_IMPRESSIONS=true``) to
the run's own event log: a Kafka topic (deleted after) or, ``--embedded``, SQLite.

Each target gets the ramp of :mod:`recsys.bench.loadgen` (locust, headless, closed loop: the
default) or, ``--generator vegeta``, of :mod:`recsys.bench.vegeta_run` (a compiled generator,
open loop, the same mix); the judged endpoint's p99 must stay under ``--budget-ms`` with no
failed request. Each measured step also gives the API's CPU per answered request (the
server process and its workers, from ``/proc``: :mod:`recsys.bench.cpu`).

``--target URL`` (or ``--address``) loads a running API instead (``full`` and ``mix`` only;
nothing is started or prepared); its CPU is measured only when ``--server-pid`` names its
process on this machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.bench import (
    cpu,
    loadgen,
    online_data,
    online_report,
    plots,
    ramp,
    traffic,
    vegeta,
    vegeta_run,
)
from recsys.bench.results import finish, machine, results_dir
from recsys.console import console, err_console
from shared.settings import Settings

_DEFAULTS = {
    "RECSYS_FRESH_QUOTA": "50",
    "RECSYS_TRENDING_QUOTA": "20",
    "RECSYS_EXPERIMENT_ARMS": '{"control": 1}',
    "RECSYS_GENRE_CAP": "0.5",
}
_NO_RANKER = {"RECSYS_EXPERIMENT_ARMS": '{"blend": 1}'}
_NO_CAP = {"RECSYS_GENRE_CAP": "1"}
# name -> (label, environment of the API process on top of the defaults)
STAGES: dict[str, tuple[str, dict[str, str]]] = {
    "precomputed": (
        "precomputed only",
        {"RECSYS_FRESH_QUOTA": "0", "RECSYS_TRENDING_QUOTA": "0", **_NO_RANKER, **_NO_CAP},
    ),
    "fresh": ("+ fresh and trending", {**_NO_RANKER, **_NO_CAP}),
    "ranker": ("+ ranker", _NO_CAP),
    "full": ("+ diversification (full path)", {}),
    "mix": ("full path, realistic mix", {}),
}
TARGETS = ("bare", "floor", *STAGES)
QUICK_TARGETS = ("bare", "mix")
GENERATORS = ("locust", "vegeta")


def command(
    *,
    users: Annotated[int, typer.Option(help="Users with candidates and recent items.")] = 2_000,
    items: Annotated[int, typer.Option(help="Items in the synthetic bundle.")] = 5_000,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 32,
    candidates: Annotated[int, typer.Option(help="Precomputed candidates per user.")] = 200,
    targets: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated, among {', '.join(TARGETS)} (floor: the full path's"
            " external calls only, its cheapest possible cost)."
        ),
    ] = ",".join(TARGETS),
    start_rate: Annotated[float, typer.Option(help="First step of the ramp (req/s).")] = 25.0,
    max_rate: Annotated[float, typer.Option(help="Highest step the ramp may reach.")] = 1600.0,
    hold_s: Annotated[float, typer.Option(help="Seconds measured per step.")] = 10.0,
    settle_s: Annotated[float, typer.Option(help="Seconds per step before measuring.")] = 2.0,
    think_s: Annotated[float, typer.Option(help="Mean think time of a visitor.")] = 1.0,
    budget_ms: Annotated[float, typer.Option(help="The p99 each step must keep.")] = 80.0,
    workers: Annotated[int, typer.Option(help="Worker processes of the online API.")] = 1,
    target: Annotated[
        str | None,
        typer.Option(
            "--target", "--address", help="Load a running API at this URL instead of starting one."
        ),
    ] = None,
    server_pid: Annotated[
        int | None,
        typer.Option(help="With --target: the API's process here, for its CPU per request."),
    ] = None,
    generator: Annotated[
        str, typer.Option(help="locust (closed loop, visitors) or vegeta (open loop, compiled).")
    ] = "locust",
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke test: small data, bare and mix, 25-50 req/s.")
    ] = False,
    redis_url: Annotated[str, typer.Option(help="Redis.")] = "redis://127.0.0.1:6379/0",
    cassandra_url: Annotated[str, typer.Option(help="Cassandra.")] = "cassandra://127.0.0.1:9042",
    kafka_url: Annotated[str, typer.Option(help="Kafka (events).")] = "kafka://127.0.0.1:9092",
    embedded: Annotated[
        bool, typer.Option("--embedded", help="SQLite stores instead of the real services.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Latency p50/p95/p99 per offered rate, the highest rate under the budget and the API's
    CPU per answered request, per target."""
    settings = Settings()
    binary = _generator(generator, settings.cache_dir)
    _check_server_pid(target, server_pid)
    if quick:
        users, items, candidates, max_rate, hold_s, settle_s = 200, 1_000, 100, 50.0, 3.0, 1.0
        targets = ",".join(QUICK_TARGETS) if targets == ",".join(TARGETS) else targets
    chosen = [t.strip() for t in targets.split(",") if t.strip()]
    unknown = set(chosen) - set(TARGETS)
    if unknown or not chosen:
        raise typer.BadParameter(f"--targets: unknown {sorted(unknown)}; use {', '.join(TARGETS)}")
    if target:
        chosen = [t for t in chosen if t in ("full", "mix")] or ["mix"]
    if embedded and "floor" in chosen:
        raise typer.BadParameter("--targets floor reads Redis: not with --embedded")
    must_reach = max([r for r in online_report.REPORT_RATES if r <= max_rate] or [max_rate])
    shape = loadgen.Ramp(
        rates=ramp.doubling_rates(start_rate, max_rate, online_report.REPORT_RATES),
        think_s=think_s,
        settle_s=settle_s,
        hold_s=hold_s,
        warmup_s=2.0 if quick else 4.0,
        budget_ms=budget_ms,
        must_reach=must_reach,
    )
    folder = results_dir(settings, "online")
    params = {
        "users": users, "items": items, "dim": dim, "candidates": candidates,
        "targets": chosen, "rates": list(shape.rates), "hold_s": hold_s, "settle_s": settle_s,
        "think_s": think_s, "budget_ms": budget_ms, "workers": workers, "quick": quick,
        "target": target, "stores": "embedded" if embedded else "redis+cassandra+kafka",
        "generator": generator, "server_pid": server_pid,
    }  # fmt: skip
    figures: dict[str, Any] = {
        "benchmark": "online",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "params": params,
        "targets": {},
    }
    env = _environment(folder / "work", embedded, redis_url, cassandra_url, kafka_url)
    population = folder / "population.json"
    stores: AbstractContextManager[None] = (
        _stores(env, embedded, cassandra_url, kafka_url) if target is None else nullcontext()
    )
    with stores:
        if target is None:
            err_console.print(
                f"preparing a bundle, candidates and state for {users:,} users", markup=False
            )
            setup = online_data.prepare(
                env, users=users, items=items, dim=dim, per_user=candidates, population=population
            )
            figures["setup_s"] = round(setup, 1)
        else:  # a running API's users: the synthetic naming, nothing known about what they saw
            population.write_bytes(traffic.Population.synthetic(users, items).to_json())
        load = _loader(binary, shape, folder, population)
        for name in chosen:
            figures["targets"][name] = _one_target(
                name, folder, env=env, load=load, workers=workers, address=target,
                server_pid=server_pid,
            )  # fmt: skip
    _finish(folder, figures, budget_ms, json)


def _finish(folder: Path, figures: dict[str, Any], budget_ms: float, as_json: bool) -> None:
    targets = figures["targets"]
    figures["loadavg_end"] = list(os.getloadavg())
    figures["headline"] = {name: online_report.headline(t) for name, t in targets.items()}
    figures["capacity_ratio"] = online_report.capacity_ratio(figures["headline"])
    figures["floor_ratio"] = online_report.floor_ratio(figures["headline"])
    figures["failed_requests"] = sum(t["totals"]["failures"] for t in targets.values())
    files = online_report.write_csv(folder, targets)
    files += [
        plots.latency(folder / "latency.png", targets, budget_ms),
        plots.throughput(folder / "throughput.png", targets),
        plots.stages(folder / "stages.png", targets),
    ]
    figures["plots"] = [p.name for p in files if p.suffix == ".png"]
    figures["files"] = [*sorted(p.name for p in files), "results.json", "results.md"]
    figures["results_dir"] = str(folder)
    markdown = online_report.markdown(figures)
    # results.json keeps every step; --json prints the headline figures only
    short = {k: v for k, v in figures.items() if k != "targets"}
    finish(folder, figures, markdown, as_json, printed=short)


def _progress(name: str) -> Callable[[dict[str, Any]], None]:
    def show(step: dict[str, Any]) -> None:
        ends: dict[str, Any] = step["endpoints"]
        judged: dict[str, Any] = ends.get("home", ends.get("constant", {}))
        mark = "warm-up" if step["warmup"] else ("ok" if step["passed"] else "over budget")
        p99 = judged.get("p99_ms")
        cpu_ms = step.get("cpu", {}).get("cpu_ms_per_request")
        err_console.print(
            f"  {name:<12} {step['rate']:>6g} req/s offered, {step['all']['achieved_rate']:7.1f}"
            f" answered/s, p99 {'-' if p99 is None else f'{p99:.1f}'} ms,"
            f" CPU {'-' if cpu_ms is None else f'{cpu_ms:.2f}'} ms/request,"
            f" {step['all']['failures']} failed: {mark}",
            markup=False,
            soft_wrap=True,
        )

    return show


def _generator(generator: str, cache_dir: Path) -> Path | None:
    """vegeta's binary (None for locust); a missing one ends the command, saying how to get it."""
    if generator not in GENERATORS:
        raise typer.BadParameter(f"--generator: {generator!r}; use {' or '.join(GENERATORS)}")
    if generator == "locust":
        return None
    found = vegeta.binary(cache_dir)
    if found is None:
        err_console.print(
            f"error: vegeta not found in {cache_dir / 'bin'} or on PATH; install it with"
            f" `{vegeta.install_command(cache_dir)}`",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return found


def _check_server_pid(address: str | None, server_pid: int | None) -> None:
    """A running API's CPU needs its process, here; the benchmark knows the APIs it starts."""
    if server_pid is None:
        if address is not None:
            err_console.print(
                "note: no --server-pid for the API at --target: its CPU per request is not"
                " measured",
                markup=False,
                soft_wrap=True,
            )
        return
    if address is None:
        raise typer.BadParameter(
            "--server-pid goes with --target (the API this run starts is known)"
        )
    if cpu.tree_seconds(server_pid) is None:
        raise typer.BadParameter(f"--server-pid {server_pid}: no such process on this machine")


Load = Callable[[loadgen.Target], dict[str, Any]]


def _loader(binary: Path | None, shape: loadgen.Ramp, folder: Path, population: Path) -> Load:
    """One target's ramp, by the chosen generator, with progress on stderr."""

    def load(goal: loadgen.Target) -> dict[str, Any]:
        if binary is None:
            return loadgen.run(goal, shape, folder, population, _progress(goal.name))
        return vegeta_run.run(
            goal, shape, folder, population, binary=binary, on_step=_progress(goal.name)
        )

    return load


def _one_target(
    name: str,
    folder: Path,
    *,
    env: dict[str, str],
    load: Load,
    workers: int,
    address: str | None,
    server_pid: int | None,
) -> dict[str, Any]:
    err_console.print(f"{name}: starting", markup=False)
    if name == "bare":
        with _server("bare", _bare_argv, env, folder, "/constant") as (host, pid):
            goal = loadgen.Target(name, host, "ConstantVisitor", {"constant": 1}, "constant",
                                  label="bare FastAPI endpoint", server_pid=pid)  # fmt: skip
            return load(goal) | {"impressions": None}
    if name == "floor":  # the full path's stores and bundle, none of its logic
        from recsys.bench import floor  # imports FastAPI: only when it runs

        with _server("floor", _floor_argv(workers), env, folder, "/healthz") as (host, pid):
            goal = loadgen.Target(name, host, "Visitor", traffic.HOME_ONLY, "home",
                                  label=floor.LABEL, server_pid=pid)  # fmt: skip
            return load(goal) | {"impressions": "off"}
    label, extra = STAGES[name]
    mix = traffic.MIX if name == "mix" else traffic.HOME_ONLY
    if address is not None:
        _wait(f"{address.rstrip('/')}/readyz", None)
        goal = loadgen.Target(name, address.rstrip("/"), "Visitor", mix, "home",
                              f"{address.rstrip('/')}/metrics", label, server_pid)  # fmt: skip
        return load(goal) | {"impressions": "as the running API is set"}
    stage_env = {**env, **_DEFAULTS, **extra}

    def argv(port: int) -> list[str]:
        recsys = str(Path(sys.executable).with_name("recsys"))
        return [recsys, "online", "serve", "--port", str(port), "--workers", str(workers)]

    with _server(name, argv, stage_env, folder, "/readyz") as (host, pid):
        # each worker process keeps its own /metrics: two scrapes may reach different ones
        metrics = f"{host}/metrics" if workers == 1 else None
        goal = loadgen.Target(name, host, "Visitor", mix, "home", metrics, label, pid)
        return load(goal) | {"impressions": "on"}


def _floor_argv(workers: int) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "--factory", "recsys.bench.floor:floor_app",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning",
            "--no-access-log",
        ]  # fmt: skip

    return argv


def _bare_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "recsys.bench.online:bare_app",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


@contextmanager
def _server(
    name: str, argv: Callable[[int], list[str]], env: dict[str, str], folder: Path, ready: str
) -> Iterator[tuple[str, int]]:
    """The server's address and process id while it answers ``ready``."""
    port = _free_port()
    host = f"http://127.0.0.1:{port}"
    with (folder / f"{name}.log").open("wb") as log:
        server = subprocess.Popen(argv(port), env={**os.environ, **env}, stdout=log, stderr=log)
        try:
            _wait(host + ready, server)
            yield host, server.pid
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def bare_app() -> Any:
    """A FastAPI app answering a constant JSON body: the floor under every endpoint."""
    from fastapi import FastAPI

    app = FastAPI()
    body = {"items": [{"item_id": f"i{j}", "score": 1.0} for j in range(10)]}

    @app.get("/constant")
    def constant() -> dict[str, Any]:
        return body

    return app


def _environment(
    work: Path, embedded: bool, redis_url: str, cassandra_url: str, kafka_url: str
) -> dict[str, str]:
    tag = secrets.token_hex(3)
    return {
        "RECSYS_HOME": str(work),
        "RECSYS_REGISTRY_URL": f"file://{work}/models",
        "RECSYS_HISTORY_URL": f"sqlite:///{work}/history.db",
        # as served, whatever this shell says: an impression event per answer
        "RECSYS_LOG_IMPRESSIONS": "true",
        "RECSYS_EVENT_LOG_URL": f"sqlite:///{work}/event-log.db"
        if embedded
        else f"{kafka_url.rstrip('/')}/bench_online_{tag}",
        "RECSYS_USER_STATE_URL": f"sqlite:///{work}/user-state.db"
        if embedded
        else f"{redis_url}?namespace=bench_{tag}",
        "RECSYS_CANDIDATES_URL": f"sqlite:///{work}/candidates.db"
        if embedded
        else f"{cassandra_url.rstrip('/')}/bench_online_{tag}",
    }


@contextmanager
def _stores(
    env: dict[str, str], embedded: bool, cassandra_url: str, kafka_url: str
) -> Iterator[None]:
    """The run's event topic exists while it runs; its keyspace and topic go after."""
    from shared.storage.factory import open_event_log

    log = open_event_log(env["RECSYS_EVENT_LOG_URL"])
    try:
        log.init_schema()
    finally:
        log.close()
    try:
        yield
    finally:
        if not embedded:
            _drop(cassandra_url, env["RECSYS_CANDIDATES_URL"].rsplit("/", 1)[1], kafka_url,
                  env["RECSYS_EVENT_LOG_URL"].rsplit("/", 1)[1])  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, server: subprocess.Popen[bytes] | None, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with {server.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def _drop(cassandra_url: str, keyspace: str, kafka_url: str, topic: str) -> None:
    """A benchmark's leftovers must not hide its figures: warn, never raise."""
    try:
        from shared.storage.cassandra.connection import connect, parse_cassandra_url

        cluster, session = connect("bench", cassandra_url, parse_cassandra_url(cassandra_url))
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
    except Exception as err:
        console.print(f"[yellow]warning:[/] keyspace {keyspace} not dropped: {err}")
    try:
        from kafka import KafkaAdminClient

        from shared.storage.kafka_log import parse_kafka_url

        servers, _ = parse_kafka_url(f"{kafka_url.rstrip('/')}/{topic}")
        admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5000)
        try:
            # the run's topic (events and impressions) and any the API derived from its name
            ours = [t for t in admin.list_topics() if t == topic or t.startswith(f"{topic}.")]
            admin.delete_topics(ours or [topic])
        finally:
            admin.close()
    except Exception as err:
        console.print(f"[yellow]warning:[/] topic {topic} not deleted: {err}")
