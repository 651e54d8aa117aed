"""Settings of the online API, read from ``RECSYS_*`` variables like the shared ones.

Kept beside the tier until they move into ``shared/settings.py`` (the storage URLs and the
registry come from there); build it in ``main()`` or the lifespan, never at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OnlineSettings(BaseSettings):
    """What the request path may spend, where it degrades, who may administer it."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    budget_ms: float = Field(
        80.0, gt=0, description="Per-request deadline: a degraded answer beats a late one."
    )
    store_timeout_ms: float = Field(
        30.0, gt=0, description="Most a store read (user state, candidates) may take."
    )
    admin_token: str | None = Field(
        None, description="Bearer token of the /v1/admin endpoints; unset: they are disabled."
    )
    reload_interval_s: float = Field(
        5.0, gt=0, description="Seconds between checks of the registry's live bundle."
    )
    store_retry_s: float = Field(
        5.0, gt=0, description="Seconds between attempts to open a store that did not answer."
    )
    candidates_cache_ttl_s: float = Field(
        300.0,
        ge=0,
        description="Seconds a user's precomputed candidates stay cached. Entries are keyed by"
        " candidate version, which is never rewritten, so this bounds an entry's age, not its"
        " staleness; a miss costs a Cassandra read (~2 ms of CPU here).",
    )
    candidates_cache_size: int = Field(
        20_000,
        ge=0,
        description="Users kept in that cache; about 41 KiB each with 200 candidates and their"
        " feature rows (measured), so 20,000 users are about 0.8 GB per API worker.",
    )
    store_threads: int = Field(16, ge=1, description="Threads for blocking store clients.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the ranker lives (auto: the GPU when torch sees one)."
    )
    experiment_salt: str = Field("exp1", description="Salt of the user -> arm hash.")
    experiment_arms: dict[str, float] = Field(
        default_factory=lambda: {"control": 1.0},
        description='Arm weights as JSON, e.g. {"control": 0.5, "blend": 0.5}; arms: control '
        "(the ranker re-scores every candidate) and blend (stored order, no re-ranking).",
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

    @field_validator("experiment_arms")
    @classmethod
    def _known_arms(cls, arms: dict[str, float]) -> dict[str, float]:
        from online.experiments import ARMS

        unknown = set(arms) - set(ARMS)
        if unknown or not arms or any(w < 0 for w in arms.values()) or sum(arms.values()) <= 0:
            raise ValueError(f"arms must be among {sorted(ARMS)} with weights >= 0, got {arms}")
        return arms

    @field_validator("experiment_bundles")
    @classmethod
    def _known_bound_arms(cls, bound: dict[str, str]) -> dict[str, str]:
        from online.experiments import ARMS

        unknown = set(bound) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; arms are {sorted(ARMS)}")
        return bound
