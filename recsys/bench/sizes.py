"""``recsys bench sizes``: what the stores hold per user and per event, measured on the real
Redis and Cassandra, for the capacity plan (``recsys plan``).

- Redis: users with 10, 100, 1,000 and 8,192 events each (a session vector of ``--dim`` floats)
  written by the worker's own script; ``MEMORY USAGE`` of each user's three keys (state
  hash, recent set, dedupe set). Not a line: Redis keeps a small set compactly (a listpack
  up to 128 members) and a large one as a skip list, so the plan interpolates between the
  measured points; the dedupe set holds at most ``DEDUPE_WINDOW`` (8,192) ids, the last
  point.
- Cassandra: candidate lists as the offline job writes them (``--candidates`` per user,
  with their feature rows) and history events, in a keyspace of the run's own; the tables
  flushed to disk (``nodetool flush`` through the node's JMX port, as the launcher starts
  it) and their SSTable files' size read from the data directory: bytes on disk per
  candidate list and per event, compressed as Cassandra stores them, one replica.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from recsys.bench.results import finish, machine, results_dir
from shared.settings import Settings

EVENT_COUNTS = (10, 100, 1000, 8192)  # 8,192: the dedupe window, a user's most


def redis_sizes(redis_url: str, dim: int, users: int = 50) -> dict[str, Any]:
    """Bytes per user state at each event count, and the line through them."""
    import redis

    from shared.storage.redis_state import RedisUserStateStore
    from shared.storage.user_state import StateEvent

    namespace = f"sizes_{secrets.token_hex(3)}"
    store = RedisUserStateStore(f"{redis_url}?namespace={namespace}", 3600, 50)
    client = redis.Redis.from_url(redis_url)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, dim)).astype(np.float32)
    per_user: dict[int, float] = {}
    try:
        for n in EVENT_COUNTS:
            events = [
                StateEvent(
                    f"{secrets.token_hex(8)}-{u}-{i}",  # 19-22 characters, like a client's ids
                    f"n{n}-u{u}",
                    f"i{(u * 7 + i) % 500}",
                    ("play", "click", "skip")[i % 3],
                    1.7e9 + i,
                    vectors[(u + i) % 500],
                )
                for u in range(users)
                for i in range(n)
            ]
            for start in range(0, len(events), 2000):
                store.apply_events(events[start : start + 2000], 1800.0)
            sizes = []
            for u in range(users):
                keys = [*store._keys(f"n{n}-u{u}"), store._seen_key(f"n{n}-u{u}")]
                sizes.append(sum(int(client.memory_usage(k) or 0) for k in keys))
            per_user[n] = float(np.mean(sizes))
    finally:
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)
        client.close()
        store.close()
    return {
        "dim": dim,
        "bytes_per_user": {str(n): round(v) for n, v in per_user.items()},
    }


def cassandra_sizes(
    cassandra_url: str, *, candidates: int, events: int, users: int, cache_dir: Path, jmx_port: int
) -> dict[str, Any]:
    """Bytes on disk per candidate list and per history event, one replica."""
    from recsys.bench.online_data import _candidates
    from shared.events import Event, EventType
    from shared.storage.cassandra.connection import connect, parse_cassandra_url
    from shared.storage.factory import open_candidates, open_history

    keyspace = f"sizes_{secrets.token_hex(3)}"
    url = f"{cassandra_url.rstrip('/')}/{keyspace}"
    cluster, session = connect("sizes", cassandra_url, parse_cassandra_url(cassandra_url))
    try:
        store = open_candidates(url)
        try:
            store.init_schema()
            store.write("v1", _candidates(np.random.default_rng(0), users, 5_000, candidates))
        finally:
            store.close()
        history = open_history(url)
        try:
            history.init_schema()
            kinds = (EventType.PLAY, EventType.CLICK, EventType.SKIP)
            batch = [
                Event(
                    user_id=f"u{i % 5000}",
                    item_id=f"i{(i * 13) % 20000}",
                    type=kinds[i % 3],
                    timestamp=1.7e9 + i,
                    context={"device": "tv"},
                )
                for i in range(events)
            ]
            for start in range(0, len(batch), 5000):
                history.append(batch[start : start + 5000])
        finally:
            history.close()
        _flush(cache_dir, jmx_port, keyspace)
        rows = session.execute(
            "SELECT value FROM system_views.settings WHERE name = 'data_file_directories'"
        ).one()
        folders = [Path(p.strip()) for p in str(rows.value).strip("[]").split(",") if p.strip()]
        tables = _table_bytes(folders, keyspace)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
    candidate_bytes = sum(v for k, v in tables.items() if "candidate" in k)
    history_bytes = sum(v for k, v in tables.items() if "event" in k or "history" in k)
    return {
        "tables_bytes": tables,
        "candidates_per_user": candidates,
        "bytes_per_candidate_list": round(candidate_bytes / users),
        "bytes_per_history_event": round(history_bytes / events, 1),
    }


def _flush(cache_dir: Path, jmx_port: int, keyspace: str) -> None:
    """``nodetool flush KEYSPACE`` with the launcher's Cassandra jars."""
    from recsys.services.cassandra import JAVA17_MODULE_FLAGS, Cassandra
    from recsys.services.jvm import find_java

    jars = cache_dir / "jars" / f"cassandra-{Cassandra(Path('.'), cache_dir).pinned_version}"
    done = subprocess.run(
        [find_java(), *JAVA17_MODULE_FLAGS, "-cp", f"{jars}/*",
         "org.apache.cassandra.tools.NodeTool", "-h", "127.0.0.1", "-p", str(jmx_port),
         "flush", keyspace],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"nodetool flush on JMX port {jmx_port} failed: {tail}")
    time.sleep(1.0)


