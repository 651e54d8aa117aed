"""The request path as it was before it moved to arrays, item by item, kept as the reference
the served path (``online.recommend.Recommender._compute`` on :mod:`online.arrays`) must
match: ``test_online_arrays.py`` replays random user states through both.

It is :mod:`online.blend`'s rules in plain Python with the feature and fresh-candidate code
of that time, copied here unchanged in substance, so a change to the served path cannot
change its own reference.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from online import blend
from online.bundle import ServingBundle
from online.experiments import Arm
from online.recommend import Recommended
from shared.fresh import FreshCandidate
from shared.online_features import history_length, unproposed_features
from shared.storage.candidates import Candidates
from shared.storage.user_state import UserState


def reference_items(
    bundle: ServingBundle,
    arm: Arm,
    *,
    state: UserState | None,
    cands: Candidates | None,
    failures: dict[str, str],
    k: int,
    exclude: set[str],
    quotas: blend.Quotas,
    genre_cap: float,
) -> list[Recommended]:
    recent = state.recent_items if state is not None else []
    fresh = _fresh(bundle, state, quotas.fresh) if state is not None else []
    cold = not recent and cands is None and not failures
    need_popular = cands is None or not cands.items
    pool = blend.merge(
        precomputed=(cands.items, cands.scores, cands.sources) if cands else None,
        fresh=fresh,
        trending=bundle.trending,
        popular=bundle.popular if need_popular else [],
        drop=set(recent) | exclude,
        quotas=quotas,
    )
    if not pool:
        return []
    if arm.rerank and bundle.ranker is not None:
        scores = bundle.ranker.score(ranking_features(bundle, pool, cands, recent))
    else:
        scores = blend.stored_order_scores(pool)
    first_genre = {i: item.genres[0] for i, item in bundle.items.items() if item.genres}
    chosen = blend.select(pool, scores, k, genre_of=first_genre.get, genre_cap=genre_cap)

    def title(item: str) -> str:
        found = bundle.items.get(item)
        return found.title if found else item

    out = []
    for i in chosen:
        entry = pool[i]
        shown = scores[i] if arm.rerank and bundle.ranker is not None else entry.source_score
        why = blend.reason(entry, title, cold)
        out.append(Recommended(entry.item_id, round(float(shown), 6), list(entry.sources), why))
    return out


def _fresh(bundle: ServingBundle, state: UserState, quota: int) -> list[FreshCandidate]:
    if quota <= 0:
        return []
    fresh = _neighbours(bundle, state, quota)
    vector = state.session_vector
    if fresh or vector is None or vector.shape != (bundle.index.dim,):
        return fresh
    ids, scores = bundle.index.search(vector[None, :], quota)
    items = bundle.fresh.embeddings.ids
    return [
        FreshCandidate(items[r], float(s), "")
        for r, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
        if r >= 0
    ]


def _neighbours(bundle: ServingBundle, state: UserState, k: int) -> list[FreshCandidate]:
    """``shared.fresh.FreshCandidates.__call__`` as it was."""
    fresh = bundle.fresh
    positions = fresh.embeddings.position()
    seeds: list[str] = []
    for item in state.recent_items:
        if item in positions and item not in seeds:
            seeds.append(item)
            if len(seeds) == fresh.seeds:
                break
    if not seeds or k <= 0:
        return []
    seen = set(state.recent_items)
    rows = np.fromiter((positions[s] for s in seeds), dtype=np.int64, count=len(seeds))
    ids, scores = fresh.index.search(fresh.embeddings.vectors[rows], k + len(seen))
    values = scores.astype(np.float64) * fresh.recency_discount ** np.arange(len(seeds))[:, None]
    seed_of = np.repeat(np.arange(len(seeds)), ids.shape[1])
    ids, values = ids.ravel(), values.ravel()
    keep = ids >= 0
    seen_rows = [positions[i] for i in seen if i in positions]
    if seen_rows:
        seen_mask = np.zeros(len(fresh.embeddings.ids), dtype=bool)
        seen_mask[seen_rows] = True
        keep &= ~seen_mask[np.where(keep, ids, 0)]
    ids, values, seed_of = ids[keep], values[keep], seed_of[keep]
    order = np.lexsort((seed_of, -values, ids))
    ids, values, seed_of = ids[order], values[order], seed_of[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    ids, values, seed_of = ids[first], values[first], seed_of[first]
    top = np.lexsort((ids, -values))[:k]
    names = fresh.embeddings.ids
    return [
        FreshCandidate(names[row], value, seeds[seed])
        for row, value, seed in zip(
            ids[top].tolist(), values[top].tolist(), seed_of[top].tolist(), strict=True
        )
    ]


def ranking_features(
    bundle: ServingBundle,
    pool: list[blend.Pooled],
    cands: Candidates | None,
    recent: list[str],
) -> npt.NDArray[np.float32]:
    assert bundle.ranker is not None
    spec = bundle.ranker.spec
    stored = _stored_features(cands, len(spec.names))
    history = history_length(spec, stored, recent)
    features = np.empty((len(pool), len(spec.names)), dtype=np.float32)
    others = list(range(len(pool)))
    if stored is not None:
        at = [(i, e.stored_row) for i, e in enumerate(pool) if e.stored_row is not None]
        if at:
            rows, stored_rows = zip(*at, strict=True)
            features[list(rows)] = stored[list(stored_rows)]
            others = [i for i, e in enumerate(pool) if e.stored_row is None]
    if others:
        found = (bundle.items.get(pool[i].item_id) for i in others)
        popularity = np.fromiter((f.n_interactions if f else 0 for f in found), dtype=np.int64)
        features[others] = unproposed_features(spec, popularity, history)
    return features


def _stored_features(cands: Candidates | None, width: int) -> npt.NDArray[np.float32] | None:
    if cands is None or cands.features is None:
        return None
    array = np.asarray(cands.features, dtype=np.float32)
    if array.shape != (len(cands.items), width):
        return None
    return array
