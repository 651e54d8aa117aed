"""Pure candidate logic of the request path, item by item: merge with quotas, dedupe, drop,
select, explain.

No I/O and no model here: lists in, lists out, so every rule is unit-tested on its own. The
served path runs the same rules on arrays (:mod:`online.arrays`); this module states them
plainly and is their reference: a test replays random user states through both.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.fresh import FreshCandidate

PRECOMPUTED = "precomputed"
FRESH = "fresh"
TRENDING = "trending"
POPULAR = "popular"
SOURCES = (PRECOMPUTED, FRESH, TRENDING, POPULAR)
# Share of a list kept for a source when it has candidates, so every source of the blend
# shows up even where the ranker (trained on precomputed lists) prefers those.
MIN_SHARE: Mapping[str, float] = {FRESH: 0.2, TRENDING: 0.1}


@dataclass(slots=True)
class Pooled:
    """One distinct candidate and every source that proposed it."""

    item_id: str
    sources: list[str] = field(default_factory=list)  # "precomputed:ease+als", "fresh", ...
    source_score: float = 0.0  # the first source's own score
    source_rank: int = 0  # position in the first source's list
    because: str | None = None  # for fresh candidates: the recent item that brought it
    stored_row: int | None = None  # row of the precomputed candidate's stored features

    @property
    def kinds(self) -> list[str]:
        return [s.partition(":")[0] for s in self.sources]


@dataclass(frozen=True)
class Quotas:
    precomputed: int = 200
    fresh: int = 50
    trending: int = 20
    popular: int = 100


def merge(
    *,
    precomputed: tuple[Sequence[str], Sequence[float], Sequence[str]] | None,
    fresh: Sequence[FreshCandidate],
    trending: Sequence[str],
    popular: Sequence[str],
    drop: set[str],
    quotas: Quotas,
) -> list[Pooled]:
    """Each source's best candidates up to its quota, deduplicated (an item keeps every
    source that proposed it), without the items in ``drop`` (seen or excluded)."""
    pool: dict[str, Pooled] = {}

    def add(
        *, item: str, source: str, score: float, rank: int, because: str | None, row: int | None
    ) -> None:
        if item in drop:
            return
        if item in pool:
            entry = pool[item]
            if source not in entry.sources:
                entry.sources.append(source)
            entry.because = entry.because or because
            return
        pool[item] = Pooled(item, [source], score, rank, because, row)

    if precomputed is not None:
        items, scores, generators = precomputed
        taken = 0
        for row, item in enumerate(items):
            if taken == quotas.precomputed:
                break
            if item in drop:
                continue
            label = generators[row] if row < len(generators) and generators[row] else ""
            source = f"{PRECOMPUTED}:{label}" if label else PRECOMPUTED
            add(item=item, source=source, score=scores[row], rank=taken, because=None, row=row)
            taken += 1
    # Lazily: trending and popular are whole-catalogue lists, of which a quota is taken.
    sources: tuple[tuple[str, int, Iterable[tuple[str, float, str | None]]], ...] = (
        (FRESH, quotas.fresh, ((f.item_id, f.score, f.because) for f in fresh)),
        (TRENDING, quotas.trending, ((i, 0.0, None) for i in trending)),
        (POPULAR, quotas.popular, ((i, 0.0, None) for i in popular)),
    )
    for name, quota, listed in sources:
        taken = 0
        for item, score, because in listed:
            if taken == quota:
                break
            if item in drop:
                continue
            add(item=item, source=name, score=score, rank=taken, because=because, row=None)
            taken += 1
    return list(pool.values())


def stored_order_scores(pool: Sequence[Pooled]) -> npt.NDArray[np.float32]:
    """Scores that keep each source's own order (the arm without re-ranking): the best of
    every source first, precomputed before the others at equal position."""
    return -np.asarray([p.source_rank for p in pool], dtype=np.float32)


def select(
    pool: Sequence[Pooled],
    scores: npt.NDArray[np.float32],
    k: int,
    *,
    genre_of: Callable[[str], str | None],
    genre_cap: float,
    min_share: Mapping[str, float] = MIN_SHARE,
) -> list[int]:
    """Indices of the ``k`` items to serve, best first.

    Diversified order: items by score, an item whose first genre already fills
    ``genre_cap`` of the list waits until the others are used up. Then each source in
    ``min_share`` keeps its slots (its best items in that order), the rest by that order.
    """
    order = np.argsort(-scores, kind="stable").tolist()
    cap = max(1, int(np.ceil(genre_cap * k)))
    counts: dict[str | None, int] = {}
    diversified: list[int] = []
    deferred: list[int] = []
    for i in order:
        genre = genre_of(pool[i].item_id)
        if genre is not None and counts.get(genre, 0) >= cap:
            deferred.append(i)
            continue
        counts[genre] = counts.get(genre, 0) + 1
        diversified.append(i)
    ranked = diversified + deferred
    kinds = {i: {s.partition(":")[0] for s in pool[i].sources} for i in ranked}
    chosen: set[int] = set()
    for source, share in min_share.items():
        slots = max(int(share * k), 1 if k > len(min_share) else 0)
        mine: list[int] = []
        for i in ranked:
            if len(mine) == slots:
                break
            if i not in chosen and source in kinds[i]:
                mine.append(i)
        chosen.update(mine)
    for i in ranked:
        if len(chosen) >= k:
            break
        chosen.add(i)
    return [i for i in ranked if i in chosen][:k]


def reason(entry: Pooled, title_of: Callable[[str], str], cold: bool) -> str:
    """One line saying why the item is there, from its most telling source."""
    return explain(entry.kinds, title_of(entry.because) if entry.because else None, cold)


def explain(kinds: Collection[str], because: str | None, cold: bool) -> str:
    """The wording of :func:`reason`: ``because`` is the title of the recent item that
    brought a fresh candidate (None for a neighbour of the session vector)."""
    if FRESH in kinds:
        if because is not None:
            return f"because you watched {because}"
        return "close to what you watched this session"
    if PRECOMPUTED in kinds:
        return "picked for your taste"
    if TRENDING in kinds:
        return "trending now"
    if cold:
        return "popular now (new here: we start with what everyone watches)"
    return "popular now"
