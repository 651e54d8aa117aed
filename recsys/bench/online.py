"""``recsys bench online``: recommendation latency under load, beside a bare FastAPI endpoint.

Against the real services by default (``--redis-url``, ``--cassandra-url``; ``--embedded``
for SQLite stores), each run on a Redis namespace and keyspace of its own (the keyspace is
dropped after), with a synthetic bundle of its own: ``--items`` items, a ranker over three
generators, precomputed candidates (with their feature rows) and recent items for
``--users`` users.

Two servers run as subprocesses, one uvicorn process each: ``recsys online serve`` and a
bare FastAPI app answering a constant (what HTTP, JSON and uvicorn cost on their own). An
open-loop client sends requests at fixed rates (each at its scheduled time, whether or not
earlier ones answered, so a slow server cannot slow the load down) and measures latency
from the scheduled time to the answer: p50/p95/p99 at each rate of ``--rates``, then the
highest rate (doubling from 25/s) with p99 under ``--target-ms``. The client (a minimal
keep-alive HTTP/1.1 client on asyncio streams, far cheaper than httpx) runs on the same
machine and takes CPU from the server; the bare endpoint shows that ceiling.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import numpy as np
import typer

from recsys.bench.results import finish, machine, results_dir
from recsys.console import console
from shared.settings import Settings

MEMBERS = ("ease", "als", "covisit")
TOP_N = 50
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def command(
    *,
    users: Annotated[int, typer.Option(help="Users with candidates and recent items.")] = 2_000,
    items: Annotated[int, typer.Option(help="Items in the synthetic bundle.")] = 5_000,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 32,
    candidates: Annotated[int, typer.Option(help="Precomputed candidates per user.")] = 200,
    rates: Annotated[str, typer.Option(help="Comma-separated request rates (req/s).")] = "50,200",
    seconds: Annotated[float, typer.Option(help="Seconds of load at each rate.")] = 5.0,
    max_rate: Annotated[int, typer.Option(help="Highest rate the search tries.")] = 1600,
    target_ms: Annotated[float, typer.Option(help="The p99 the search must keep.")] = 80.0,
    workers: Annotated[int, typer.Option(help="Worker processes of the online API.")] = 1,
    redis_url: Annotated[str, typer.Option(help="Redis.")] = "redis://127.0.0.1:6379/0",
    cassandra_url: Annotated[str, typer.Option(help="Cassandra.")] = "cassandra://127.0.0.1:9042",
    embedded: Annotated[
        bool, typer.Option("--embedded", help="SQLite stores instead of Redis and Cassandra.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Latency p50/p95/p99 per rate and the highest rate with p99 under the target."""
    settings = Settings()
    folder = results_dir(settings, "online")
    work = folder / "work"
    tag = secrets.token_hex(3)
    keyspace = f"bench_online_{tag}"
    env = {
        "RECSYS_HOME": str(work),
        "RECSYS_REGISTRY_URL": f"file://{work}/models",
        "RECSYS_EVENT_LOG_URL": f"sqlite:///{work}/event-log.db",
        "RECSYS_HISTORY_URL": f"sqlite:///{work}/history.db",
        "RECSYS_LOG_IMPRESSIONS": "false",
        "RECSYS_USER_STATE_URL": f"sqlite:///{work}/user-state.db"
        if embedded
        else f"{redis_url}?namespace=bench_{tag}",
        "RECSYS_CANDIDATES_URL": f"sqlite:///{work}/candidates.db"
        if embedded
        else f"{cassandra_url.rstrip('/')}/{keyspace}",
    }
    params = {
        "users": users,
        "items": items,
        "dim": dim,
        "candidates": candidates,
        "rates": rates,
        "seconds": seconds,
        "target_ms": target_ms,
        "workers": workers,
        "stores": "embedded" if embedded else "redis+cassandra",
    }
    figures: dict[str, Any] = {"machine": machine(), "params": params}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        figures["setup_s"] = _prepare(env, users, items, dim, candidates)
        api, bare = _free_port(), _free_port()
        serve = ["recsys", "online", "serve", "--port", str(api), "--workers", str(workers)]
        servers.append(_serve(serve, env, folder))
        bare_cmd = [
            "-m", "uvicorn", "--factory", "recsys.bench.online:bare_app",
            "--port", str(bare), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        servers.append(_serve(bare_cmd, env, folder, python=True))
        _wait(f"http://127.0.0.1:{api}/readyz")
        _wait(f"http://127.0.0.1:{bare}/constant")
        targets = {
            "online": (f"http://127.0.0.1:{api}", [f"/v1/users/u{u}/recommendations" for u in range(users)]),
            "bare": (f"http://127.0.0.1:{bare}", ["/constant"]),
        }  # fmt: skip
        for name, (base, paths) in targets.items():
            asyncio.run(_load(base, paths, 20.0, 2.0))  # warm-up
            figures[name] = {
                "rates": [
                    asyncio.run(_load(base, paths, float(r), seconds))
                    for r in rates.split(",")
                    if r
                ],
                "max_rate": _search(base, paths, seconds, max_rate, target_ms),
            }
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        if not embedded:
            _drop_keyspace(cassandra_url, keyspace)
    finish(folder, figures, _markdown(figures), json)


def bare_app() -> Any:
    """A FastAPI app answering a constant JSON body: the floor under every endpoint."""
    from fastapi import FastAPI

    app = FastAPI()
    body = {"items": [{"item_id": f"i{j}", "score": 1.0} for j in range(10)]}

    @app.get("/constant")
    def constant() -> dict[str, Any]:
        return body

    return app


def _prepare(env: dict[str, str], users: int, items: int, dim: int, per_user: int) -> float:
    """Bundle, candidates with features and user state; returns the seconds it took."""
    from shared.registry import ModelRegistry
    from shared.storage.factory import open_candidates, open_user_state
    from shared.storage.user_state import StateEvent

    started = time.perf_counter()
    rng = np.random.default_rng(7)
    registry = ModelRegistry(env["RECSYS_REGISTRY_URL"])
    version = synthetic_bundle(registry, items, dim, rng)
    store = open_candidates(env["RECSYS_CANDIDATES_URL"])
    try:
        store.init_schema()
        store.write(version, _candidates(rng, users, items, per_user))
        store.activate(version)
    finally:
        store.close()
    registry.promote(version)
    state = open_user_state(env["RECSYS_USER_STATE_URL"], ttl_s=3600, recent_cap=50)
    try:
        state.init_schema()
        now = time.time()
        events = [
            StateEvent(f"b{u}-{j}", f"u{u}", f"i{item}", "play", now - j)
            for u in range(users)
            for j, item in enumerate(rng.integers(0, items, 10).tolist())
        ]
        for start in range(0, len(events), 5000):
            state.apply_events(events[start : start + 5000], half_life_s=1800)
    finally:
        state.close()
    return time.perf_counter() - started


def synthetic_bundle(registry: Any, items: int, dim: int, rng: np.random.Generator) -> str:
    """A bundle with every file the online tier reads; the ranker starts from a blend prior."""
    import pandas as pd

    from shared import bundle as layout
    from shared.bundle import Embeddings, write_embeddings
    from shared.index import build_index
    from shared.ranker import FeatureSpec, Ranker, feature_names

    ids = [f"i{j}" for j in range(items)]
    vectors = rng.normal(size=(items, dim)).astype(np.float32)
    names = feature_names(MEMBERS)
    prior = {"ease_z": 1.0, "als_z": 2.0, "covisit_z": 0.5}
    spec = FeatureSpec(
        names,
        (0.0,) * len(names),
        (1.0,) * len(names),
        (64, 32),
        TOP_N,
        tuple(prior.get(n, 0.0) for n in names),
    )
    genres = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Horror")
    counts = (1e5 / np.arange(1, items + 1) ** 0.8).astype(np.int64)
    with registry.create(None, "bench-online", {"items": items, "dim": dim}) as bundle:
        write_embeddings(
            bundle.path, layout.ITEM_IDS, layout.ITEM_VECTORS, Embeddings(ids, vectors)
        )
        write_embeddings(
            bundle.path, layout.USER_IDS, layout.USER_VECTORS, Embeddings(["u0"], vectors[:1])
        )
        build_index(vectors).save(bundle.path / layout.INDEX_DIR)
        Ranker.new(spec, device="cpu").save(bundle.path / layout.RANKER_DIR)
        pd.DataFrame(
            {
                "item_id": ids,
                "title": [f"Title {i}" for i in ids],
                "year": 2000 + np.arange(items) % 25,
                "genres": [[genres[j % len(genres)]] for j in range(items)],
                "n_interactions": counts,
                "popularity_rank": np.arange(1, items + 1),
                "trending_score": np.where(np.arange(items) % 9 == 0, counts / 10, 0.0),
            }
        ).to_parquet(bundle.path / layout.CATALOGUE, index=False)
        version: str = bundle.version
    return version


def _candidates(rng: np.random.Generator, users: int, items: int, n: int) -> Any:
    from shared.ranker import assemble_features
    from shared.storage.candidates import Candidates

    for u in range(users):
        picks = rng.choice(items, n, replace=False)
        z = {m: rng.normal(size=(1, n)) for m in MEMBERS}
        rank = {m: rng.integers(0, TOP_N + 10, size=(1, n)) for m in MEMBERS}
        features = assemble_features(
            MEMBERS,
            z=z,
            rank=rank,
            item_popularity=(1e5 / (picks + 1) ** 0.8).astype(np.int64)[None, :],
            history=np.asarray([20]),
            top_n=TOP_N,
        )[0]
        scores = features[:, 0] + 2 * features[:, 3] + 0.5 * features[:, 6]
        order = np.argsort(-scores)
        yield Candidates(
            f"u{u}",
            [f"i{picks[j]}" for j in order],
            [float(scores[j]) for j in order],
            ["ease+als"] * n,
            features[order],
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(
    argv: list[str], env: dict[str, str], folder: Path, python: bool = False
) -> subprocess.Popen[bytes]:
    exe = [sys.executable] if python else [str(Path(sys.executable).with_name(argv[0]))]
    args = exe + (argv if python else argv[1:])
    log = (folder / f"{'bare' if python else 'online'}.log").open("wb")
    return subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=log)


def _wait(url: str, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f} s")


class _Client:
    """A minimal HTTP/1.1 keep-alive GET client on asyncio streams: a load generator must
    cost far less than the server it measures (httpx costs about a millisecond of CPU per
    request, which on a small machine caps the rate before the server does)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        found = _LENGTH.search(head)
        body = await reader.readexactly(int(found.group(1))) if found else b""
        self._idle.append((reader, writer))
        return int(head[9:12]), body

    def close(self) -> None:
        for writer in self._all:
            writer.close()


async def _load(base: str, paths: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i goes out at ``i / rate``; latency from that moment to the answer."""
    n = max(int(rate * seconds), 1)
    latencies: list[float] = []
    errors = 0
    degraded = 0
    client = _Client(base)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int) -> None:
        nonlocal errors, degraded
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        try:
            status, body = await asyncio.wait_for(client.get(paths[i % len(paths)]), 10)
            if status != 200:
                errors += 1
            elif b'"degraded":true' in body:
                degraded += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        latencies.append((loop.time() - scheduled) * 1000)

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        client.close()
    elapsed = loop.time() - start
    return {
        "rate": rate,
        "requests": n,
        "achieved_rate": n / elapsed if elapsed > 0 else 0.0,
        "errors": errors,
        "degraded": degraded,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def _search(
    base: str, paths: list[str], seconds: float, max_rate: int, target_ms: float
) -> dict[str, Any]:
    """Double the rate from 25/s until p99 passes the target, errors appear or max_rate."""
    best: dict[str, Any] | None = None
    rate = 25
    while rate <= max_rate:
        result = asyncio.run(_load(base, paths, float(rate), seconds))
        if result["p99_ms"] >= target_ms or result["errors"]:
            break
        best = result
        rate *= 2
    return best or {"rate": 0, "note": f"p99 >= {target_ms} ms already at 25 req/s"}


def _drop_keyspace(cassandra_url: str, keyspace: str) -> None:
    try:
        from shared.storage.cassandra.connection import connect, parse_cassandra_url

        cluster, session = connect("bench", cassandra_url, parse_cassandra_url(cassandra_url))
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
    except Exception as err:  # a benchmark's leftovers must not hide its figures
        console.print(f"[yellow]warning:[/] keyspace {keyspace} not dropped: {err}")


def _markdown(figures: dict[str, Any]) -> str:
    p = figures["params"]
    lines = [
        "# recsys bench online",
        "",
        f"{p['users']:,} users, {p['items']:,} items (d={p['dim']}), {p['candidates']}"
        f" precomputed candidates per user, stores: {p['stores']}, {p['seconds']:.0f} s per"
        f" rate, {p['workers']} API worker(s); machine: {figures['machine']['cpus']} CPUs.",
        "",
        "| endpoint | rate (req/s) | achieved | p50 ms | p95 ms | p99 ms | errors | degraded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("online", "bare"):
        for r in figures.get(name, {}).get("rates", []):
            lines.append(
                f"| {name} | {r['rate']:.0f} | {r['achieved_rate']:.0f} | {r['p50_ms']:.1f} |"
                f" {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['degraded']} |"
            )
    lines.append("")
    for name in ("online", "bare"):
        best = figures.get(name, {}).get("max_rate")
        if best:
            lines.append(
                f"- {name}: highest rate with p99 < {p['target_ms']:.0f} ms: "
                f"{best['rate']:.0f} req/s"
                + (f" (p99 {best['p99_ms']:.1f} ms)" if "p99_ms" in best else "")
            )
    return "\n".join(lines) + "\n"
