"""What every local service looks like to the manager: where its files are, how it starts,
and how to ask it over its own protocol whether it is up."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from string import Template
from typing import ClassVar

from shared.errors import RecsysError


class ServiceError(RecsysError):
    """A local service could not be started or stopped; the message names it and its log."""

    exit_code = 3


class State(StrEnum):
    HEALTHY = "healthy"  # ours (pid file, live process) and answering its protocol
    UNHEALTHY = "unhealthy"  # ours but not answering, or the port is held by a stranger
    STOPPED = "stopped"  # nothing of ours running and nothing on the port
    EXTERNAL = "external"  # not ours, but answers the protocol on our address: usable


@dataclass(frozen=True)
class Status:
    service: str
    address: str
    state: State
    pid: int | None = None
    version: str | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        """Answers its protocol on the address, whoever started it."""
        return self.state in (State.HEALTHY, State.EXTERNAL)

    def to_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "state": str(self.state),
            "pid": self.pid,
            "version": self.version,
            "detail": self.detail,
        }


def conf_text(name: str) -> str:
    """A file shipped in ``recsys/services/conf/``, as is."""
    return resources.files("recsys.services").joinpath("conf", name).read_text(encoding="utf-8")


def render_template(name: str, values: dict[str, object]) -> str:
    """Fill ``recsys/services/conf/<name>``; a placeholder left without a value is an error."""
    return Template(conf_text(name)).substitute({k: str(v) for k, v in values.items()})


class Service(ABC):
    """One server (on 127.0.0.1, or a cluster's node on 127.0.0.x) whose files live in
    ``<state_dir>/<name>/``."""

    name: ClassVar[str]
    protocol: ClassVar[str]
    ready_timeout_s: ClassVar[float]
    stop_timeout_s: ClassVar[float] = 60.0
    # Several nodes of this service (a cluster) start one after the other, not at once.
    one_at_a_time: ClassVar[bool] = False

    def __init__(self, state_dir: Path, cache_dir: Path, host: str, port: int) -> None:
        # Absolute, because the path is also how we recognise our processes (see ``marker``).
        self.home = Path(os.path.abspath(state_dir)) / self.name
        self.cache_dir = Path(os.path.abspath(cache_dir))
        # CPU priority the server starts with (nice); 0: as the launcher's own.
        self.niceness = 0
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def data_dir(self) -> Path:
        """Everything ``down --purge`` deletes; configs and logs stay for a post-mortem."""
        return self.home / "data"

    @property
    def marker(self) -> str:
        """A string every command line we start contains: our own state folder."""
        return str(self.home) + os.sep

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def pinned_version(self) -> str | None:
        """The version we start, when the protocol cannot tell (Kafka)."""
        return None

    @abstractmethod
    def prepare(self) -> list[str]:
        """Fetch what is missing, render configs, initialise storage; return the argv to run."""

    @abstractmethod
    def probe(self) -> str | None:
        """Ask the server over its protocol; return its version (None if it cannot say).

        Raises on any failure: the caller treats an exception as "not answering".
        """
