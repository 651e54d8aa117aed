"""The request path on arrays: candidates as dense item indices, merged, filtered, scored and
selected with numpy; Python objects only for the ``k`` items returned.

A bundle's items get dense indices once, when it loads (:class:`CatalogueArrays`): the
embedded items first, in the order of their vectors (so a FAISS row *is* an index), then
catalogue items without a vector. Catalogue-sized arrays hold what a request looks up per
candidate: popularity, first genre, title. A user's precomputed candidates are packed once
per cache fill (:class:`PackedCandidates`): indices, scores, generator labels and feature
rows; items the bundle does not know get indices past the catalogue, kept per user.

The rules are those of :mod:`online.blend`, which states them item by item in plain Python
and stays as their reference: ``tests/unit/test_online_arrays.py`` replays random user states
through both and asserts the same answers. Where the two could differ, this module says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from online.blend import FRESH, MIN_SHARE, POPULAR, PRECOMPUTED, TRENDING, Quotas
from shared.storage.candidates import Candidates

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# Source codes, in the order the merge takes them (and an item lists its sources).
SOURCE_ORDER = (PRECOMPUTED, FRESH, TRENDING, POPULAR)
PRE, FRE, TRE, POP = range(4)
_NO_GENRE = -1


@dataclass(frozen=True, eq=False)
class CatalogueArrays:
    """Dense indices of one bundle's items and the per-item arrays the request path reads.

    Arrays have one slot more than there are items: index ``n`` stands for any item the
    bundle does not know (popularity 0, no genre), so lookups clip instead of branching.
    """

    ids: list[str]  # index -> item id
    index: dict[str, int]  # item id -> index
    titles: list[str]  # index -> title (the id when the catalogue has none)
    popularity: IntArray  # [n + 1] interactions in the training data
    genre: npt.NDArray[np.int32]  # [n + 1] code of the first genre, -1 for none
    popular: IntArray  # indices by popularity rank
    trending: IntArray  # indices by trending score (items with a score only)
    embedded: int  # indices below this have a vector; index == row of the vectors

    @property
    def size(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls,
        embedding_ids: Sequence[str],
        *,
        titles: Mapping[str, str],
        popularity: Mapping[str, int],
        first_genre: Mapping[str, str],
        popular: Sequence[str],
        trending: Sequence[str],
    ) -> CatalogueArrays:
        ids = list(embedding_ids)
        index = {item: i for i, item in enumerate(ids)}
        for item in titles:  # catalogue items without a vector come after the embedded ones
            if item not in index:
                index[item] = len(ids)
                ids.append(item)
        n = len(ids)
        codes: dict[str, int] = {}
        genre = np.full(n + 1, _NO_GENRE, dtype=np.int32)
        pop = np.zeros(n + 1, dtype=np.int64)
        for item, i in index.items():
            pop[i] = popularity.get(item, 0)
            name = first_genre.get(item)
            if name is not None:
                genre[i] = codes.setdefault(name, len(codes))
        return cls(
            ids=ids,
            index=index,
            titles=[titles.get(item, item) for item in ids],
            popularity=pop,
            genre=genre,
            popular=np.fromiter((index[i] for i in popular), dtype=np.int64, count=len(popular)),
            trending=np.fromiter((index[i] for i in trending), dtype=np.int64, count=len(trending)),
            embedded=len(embedding_ids),
        )

    def indices(self, items: Sequence[str]) -> IntArray:
        """Indices of known items (unknown ones are left out), in order."""
        get = self.index.get
        found = [i for i in map(get, items) if i is not None]
        return np.asarray(found, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class PackedCandidates:
    """One user's precomputed candidates as arrays over one bundle's indices.

    ``index[j] >= catalogue.size`` names ``extras[index[j] - size]``, an item the bundle
    does not know (candidates of another version than the bundle's own).
    """

    bundle: str  # the version whose indices these are
    index: IntArray
    scores: FloatArray
    label: npt.NDArray[np.int32]  # code into ``labels`` of each row's source
    labels: tuple[str, ...]  # "precomputed:ease+als", or "precomputed" without a generator
    features: npt.NDArray[np.float32] | None
    extras: tuple[str, ...]

    @classmethod
    def pack(cls, bundle: str, cands: Candidates, catalogue: CatalogueArrays) -> PackedCandidates:
        n = catalogue.size
        get = catalogue.index.get
        extras: dict[str, int] = {}
        index = np.empty(len(cands.items), dtype=np.int64)
        for j, item in enumerate(cands.items):
            i = get(item)
            index[j] = i if i is not None else n + extras.setdefault(item, len(extras))
        codes: dict[str, int] = {}
        label = np.empty(len(cands.items), dtype=np.int32)
        generators = cands.sources
        for j in range(len(cands.items)):
            name = generators[j] if j < len(generators) and generators[j] else ""
            source = f"{PRECOMPUTED}:{name}" if name else PRECOMPUTED
            label[j] = codes.setdefault(source, len(codes))
        return cls(
            bundle=bundle,
            index=index,
            scores=np.asarray(cands.scores, dtype=np.float64),
            label=label,
            labels=tuple(codes),
            features=cands.features,
            extras=tuple(extras),
        )

    def item_id(self, i: int, catalogue: CatalogueArrays) -> str:
        n = catalogue.size
        return catalogue.ids[i] if i < n else self.extras[i - n]


@dataclass(frozen=True, eq=False)
class Fresh:
    """Fresh candidates: indices, scores, and the index of the recent item that brought
    each one (-1: a neighbour of the session vector, brought by no single item)."""

    index: IntArray
    scores: FloatArray
    because: IntArray

    @classmethod
    def empty(cls) -> Fresh:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))


@dataclass(frozen=True, eq=False)
class Pool:
    """The distinct candidates, in the order they first appeared (as the dict of the
    reference merge keeps them), with everything ranking and selection need."""

    index: IntArray  # item index (past the catalogue: an extra of the packed candidates)
    first: npt.NDArray[np.int8]  # code of the first source that proposed it
    bits: npt.NDArray[np.int8]  # every source that proposed it, one bit per code
    score: FloatArray  # the first source's own score
    rank: IntArray  # position in the first source's list
    because: IntArray  # for fresh items: index of the recent item behind it, else -1
    stored_row: IntArray  # row of the packed candidates' features, -1 for none
    label: npt.NDArray[np.int32]  # precomputed label code, -1 when not precomputed

    def __len__(self) -> int:
        return len(self.index)


def _first(index: IntArray, drop: npt.NDArray[np.bool_], quota: int) -> IntArray:
    """Positions of the first ``quota`` entries of ``index`` that are not dropped."""
    if quota <= 0 or not len(index):
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~drop[index])[:quota]


def merge(
    *,
    packed: PackedCandidates | None,
    fresh: Fresh,
    trending: IntArray,
    popular: IntArray,
    drop: npt.NDArray[np.bool_],
    quotas: Quotas,
) -> Pool:
    """:func:`online.blend.merge` on indices: each source's best up to its quota, without
    dropped items, deduplicated with every proposing source kept.

    ``drop`` is a mask over every index (catalogue, plus the packed candidates' extras).
    Whole-catalogue lists are cut before the mask: no more than ``drop.sum()`` of their
    first ``quota + dropped`` entries can be dropped.
    """
    dropped = int(drop.sum())
    # (source code, indices, scores, then per source: stored row or "because", label)
    parts: list[tuple[int, IntArray, FloatArray, IntArray, npt.NDArray[Any]]] = []
    if packed is not None:
        keep = _first(packed.index, drop, quotas.precomputed)
        parts.append((PRE, packed.index[keep], packed.scores[keep], keep, packed.label[keep]))
    keep = _first(fresh.index, drop, quotas.fresh)
    parts.append((FRE, fresh.index[keep], fresh.scores[keep], fresh.because[keep], keep))
    for code, listed, quota in ((TRE, trending, quotas.trending), (POP, popular, quotas.popular)):
        head = listed[: quota + dropped] if quota > 0 else listed[:0]
        taken = head[_first(head, drop, quota)]
        parts.append((code, taken, np.zeros(len(taken)), taken, taken))
    index = np.concatenate([p[1] for p in parts])
    source = np.concatenate([np.full(len(p[1]), p[0], dtype=np.int8) for p in parts])
    score = np.concatenate([p[2] for p in parts])
    rank = np.concatenate([np.arange(len(p[1]), dtype=np.int64) for p in parts])
    if not len(index):
        return _empty_pool()
    uniq, first_at, inverse = np.unique(index, return_index=True, return_inverse=True)
    order = np.argsort(first_at, kind="stable")  # pool slots in order of first appearance
    slot_of = np.empty(len(uniq), dtype=np.int64)
    slot_of[order] = np.arange(len(uniq))
    slot = slot_of[inverse.ravel()]  # entry -> pool slot
    at = first_at[order]  # pool slot -> its first entry
    bits = np.zeros(len(uniq), dtype=np.int8)
    because = np.full(len(uniq), -1, dtype=np.int64)
    stored_row = np.full(len(uniq), -1, dtype=np.int64)
    label = np.full(len(uniq), -1, dtype=np.int32)
    start = 0
    for code, taken, _, extra, extra2 in parts:
        mine = slot[start : start + len(taken)]
        bits[mine] |= np.int8(1 << code)
        if code == PRE:  # the first source of all: only a repeat in its own list is not new
            new = at[mine] == np.arange(start, start + len(taken))
            stored_row[mine[new]] = extra[new]
            label[mine[new]] = extra2[new]
        elif code == FRE:
            because[mine] = extra  # the one source with a "because"
        start += len(taken)
    return Pool(
        index=uniq[order],
        first=source[at],
        bits=bits,
        score=score[at],
        rank=rank[at],
        because=because,
        stored_row=stored_row,
        label=label,
    )


def _empty_pool() -> Pool:
    none = np.empty(0, dtype=np.int64)
    return Pool(
        none,
        np.empty(0, np.int8),
        np.empty(0, np.int8),
        np.empty(0, np.float64),
        none,
        none,
        none,
        np.empty(0, np.int32),
    )


def stored_order_scores(pool: Pool) -> npt.NDArray[np.float32]:
    """:func:`online.blend.stored_order_scores`: each source's own order."""
    return -pool.rank.astype(np.float32)


def select(
    pool: Pool,
    scores: npt.NDArray[np.float32],
    k: int,
    *,
    genre: npt.NDArray[np.int32],
    genre_cap: float,
    min_share: Mapping[str, float] = MIN_SHARE,
) -> IntArray:
    """:func:`online.blend.select` on arrays: pool positions of the ``k`` items, best first.

    ``genre`` is each pool item's first-genre code (-1: none). An item whose genre already
    has ``cap`` items before it in score order waits until the others are used up: the
    loop of the reference counts only the items it keeps, and the kept items of a genre are
    exactly its first ``cap``, so a running count per genre decides it.
    """
    order = np.argsort(-scores, kind="stable")
    cap = max(1, int(np.ceil(genre_cap * k)))
    g = genre[order]
    seen_before = _running_count(g)
    deferred = (g != _NO_GENRE) & (seen_before >= cap)
    ranked = np.concatenate([order[~deferred], order[deferred]])
    chosen = np.zeros(len(pool), dtype=bool)
    bits = pool.bits[ranked]
    for source, share in min_share.items():
        slots = max(int(share * k), 1 if k > len(min_share) else 0)
        if slots <= 0:
            continue
        bit = np.int8(1 << SOURCE_ORDER.index(source))
        mine = ranked[np.flatnonzero(((bits & bit) != 0) & ~chosen[ranked])[:slots]]
        chosen[mine] = True
    free = k - int(chosen.sum())
    if free > 0:
        rest = ranked[~chosen[ranked]][:free]
        chosen[rest] = True
    picked: IntArray = ranked[chosen[ranked]][:k]
    return picked


def _running_count(codes: npt.NDArray[np.int32]) -> IntArray:
    """For each position, how many earlier positions hold the same code."""
    if not len(codes):
        return np.empty(0, dtype=np.int64)
    by_code = np.argsort(codes, kind="stable")
    sorted_codes = codes[by_code]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    out = np.empty(len(codes), dtype=np.int64)
    out[by_code] = np.arange(len(codes)) - run_start
    return out


def source_counts(first: npt.NDArray[np.int8]) -> dict[str, int]:
    """Candidates per first source, for the metrics (one call per stage, not per item)."""
    counts = np.bincount(first, minlength=len(SOURCE_ORDER))
    return {SOURCE_ORDER[c]: int(n) for c, n in enumerate(counts.tolist()) if n}