def _table_bytes(folders: list[Path], keyspace: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for folder in folders:
        for table in (folder / keyspace).glob("*"):
            name = table.name.split("-")[0]
            sizes[name] = sizes.get(name, 0) + sum(
                f.stat().st_size for f in table.rglob("*") if f.is_file()
            )
    if not sizes:
        raise RuntimeError(f"no SSTables of {keyspace} under {', '.join(map(str, folders))}")
    return sizes


def command(
    *,
    redis_url: Annotated[str, typer.Option(help="Redis.")] = "redis://127.0.0.1:6379/0",
    cassandra_url: Annotated[str, typer.Option(help="Cassandra.")] = "cassandra://127.0.0.1:9042",
    jmx_port: Annotated[int, typer.Option(help="Cassandra's JMX port (nodetool).")] = 7199,
    dim: Annotated[int, typer.Option(help="Session vector dimension.")] = 64,
    candidates: Annotated[int, typer.Option(help="Candidates per user.")] = 200,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Bytes per user state (Redis) and per candidate list and event (Cassandra)."""
    settings = Settings()
    folder = results_dir(settings, "sizes")
    figures = {
        "machine": machine(),
        "redis": redis_sizes(redis_url, dim),
        "cassandra": cassandra_sizes(
            cassandra_url,
            candidates=candidates,
            events=50_000,
            users=1_000,
            cache_dir=settings.cache_dir,
            jmx_port=jmx_port,
        ),
    }
    r, c = figures["redis"], figures["cassandra"]
    markdown = "\n".join(
        [
            "# Sizes",
            "",
            "| what | bytes |",
            "| --- | --- |",
            *(
                f"| Redis: one user with {n} events (session vector of {dim} floats) | {v:,} |"
                for n, v in r["bytes_per_user"].items()
            ),
            f"| Cassandra: one candidate list of {candidates} (on disk, one replica) "
            f"| {c['bytes_per_candidate_list']:,} |",
            f"| Cassandra: one history event (on disk, one replica) | {c['bytes_per_history_event']:,} |",
            "",
        ]
    )
    finish(folder, figures, markdown, json)
