"""Settings for every tier: one pydantic-settings class, read from ``RECSYS_*`` variables.

Build it in ``main()`` or the FastAPI lifespan (``Settings()``), never at import time.
Each storage role is one URL whose scheme is checked when the settings load (a wrong one
is a validation error naming the field and the schemes that role accepts); the defaults
are embedded implementations so that the demo runs on a fresh machine with nothing
started. The online API's fields (deadlines, caches, quotas, experiments) are here too,
grouped below the shared ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ARM_NAMES: tuple[str, ...] = ("control", "blend", "challenger")
"""Names of the experiment arms; :data:`online.experiments.ARMS` says how each answers."""


def _schemes(*allowed: str) -> Callable[[str], str]:
    """A validator that returns the URL unchanged when its scheme is one of ``allowed``."""

    def check(url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in allowed:
            expected = ", ".join(f"{s}://" for s in allowed)
            raise ValueError(f"URL scheme must be one of {expected}; got {url!r}")
        return url

    return check


# The schemes each role's factory opens (shared/storage/factory.py; the registry: file://).
EventLogUrl = Annotated[str, AfterValidator(_schemes("kafka", "sqlite", "memory"))]
UserStateUrl = Annotated[str, AfterValidator(_schemes("redis", "sqlite", "memory"))]
CandidatesUrl = Annotated[str, AfterValidator(_schemes("cassandra", "sqlite", "memory"))]
HistoryUrl = Annotated[str, AfterValidator(_schemes("cassandra", "sqlite", "memory"))]
RegistryUrl = Annotated[str, AfterValidator(_schemes("file"))]


@dataclass(frozen=True)
class Replication:
    """How many copies of each record the project keeps on a cluster of ``nodes`` (Kafka
    brokers, or Cassandra nodes), and what a write and a read wait for: the one place that
    decides it. Read by the event log when it creates a topic
    (``shared/storage/kafka_log.py``), by the Cassandra stores when they create their
    keyspace and prepare their statements (``shared/storage/cassandra/connection.py``), and
    by ``recsys services up`` for the brokers' own defaults and internal topics.

    The aim is to survive one node's loss: on 3 nodes everything holds with any one down,
    and nothing acknowledged is lost. On 2 Cassandra nodes no consistency level can be both
    (a quorum of 2 is both), so there writes and reads wait for one node: they go on with
    either node down, and a read may miss a write until hints or read repair bring the
    restarted node up to date. On 1 node there is nothing to survive.
    """

    nodes: int

    @property
    def factor(self) -> int:
        """Copies of each partition and each row: one per node, at most 3."""
        return max(1, min(3, self.nodes))

    @property
    def min_insync(self) -> int:
        """Kafka's ``min.insync.replicas``: every copy but one (at least 1). With the
        producer's ``acks=all`` a write is acknowledged only once this many copies hold it,
        and is refused, never silently kept on fewer, while more than one broker is down."""
        return max(1, self.factor - 1)

    @property
    def write_consistency(self) -> str:
        """Cassandra consistency level of every write (a ``ConsistencyLevel`` name)."""
        return "LOCAL_ONE" if self.factor == 2 else "LOCAL_QUORUM"

    @property
    def read_consistency(self) -> str:
        """Cassandra consistency level of every read. With 3 copies a quorum read (2)
        overlaps every quorum write (2): it sees the write, whichever node is down."""
        return "LOCAL_ONE" if self.factor == 2 else "LOCAL_QUORUM"


class Settings(BaseSettings):
    """Everything configurable, each field documented; override with ``RECSYS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    home: Path = Field(
        Path("var"),
        description="Folder for embedded stores, model bundles and the event lake.",
    )
    event_log_url: EventLogUrl = Field(
        description="Event log: kafka://host:port[,host:port]/topic, sqlite:///path or memory://.",
    )
    user_state_url: UserStateUrl = Field(
        description="Fresh per-user state: redis://host:port/db, sqlite:///path or memory://.",
    )
    candidates_url: CandidatesUrl = Field(
        description="Precomputed candidates: cassandra://host:port/keyspace, sqlite:///path, memory://.",
    )
    history_url: HistoryUrl = Field(
        description="Event history: cassandra://host:port/keyspace, sqlite:///path or memory://.",
    )
    registry_url: RegistryUrl = Field(
        description="Model bundles and registry: file://path (local folder or mounted volume).",
    )
    # Unset URLs default to embedded stores under ``home`` (see _embedded_defaults).
    user_state_ttl_s: int = Field(
        7 * 24 * 3600, description="Seconds a user's fresh state lives after their last event."
    )
    recent_items_cap: int = Field(50, description="How many recent items each user's state keeps.")
    movielens_dir: Path = Field(
        Path("datasets/movielens-100k"),
        description="Folder holding MovieLens 100K (u.data, u.item); CI points it at a shared copy.",
    )
    datasets_dir: Path = Field(
        Path("datasets"), description="Where downloaded and generated datasets are written."
    )
    spark_master: str = Field(
        "local[*]", description="Spark master: local[*], spark://host:7077 or k8s://..."
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "tiered-recsys",
        description="Download cache outside the clone (Maven jars for the local services).",
    )
    als_backend: Literal["implicit", "spark"] = Field(
        "implicit",
        description="ALS implementation: implicit (one machine, GPU when CUDA exists) or spark "
        "(Spark MLlib on spark_master, for data that outgrows one machine).",
    )
    candidates_per_user: int = Field(
        200, ge=1, le=10_000, description="Top-N candidates per user written by the offline job."
    )
    event_lake_dir: Path | None = Field(
        None,
        description="Parquet event lake (partitioned by date) the nearline tier appends to and "
        "the next offline run reads; default <home>/lake.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="CPU or GPU, decided once (shared.device): the torch ranker, trained offline"
        " and served online, and implicit's ALS run there; auto: the GPU when torch sees one,"
        " cuda without one fails at start-up. ALS falls back to the CPU, with a warning, when"
        " implicit was built without CUDA.",
    )
    prometheus_port: int = Field(
        9095,
        ge=1,
        le=65535,
        description="Port of the Prometheus `recsys services up prometheus` starts on"
        " 127.0.0.1 (not 9090, where Debian's own prometheus service listens).",
    )
    scrape_api_targets: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:8000"],
        description="host:port of each online API that Prometheus scrapes, as JSON, e.g."
        ' ["10.0.0.5:8000"]; one address per `recsys online serve`, whatever its workers.',
    )
    scrape_nearline_targets: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9108"],
        description="host:port of each nearline worker's metrics (`recsys nearline run"
        " --metrics-port`) that Prometheus scrapes, as JSON; one per worker.",
    )

    # Online API: what the request path may spend, where it degrades, who may administer it.
    budget_ms: float = Field(
        80.0, gt=0, description="Per-request deadline: a degraded answer beats a late one."
    )
    store_timeout_ms: float = Field(
        30.0, gt=0, description="Most a store read (user state, candidates) may take."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of the /v1/admin endpoints; unset: they are disabled. Never"
        " printed (a secret string).",
    )
    events_token: SecretStr | None = Field(
        None,
        description="Bearer token POST /v1/events requires when set (compared in constant"
        " time); unset: anyone who reaches the API may write events. Put TLS in front of it.",
    )
    events_rate_per_s: float = Field(
        0.0,
        ge=0,
        description="Requests per second each client (by address) may make to POST"
        " /v1/events, a token bucket; over it: 429 with Retry-After. 0: no limit.",
    )
    events_burst: int = Field(
        100, ge=1, description="Requests a client may make at once before that rate applies."
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1_024,
        description="Largest request body either API reads; a larger one gets 413 before it"
        " is read whole.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins a browser may call the APIs from, as JSON, e.g."
        ' ["https://app.example.com"]; empty: same origin only (the web client needs nothing).',
    )
    reload_interval_s: float = Field(
        5.0, gt=0, description="Seconds between checks of the registry's live bundle."
    )
    store_retry_s: float = Field(
        5.0, gt=0, description="Seconds between attempts to open a store that did not answer."
    )
    candidates_cache_ttl_s: float = Field(
        3600.0,
        ge=0,
        description="Seconds a user's precomputed candidates stay cached. Entries are keyed by"
        " candidate version, which is never rewritten, so this bounds an entry's age, not its"
        " staleness (the size bounds memory); a miss costs a Cassandra read, about 3 ms of the"
        " API process's CPU (measured). 0: no cache.",
    )
    candidates_cache_size: int = Field(
        20_000,
        ge=0,
        description="Users kept in that cache; about 41 KiB each with 200 candidates and their"
        " feature rows (measured), so 20,000 users are about 0.8 GB per API worker.",
    )
    candidates_cache_warm_s: float = Field(
        20.0,
        ge=0,
        description="Seconds a bundle may spend filling that cache with its candidates (every"
        " user, up to candidates_cache_size, read partition by partition) before it serves; 0:"
        " no warm-up, the cache fills on misses. A fresh server's first requests then hit it.",
    )
    store_threads: int = Field(16, ge=1, description="Threads for blocking store clients.")
    experiment_salt: str = Field("exp1", description="Salt of the user -> arm hash.")
    experiment_arms: dict[str, float] = Field(
        default_factory=lambda: {"control": 1.0},
        description='Arm weights as JSON, e.g. {"control": 0.5, "blend": 0.5}; arms: control '
        "(the ranker re-scores every candidate), blend (stored order, no re-ranking) and"
        " challenger (re-ranks like control; bind it to another bundle in experiment_bundles).",
    )
    experiment_bundles: dict[str, str] = Field(
        default_factory=dict,
        description='Arm -> bundle version it is served from, as JSON, e.g. {"challenger": '
        '"20261129T103000Z-3fa2c1"}; arms not listed follow the live bundle.',
    )
    fresh_quota: int = Field(50, ge=0, description="Most fresh candidates (recent neighbours).")
    precomputed_quota: int = Field(
        100,
        ge=0,
        description="Most precomputed candidates (their stored order is already the ranker's).",
    )
    trending_quota: int = Field(20, ge=0, description="Most trending candidates per request.")
    popular_quota: int = Field(100, ge=0, description="Most popular candidates (cold users).")
    genre_cap: float = Field(
        0.5, gt=0, le=1, description="Most of a list one (first) genre may fill."
    )
    log_impressions: bool = Field(
        True,
        description="Send one impression event per answer: the items shown with positions and"
        " sources; arm, bundle, surface and request id in context.",
    )

    @property
    def lake_dir(self) -> Path:
        return self.event_lake_dir or self.home / "lake"

    @model_validator(mode="before")
    @classmethod
    def _embedded_defaults(cls, data: Any) -> Any:
        """Unset storage URLs point at embedded stores inside ``home``."""
        if isinstance(data, dict):
            home = Path(data.get("home") or "var")
            for field, target in _EMBEDDED.items():
                data.setdefault(field, target.format(home=home.as_posix()))
        return data

    @field_validator("experiment_arms")
    @classmethod
    def _known_arms(cls, arms: dict[str, float]) -> dict[str, float]:
        unknown = set(arms) - set(ARM_NAMES)
        if unknown or not arms or any(w < 0 for w in arms.values()) or sum(arms.values()) <= 0:
            raise ValueError(
                f"arms must be among {sorted(ARM_NAMES)} with weights >= 0, got {arms}"
            )
        return arms

    @field_validator("experiment_bundles")
    @classmethod
    def _known_bound_arms(cls, bound: dict[str, str]) -> dict[str, str]:
        unknown = set(bound) - set(ARM_NAMES)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; arms are {sorted(ARM_NAMES)}")
        return bound


_EMBEDDED = {
    "event_log_url": "sqlite:///{home}/event-log.db",
    "user_state_url": "sqlite:///{home}/user-state.db",
    "candidates_url": "sqlite:///{home}/candidates.db",
    "history_url": "sqlite:///{home}/history.db",
    "registry_url": "file://{home}/models",
}
