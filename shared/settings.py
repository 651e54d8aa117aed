"""Settings for every tier: one pydantic-settings class, read from ``RECSYS_*`` variables.

Build it in ``main()`` or the FastAPI lifespan (``Settings()``), never at import time.
Each storage role is one URL; the defaults are embedded implementations so that the demo
runs on a fresh machine with nothing started.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, each field documented; override with ``RECSYS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    home: Path = Field(
        Path("var"),
        description="Folder for embedded stores, model bundles and the event lake.",
    )
    event_log_url: str = Field(
        "sqlite:///var/event-log.db",
        description="Event log: kafka://host:port[,host:port]/topic, sqlite:///path or memory://.",
    )
    user_state_url: str = Field(
        "sqlite:///var/user-state.db",
        description="Fresh per-user state: redis://host:port/db, sqlite:///path or memory://.",
    )
    candidates_url: str = Field(
        "sqlite:///var/candidates.db",
        description="Precomputed candidates: cassandra://host:port/keyspace, sqlite:///path, memory://.",
    )
    history_url: str = Field(
        "sqlite:///var/history.db",
        description="Event history: cassandra://host:port/keyspace, sqlite:///path or memory://.",
    )
    registry_url: str = Field(
        "file://var/models",
        description="Model bundles and registry: file://path (local folder or mounted volume).",
    )
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
