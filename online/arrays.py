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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from online.blend import FRESH, MIN_SHARE, POPULAR, PRECOMPUTED, TRENDING, Quotas
from shared.storage.candidates import Candidates

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# Source codes, in the order the merge takes them (and an item lists its sources).
SOURCE_ORDER = (PRECOMPUTED, FRESH, TRENDING, POPULAR)
PRE, FRE, TRE, POP = range(4)
_CODES = np.arange(len(SOURCE_ORDER), dtype=np.int8)
_BITS = (1 << _CODES).astype(np.int8)
_NO_INDEX: IntArray = np.empty(0, dtype=np.int64)
_NO_SCORES: FloatArray = np.empty(0, dtype=np.float64)
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
        # Lists first and one array each at the end: a numpy element written per item
        # cost more than the rest of the packing (100 against 38 µs for 200 candidates).
        n = catalogue.size
        get = catalogue.index.get
        found = [get(item) for item in cands.items]
        extras: dict[str, int] = {}
        if None in found:  # items the bundle does not know: named by extras, past the catalogue
            found = [
                i if i is not None else n + extras.setdefault(item, len(extras))
                for i, item in zip(found, cands.items, strict=True)
            ]
        index = np.array(found, dtype=np.int64)
        m = len(cands.items)
        names = [g or "" for g in cands.sources[:m]] + [""] * (m - len(cands.sources))
        codes: dict[str, int] = {}  # generator name -> label code, in order of appearance
        label = np.array([codes.setdefault(name, len(codes)) for name in names], dtype=np.int32)
        return cls(
            bundle=bundle,
            index=index,
            scores=np.asarray(cands.scores, dtype=np.float64),
            label=label,
            labels=tuple(f"{PRECOMPUTED}:{name}" if name else PRECOMPUTED for name in codes),
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
        return _NO_INDEX
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
    dropped = int(np.count_nonzero(drop))
    none = _NO_INDEX
    pre_keep = _first(packed.index, drop, quotas.precomputed) if packed is not None else none
    fresh_keep = _first(fresh.index, drop, quotas.fresh)
    listed = []
    for whole, quota in ((trending, quotas.trending), (popular, quotas.popular)):
        head = whole[: quota + dropped] if quota > 0 else none
        listed.append(head[_first(head, drop, quota)])
    parts = (
        packed.index[pre_keep] if packed is not None else none,
        fresh.index[fresh_keep],
        *listed,
    )
    lengths = [len(p) for p in parts]
    total = sum(lengths)
    if not total:
        return _empty_pool()
    index = np.concatenate(parts)
    pre_scores = packed.scores[pre_keep] if packed is not None else _NO_SCORES
    score = np.concatenate((pre_scores, fresh.scores[fresh_keep], np.zeros(sum(lengths[2:]))))
    source = np.repeat(_CODES, lengths)
    entries = np.arange(total)
    rank = entries - np.repeat(np.cumsum(lengths) - lengths, lengths)  # place in its source
    # Dedupe: an item's first entry (the order a dict of the pool would keep) is its slot.
    first_at = np.full(len(drop), total, dtype=np.int64)
    np.minimum.at(first_at, index, entries)
    is_first = first_at[index] == entries
    at = np.flatnonzero(is_first)  # slot -> its first entry, in order of appearance
    uniq = index[at]
    slot_of = first_at  # reused: only the slots of this pool's items are read back
    slot_of[uniq] = np.arange(len(uniq))
    slot = slot_of[index]  # entry -> slot
    bits = np.zeros(len(uniq), dtype=np.int8)
    np.bitwise_or.at(bits, slot, _BITS[source])  # every source that proposed the item
    because = np.full(len(uniq), -1, dtype=np.int64)
    because[slot[lengths[0] : lengths[0] + lengths[1]]] = fresh.because[fresh_keep]
    stored_row = np.full(len(uniq), -1, dtype=np.int64)
    label = np.full(len(uniq), -1, dtype=np.int32)
    if packed is not None and lengths[0]:  # precomputed comes first: its new items are its own
        new = is_first[: lengths[0]]
        stored_row[slot[: lengths[0]][new]] = pre_keep[new]
        label[slot[: lengths[0]][new]] = packed.label[pre_keep[new]]
    return Pool(
        index=uniq,
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
) -> list[int]:
    """:func:`online.blend.select` on the pool: positions of the ``k`` items, best first.

    ``genre`` is each pool item's first-genre code (-1: none). The order is one argsort;
    the genre cap and the source slots are then a pass over plain ints, which for a few
    hundred candidates costs less than the dozens of small array operations it would take.
    """
    order: list[int] = np.argsort(-scores, kind="stable").tolist()
    cap = max(1, math.ceil(genre_cap * k))
    genres: list[int] = genre.tolist()
    counts: dict[int, int] = {}
    diversified: list[int] = []
    deferred: list[int] = []
    for i in order:
        g = genres[i]
        if g != _NO_GENRE:
            seen = counts.get(g, 0)
            if seen >= cap:
                deferred.append(i)
                continue
            counts[g] = seen + 1
        diversified.append(i)
    ranked = diversified + deferred
    bits: list[int] = pool.bits.tolist()
    chosen: set[int] = set()
    for source, share in min_share.items():
        slots = max(int(share * k), 1 if k > len(min_share) else 0)
        bit = 1 << SOURCE_ORDER.index(source)
        mine: list[int] = []
        for i in ranked:
            if len(mine) >= slots:
                break
            if bits[i] & bit and i not in chosen:
                mine.append(i)
        chosen.update(mine)
    for i in ranked:
        if len(chosen) >= k:
            break
        chosen.add(i)
    picked = [i for i in ranked if i in chosen]
    return picked[:k]


def source_counts(first: npt.NDArray[np.int8]) -> dict[str, int]:
    """Candidates per first source, for the metrics (one call per stage, not per item)."""
    counts = np.bincount(first, minlength=len(SOURCE_ORDER))
    return {SOURCE_ORDER[c]: int(n) for c, n in enumerate(counts.tolist()) if n}
