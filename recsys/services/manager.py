"""Bring local services up and down and say how they are, whatever state they were left in.

``up`` is idempotent: a service of ours that answers its protocol is left alone, one still
starting is waited for, and a server someone else runs on our address counts as running
(external). Services start concurrently: Cassandra alone takes most of the wall time.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from recsys.services.base import Service, ServiceError, State, Status
from recsys.services.cassandra import Cassandra
from recsys.services.kafka import Kafka
from recsys.services.proc import (
    exclusive,
    is_alive,
    is_ours,
    log_tail,
    port_open,
    read_pid,
    remove_pid,
    rotate_log,
    spawn_detached,
    stop_session,
    write_pid,
)
from recsys.services.prometheus import Prometheus, PrometheusConfig
from recsys.services.redis_server import Redis
from shared.errors import RecsysError

if TYPE_CHECKING:
    from shared.settings import Settings

SERVICE_NAMES: tuple[str, ...] = ("kafka", "cassandra", "redis")  # `up` with no names
OPTIONAL_NAMES: tuple[str, ...] = ("prometheus",)  # started only when named
ALL_NAMES: tuple[str, ...] = SERVICE_NAMES + OPTIONAL_NAMES
# Poll quickly at first (Redis is up in milliseconds), then back off for the slow JVMs.
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 0.5

T = TypeVar("T")


class Action(StrEnum):
    STARTED = "started"
    RUNNING = "already running"
    EXTERNAL = "external"
    STOPPED = "stopped"
    KILLED = "killed"
    NOT_RUNNING = "not running"


@dataclass(frozen=True)
class Outcome:
    """What ``up`` or ``down`` did to one service."""

    status: Status
    action: Action
    seconds: float
    purged: bool = False


def _make(name: str, state_dir: Path, cache_dir: Path, settings: Settings | None) -> Service:
    if name == "prometheus":
        config = PrometheusConfig.from_settings(settings) if settings else None
        return Prometheus(state_dir, cache_dir, config)
    factory: Callable[[Path, Path], Service] = {
        "kafka": Kafka,
        "cassandra": Cassandra,
        "redis": Redis,
    }[name]
    return factory(state_dir, cache_dir)


def make_services(
    names: Sequence[str] | None,
    state_dir: Path,
    cache_dir: Path,
    settings: Settings | None = None,
) -> list[Service]:
    """Services by name, in the canonical order. No names: the default ones, and the
    optional ones (Prometheus) only while one of ours runs, so that a bare ``status`` or
    ``down`` covers what ``up`` started without requiring what it never started."""
    unknown = [n for n in names or () if n not in ALL_NAMES]
    if unknown:
        raise ServiceError(f"unknown service {unknown[0]!r}; choose from {', '.join(ALL_NAMES)}")
    if names:
        wanted = set(names)
    else:
        optional = [_make(n, state_dir, cache_dir, settings) for n in OPTIONAL_NAMES]
        running = {s.name for s in optional if is_ours(read_pid(s.pid_path), s.marker)}
        wanted = set(SERVICE_NAMES) | running
    return [_make(n, state_dir, cache_dir, settings) for n in ALL_NAMES if n in wanted]


def _probe(svc: Service) -> tuple[bool, str | None, str]:
    """(answers, version, why not). Any exception means "not answering": the drivers raise
    a zoo of types for refused, reset and half-started servers."""
    try:
        return True, svc.probe(), ""
    except Exception as err:
        return False, None, f"{type(err).__name__}: {err}".strip().splitlines()[0]


def inspect(svc: Service) -> Status:
    """How ``svc`` is now, from its pid file, its process and a protocol round trip."""
    pid = read_pid(svc.pid_path)
    ours = is_ours(pid, svc.marker)
    listening = port_open(svc.host, svc.port)
    ok, version, why = _probe(svc) if listening else (False, None, f"nothing on {svc.address}")
    if ours:
        if ok:
            return Status(svc.name, svc.address, State.HEALTHY, pid, version or svc.pinned_version)
        return Status(svc.name, svc.address, State.UNHEALTHY, pid, None, why)
    if ok:
        return Status(svc.name, svc.address, State.EXTERNAL, None, version, "not started by recsys")
    if listening:
        return Status(
            svc.name,
            svc.address,
            State.UNHEALTHY,
            None,
            None,
            f"{svc.address} is held by another program that does not answer {svc.protocol}",
        )
    return Status(svc.name, svc.address, State.STOPPED)


def wait_ready(svc: Service, pid: int) -> str | None:
    """Poll the protocol until it answers; fail fast if the process dies meanwhile."""
    deadline = time.monotonic() + svc.ready_timeout_s
    why = f"nothing on {svc.address}"
    pause = _POLL_FIRST_S
    while True:
        if not is_alive(pid):
            raise ServiceError(
                f"{svc.name} ({svc.address}) exited during start-up; log {svc.log_path} ends: "
                f"{log_tail(svc.log_path)}"
            )
        if port_open(svc.host, svc.port):
            ok, version, why = _probe(svc)
            if ok:
                return version or svc.pinned_version
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{svc.name} ({svc.address}) did not answer {svc.protocol} within "
                f"{svc.ready_timeout_s:.0f} s ({why}); log {svc.log_path} ends: "
                f"{log_tail(svc.log_path)}"
            )
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_S)


def _spawn(svc: Service) -> int:
    remove_pid(svc.pid_path)  # stale, if any: its process is gone or is no longer ours
    svc.home.mkdir(parents=True, exist_ok=True)
    rotate_log(svc.log_path)
    argv = svc.prepare()
    if svc.niceness:  # nice execs the server: the pid is still the server's own
        argv = [shutil.which("nice") or "/usr/bin/nice", "-n", str(svc.niceness), *argv]
    pid = spawn_detached(argv, svc.log_path, svc.env())
    write_pid(svc.pid_path, pid)
    return pid


def up_one(svc: Service) -> Outcome:
    start = time.monotonic()
    # From looking to writing the pid file, one `up` at a time: two would both see "stopped",
    # both spawn, and the second pid file would orphan the first server.
    with exclusive(svc.home.with_name(f".{svc.name}.lock")):
        now = inspect(svc)
        if now.state is State.HEALTHY:
            return Outcome(now, Action.RUNNING, time.monotonic() - start)
        if now.state is State.EXTERNAL:
            return Outcome(now, Action.EXTERNAL, time.monotonic() - start)
        if now.state is State.UNHEALTHY and now.pid is None:
            raise ServiceError(f"{svc.name}: {now.detail}")
        # Ours but not answering yet (most likely another `up` is starting it): wait for it.
        started = now.pid is None
        pid = _spawn(svc) if now.pid is None else now.pid
    try:
        version = wait_ready(svc, pid)
    except ServiceError:
        if started:
            # Leave no half-started server holding memory and ports behind a failed `up`.
            stop_session(pid, 10.0)
            remove_pid(svc.pid_path)
        raise
    status = Status(svc.name, svc.address, State.HEALTHY, pid, version)
    action = Action.STARTED if started else Action.RUNNING
    return Outcome(status, action, time.monotonic() - start)


def down_one(svc: Service, purge: bool = False) -> Outcome:
    start = time.monotonic()
    pid = read_pid(svc.pid_path)
    if pid is not None and is_ours(pid, svc.marker):
        graceful = stop_session(pid, svc.stop_timeout_s)
        action = Action.STOPPED if graceful else Action.KILLED
    else:
        action = Action.NOT_RUNNING
    remove_pid(svc.pid_path)
    state, detail = State.STOPPED, ""
    if action is Action.NOT_RUNNING and port_open(svc.host, svc.port):
        state, detail = State.EXTERNAL, "not started by recsys: left running"
    if purge and svc.data_dir.exists():
        shutil.rmtree(svc.data_dir)
    status = Status(svc.name, svc.address, state, None, None, detail)
    return Outcome(status, action, time.monotonic() - start, purged=purge)


def kill_one(svc: Service) -> Outcome:
    """SIGKILL the server (its whole process group), as a machine that loses power would:
    no shutdown hook, no flush. Its data stays for the next ``up``."""
    start = time.monotonic()
    pid = read_pid(svc.pid_path)
    action = Action.NOT_RUNNING
    if pid is not None and is_ours(pid, svc.marker):
        stop_session(pid, 0.0, sig=signal.SIGKILL)
        action = Action.KILLED
    remove_pid(svc.pid_path)
    status = Status(svc.name, svc.address, State.STOPPED)
    return Outcome(status, action, time.monotonic() - start)


def _each(
    services: Sequence[Service],
    work: Callable[[Service], T],
    on_done: Callable[[Service, T | RecsysError], None] | None = None,
) -> list[T | RecsysError]:
    """Run ``work`` on every service at once; a RecsysError is a result, not an abort."""
    if not services:
        return []
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="svc") as pool:
        return list(pool.map(lambda svc: _result(svc, work, on_done), services))


def _result(
    svc: Service,
    work: Callable[[Service], T],
    on_done: Callable[[Service, T | RecsysError], None] | None,
) -> T | RecsysError:
    """``work(svc)``, or the RecsysError it raised, told to ``on_done`` first."""
    try:
        result: T | RecsysError = work(svc)
    except RecsysError as err:
        result = err
    if on_done is not None:
        on_done(svc, result)
    return result


def _chains(services: Sequence[Service]) -> list[list[Service]]:
    """The services in groups that start one after the other: the nodes of a service that
    wants it (``one_at_a_time``, Cassandra) together, every other service on its own."""
    chains: list[list[Service]] = []
    serial: dict[str, list[Service]] = {}
    for svc in services:
        if svc.one_at_a_time:
            if svc.name not in serial:
                serial[svc.name] = []
                chains.append(serial[svc.name])
            serial[svc.name].append(svc)
        else:
            chains.append([svc])
    return chains


def up(
    services: Sequence[Service],
    on_done: Callable[[Service, Outcome | RecsysError], None] | None = None,
) -> list[Outcome | RecsysError]:
    """Start every chain (:func:`_chains`) at once, the services of a chain in order;
    results in the order of ``services``."""
    chains = _chains(services)
    if not chains:
        return []
    with ThreadPoolExecutor(max_workers=len(chains), thread_name_prefix="svc") as pool:
        done = list(
            pool.map(lambda chain: [(s, _result(s, up_one, on_done)) for s in chain], chains)
        )
    by_service = {id(s): r for chain in done for s, r in chain}
    return [by_service[id(s)] for s in services]


def down(
    services: Sequence[Service],
    purge: bool = False,
    on_done: Callable[[Service, Outcome | RecsysError], None] | None = None,
) -> list[Outcome | RecsysError]:
    return _each(services, lambda svc: down_one(svc, purge), on_done)


def status(services: Sequence[Service]) -> list[Status]:
    results = _each(services, inspect)
    # inspect raises no RecsysError of its own; keep the type honest anyway.
    return [
        r if isinstance(r, Status) else Status(s.name, s.address, State.UNHEALTHY, detail=str(r))
        for s, r in zip(services, results, strict=True)
    ]
