"""Redis from the system's ``redis-server`` binary (Debian package ``redis-server``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recsys.services.base import Service, ServiceError


@dataclass(frozen=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379


def redis_argv(binary: str, cfg: RedisConfig, data_dir: Path, marker: str) -> list[str]:
    """A throw-away cache for development and tests: no RDB snapshots, no AOF.

    It runs in the foreground (no --daemonize) so that the pid we spawn is the server's own,
    and logs to stdout, which the launcher appends to ``redis.log``. Redis rewrites its
    process title, dropping the arguments; the title template puts ``marker`` (our state
    folder) back, which is how ``down`` recognises the process as ours.
    """
    return [
        binary,
        "--bind",
        cfg.host,
        "--port",
        str(cfg.port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir.resolve()),  # absolute: never read as an option
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--proc-title-template",
        f"{{title}} {{listen-addr}} {{server-mode}} {marker}",
    ]


def find_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis: redis-server is not on PATH; install it with `apt-get install redis-server` "
            "(Debian/Ubuntu) or `brew install redis` (macOS)"
        )
    return binary


class Redis(Service):
    name: ClassVar[str] = "redis"
    protocol: ClassVar[str] = "Redis"
    ready_timeout_s: ClassVar[float] = 10.0
    stop_timeout_s: ClassVar[float] = 15.0

    def __init__(self, state_dir: Path, cache_dir: Path, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig()
        super().__init__(state_dir, cache_dir, self.config.host, self.config.port)

    def prepare(self) -> list[str]:
        binary = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return redis_argv(binary, self.config, self.data_dir, self.marker)

    def probe(self) -> str | None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One try per probe: the caller polls, and the client's own retries would turn a
        # stranger on the port into a slow answer.
        client = redis.Redis(
            host=self.host,
            port=self.port,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            if not client.ping():
                raise ServiceError("redis: PING got no PONG")
            version = client.info("server").get("redis_version")
        finally:
            client.close()
        return str(version) if version is not None else None
