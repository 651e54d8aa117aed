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
    request_id: str = Field(
        description="Names this answer; its impression event carries it. Send it back in an"
        " event's context (request_id) to join what the user did to what was shown."
    )


class SimilarItem(BaseModel):
    item_id: str
    score: float
    title: str
    year: int | None = None
    genres: list[str] = Field(default_factory=list)


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


class Tile(BaseModel):
    item_id: str
    title: str
    year: int | None
    genres: list[str]
    score: float = Field(description="Ranker score, neighbour similarity or trending score.")
    sources: list[str]
    reason: str


class HomeRow(BaseModel):
    id: str = Field(description="top_picks, because_you_watched or trending.")
    title: str
    items: list[Tile]
    sources: list[str] = Field(description="The sources of the row's items.")
    bundle: str
    server_ms: float = Field(description="Server time spent on this row.")
    anchor: str | None = Field(None, description="The item a 'because you watched' row is about.")
    degraded: bool
    failures: dict[str, str]
    timings_ms: dict[str, float] = Field(description="Stage timings (top picks only).")


class HomeResponse(BaseModel):
    user_id: str
    arm: str
    bundle: str
    rows: list[HomeRow]
    recent: list[str] = Field(description="The user's recent items, most recent first.")
    server_ms: float


class UsersResponse(BaseModel):
    users: list[str] = Field(description="Users the bundle was trained on (a sample).")
    bundle: str
