"""Response bodies of the online API (they are its OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(description="Ranker score (arm control) or the source's own score.")
    sources: list[str] = Field(
        description="Every source that proposed the item: precomputed:<generators>, fresh, "
        "trending, popular."
    )
    reason: str = Field(description="Why the item is there, in a few words.")


class RecommendationsResponse(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    bundle: str = Field(description="Version of the model bundle that answered.")
    arm: str = Field(description="The user's experiment arm.")
    degraded: bool = Field(description="True when a stage failed and was left out.")
    failures: dict[str, str] = Field(
        default_factory=dict, description="Stage -> why it was left out."
    )
    timings_ms: dict[str, float]


class SimilarItem(BaseModel):
    item_id: str
    score: float
    title: str


class SimilarResponse(BaseModel):
    item_id: str
    items: list[SimilarItem]
    bundle: str


class ItemResponse(BaseModel):
    item_id: str
    title: str
    year: int | None
    genres: list[str]
    n_interactions: int
    popularity_rank: int
    trending_score: float
    bundle: str


class Readiness(BaseModel):
    ready: bool
    bundle: str | None
    checks: dict[str, str] = Field(description="Component -> 'ok' or why not.")


class ReloadResponse(BaseModel):
    swapped: bool
    bundle: str | None
    error: str | None = None
