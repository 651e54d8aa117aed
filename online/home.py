"""The home page of one user as rows, the way a streaming service lays it out.

``GET /v1/users/{id}/home`` answers the demo web client (and any client that wants rows
rather than one list) in one request:

* **Top picks for you**: the full blend, exactly what ``/recommendations`` returns
  (precomputed, fresh, trending and popular candidates ranked by the resident ranker).
* **Because you watched X**: the FAISS neighbours of the user's most recent engaged item,
  read from the user state that the nearline tier keeps (the same read the blend makes). The
  row changes as soon as the worker has folded a play into the state: nothing is cached.
* **Trending now**: the bundle's trending items (popular ones when nothing trends).

Each row carries its sources, the bundle that served it and the server time it took, so
the client can show where a recommendation came from. Items the user engaged with
recently are left out of every row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice

from online import blend
from online.bundle import CatalogueItem, ServingBundle
from online.recommend import Answer, NoBundle, Recommender

TOP_PICKS = "top_picks"
BECAUSE = "because_you_watched"
TRENDING = "trending"


@dataclass(frozen=True)
class Tile:
    item_id: str
    score: float
    sources: list[str]
    reason: str


@dataclass
class Row:
    id: str
    title: str
    items: list[Tile]
    bundle: str
    server_ms: float
    anchor: str | None = None  # the item a "because you watched" row is about
    degraded: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Home:
    user_id: str
    arm: str
    bundle: str
    rows: list[Row]
    recent: list[str]  # most recent first
    server_ms: float
    top_picks: Answer  # for the impression log
    catalogue: ServingBundle  # the bundle read once for the page: titles, years, genres


def title_of(bundle: ServingBundle, item_id: str) -> str:
    found: CatalogueItem | None = bundle.items.get(item_id)
    return found.title if found else item_id


async def home(recommender: Recommender, user_id: str, k: int) -> Home:
    """The three rows for ``user_id``; a store that fails costs its row, not the page."""
    started = time.perf_counter()
    bundle = recommender.holder.current
    if bundle is None:
        raise NoBundle(recommender.holder.error or "no bundle loaded")
    answer = await recommender.recommend(user_id, k, set(), surface="home")
    top = Row(
        id=TOP_PICKS,
        title="Top picks for you",
        items=[Tile(i.item_id, i.score, i.sources, i.reason) for i in answer.items],
        bundle=answer.bundle,
        server_ms=answer.timings_ms.get("total", 0.0),
        degraded=answer.degraded,
        failures=answer.failures,
        timings_ms=answer.timings_ms,
    )

    # The state the blend read (no second read): its recent items seed the next row.
    t = time.perf_counter()
    recent = answer.recent
    because = because_you_watched(bundle, recent, k)
    if "user_state" in answer.failures:
        because.degraded = True
        because.failures = {"user_state": answer.failures["user_state"]}
    because.server_ms = round((time.perf_counter() - t) * 1000, 3)

    t = time.perf_counter()
    trending = trending_row(bundle, recent, k)
    trending.server_ms = round((time.perf_counter() - t) * 1000, 3)
    return Home(
        user_id=user_id,
        arm=answer.arm,
        bundle=bundle.version,
        rows=[top, because, trending],
        recent=recent,
        server_ms=round((time.perf_counter() - started) * 1000, 3),
        top_picks=answer,
        catalogue=bundle,
    )


def because_you_watched(bundle: ServingBundle, recent: list[str], k: int) -> Row:
    """Neighbours of the most recent item the bundle knows, minus everything recent."""
    anchor = next((i for i in recent if i in bundle.rows), None)
    if anchor is None:
        return Row(BECAUSE, "Because you watched…", [], bundle.version, 0.0)
    seen = set(recent)
    name = title_of(bundle, anchor)
    items = [
        Tile(other, round(score, 6), [blend.FRESH], f"because you watched {name}")
        for other, score in bundle.similar(anchor, k + len(seen))
        if other not in seen
    ][:k]
    return Row(BECAUSE, f"Because you watched {name}", items, bundle.version, 0.0, anchor=anchor)


def trending_row(bundle: ServingBundle, recent: list[str], k: int) -> Row:
    """Trending items, or popular ones when the bundle has no trending scores."""
    seen = set(recent)
    source, title, pool = blend.TRENDING, "Trending now", bundle.trending
    if not pool:
        source, title, pool = blend.POPULAR, "Popular now", bundle.popular
    reason = "trending now" if source == blend.TRENDING else "popular now"
    unseen = (i for i in pool if i not in seen)  # the pool is the whole catalogue: stop at k
    items = [Tile(i, bundle.items[i].trending_score, [source], reason) for i in islice(unseen, k)]
    return Row(TRENDING, title, items, bundle.version, 0.0)
