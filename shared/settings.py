"""Settings for every tier: one pydantic-settings class, read from ``RECSYS_*`` variables.

Build it in ``main()`` or the FastAPI lifespan (``Settings()``), never at import time.
Each storage role is one URL; the defaults are embedded implementations so that the demo
runs on a fresh machine with nothing started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, each field documented; override with ``RECSYS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    home: Path = Field(
        Path("var"),
        description="Folder for embedded stores, model bundles and the event lake.",
    )
    event_log_url: str = Field(
        description="Event log: kafka://host:port[,host:port]/topic, sqlite:///path or memory://.",
    )
    user_state_url: str = Field(
        description="Fresh per-user state: redis://host:port/db, sqlite:///path or memory://.",
    )
    candidates_url: str = Field(
        description="Precomputed candidates: cassandra://host:port/keyspace, sqlite:///path, memory://.",
    )
    history_url: str = Field(
        description="Event history: cassandra://host:port/keyspace, sqlite:///path or memory://.",
    )
    registry_url: str = Field(
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


_EMBEDDED = {
    "event_log_url": "sqlite:///{home}/event-log.db",
    "user_state_url": "sqlite:///{home}/user-state.db",
    "candidates_url": "sqlite:///{home}/candidates.db",
    "history_url": "sqlite:///{home}/history.db",
    "registry_url": "file://{home}/models",
}
