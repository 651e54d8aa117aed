"""Fresh candidates: the items nearest to a user's recent items, each with the item that
brought it, so the online tier can say "because you watched X".

Computed on request from the user state rather than precomputed by the worker: it is always
as fresh as the state itself (nothing to lag behind), costs the worker nothing per event,
and `recsys bench nearline` measures it well under a millisecond for a 10-seed query on a
flat index (see the README for the figures). Only the item-to-item neighbours behind them
can be kept (``table_width``: asked of the index once, when a bundle loads, and read per
request); which of them a user gets still follows the state. It depends only on ``shared``
and on an index with ``search(vectors, k) -> (ids, scores)`` (``shared.index.ItemIndex``),
so the online tier can call it without importing anything else from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from shared.bundle import Embeddings
from shared.storage.user_state import UserState

IntArray = npt.NDArray[np.int64]
_NO_ROWS: IntArray = np.empty(0, dtype=np.int64)
_NO_SCORES: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)
_TABLE_CHUNK = 10  # seeds per search when the table is built: a request's own batch size


class VectorIndex(Protocol):
    """What ``shared.index.ItemIndex`` offers: rows of the embedding matrix, best first."""

    def search(
        self, vectors: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...


class FreshCandidate(NamedTuple):
    item_id: str
    score: float  # inner product with the seed, discounted by the seed's recency rank
    because: str  # the recent item whose neighbour this is


class FreshCandidates:
    """Neighbours of recent items over one bundle's embeddings and index (built once)."""

    def __init__(
        self,
        embeddings: Embeddings,
        index: VectorIndex,
        *,
        seeds: int = 10,
        recency_discount: float = 0.9,
        table_width: int = 0,
    ) -> None:
        self.embeddings = embeddings
        self.index = index
        self.seeds = seeds
        self.recency_discount = recency_discount
        self._rows: Mapping[str, int] = embeddings.position()
        self._discounts = recency_discount ** np.arange(max(seeds, 1), dtype=np.float64)
        # Each item's nearest neighbours, best first, searched once (``table_width`` of
        # them; 0: none kept, every request searches the index).
        self.table: tuple[IntArray, npt.NDArray[np.float32]] | None = (
            self._neighbours(table_width) if table_width > 0 else None
        )

    def _neighbours(self, width: int) -> tuple[IntArray, npt.NDArray[np.float32]]:
        """``(ids, scores)``, ``[items, width]``: what the index answers each item's vector,
        asked in batches the size of a request's, so that a row is what a request's search
        of the same item returns (the same kernel, bit for bit)."""
        vectors = self.embeddings.vectors
        n = len(vectors)
        ids = np.empty((n, width), dtype=np.int64)
        scores = np.empty((n, width), dtype=np.float32)
        for start in range(0, n, _TABLE_CHUNK):
            stop = min(n, start + _TABLE_CHUNK)
            ids[start:stop], scores[start:stop] = self.index.search(vectors[start:stop], width)
        return ids, scores

    def __call__(self, state: UserState, k: int = 50) -> list[FreshCandidate]:
        """Up to ``k`` items, best first; items in the recent list are never returned."""
        seeds: list[str] = []
        for item in state.recent_items:  # most recent first; a rewatch seeds once
            if item in self._rows and item not in seeds:
                seeds.append(item)
                if len(seeds) == self.seeds:
                    break
        rows = np.fromiter((self._rows[s] for s in seeds), dtype=np.int64, count=len(seeds))
        seen = np.fromiter(
            (self._rows[i] for i in set(state.recent_items) if i in self._rows), dtype=np.int64
        )
        found, values, seed_of = self.search(rows, seen, k, len(set(state.recent_items)))
        names = self.embeddings.ids
        return [
            FreshCandidate(names[row], value, seeds[seed])
            for row, value, seed in zip(
                found.tolist(), values.tolist(), seed_of.tolist(), strict=True
            )
        ]

    def search(
        self, seeds: IntArray, seen: IntArray, k: int, n_seen: int | None = None
    ) -> tuple[IntArray, npt.NDArray[np.float64], IntArray]:
        """The array form: ``seeds`` are embedding rows, most recent first and distinct (at
        most ``self.seeds`` are used), ``seen`` the rows never to return; ``n_seen`` how many
        distinct recent items the user has (known or not: the search asks for ``k`` more
        than that). Returns rows, scores and each row's seed position, best first."""
        seeds = seeds[: self.seeds]
        if not len(seeds) or k <= 0:
            return _NO_ROWS, _NO_SCORES, _NO_ROWS
        extra = len(seen) if n_seen is None else n_seen
        wanted = k + extra
        if self.table is not None and wanted <= self.table[0].shape[1]:
            ids, scores = self.table[0][seeds, :wanted], self.table[1][seeds, :wanted]
        else:
            ids, scores = self.index.search(self.embeddings.vectors[seeds], wanted)
        # In numpy rather than a loop over seeds x neighbours (the request path's hot spot),
        # in as few array operations as it takes (each costs a few microseconds here):
        # each item keeps its best discounted score, a tie going to the more recent seed;
        # then best score first, ties by row.
        width = ids.shape[1]
        values = (scores.astype(np.float64) * self._discounts[: len(seeds), None]).ravel()
        flat = ids.ravel()
        blocked = np.zeros(len(self.embeddings.ids) + 1, dtype=bool)
        blocked[-1] = True  # FAISS pads with -1 where fewer than k exist: the last slot
        blocked[seen] = True
        at = np.flatnonzero(~blocked[flat])  # seed-major: an earlier seed comes first
        found, best = flat[at], values[at]
        order = np.lexsort((-best, found))  # per item, best first (stable: earlier seed)
        first = np.empty(len(order), dtype=bool)
        first[:1] = True
        by_item = found[order]
        np.not_equal(by_item[1:], by_item[:-1], out=first[1:])
        keep = order[first]
        found, best, seed_of = found[keep], best[keep], at[keep] // width
        top = np.lexsort((found, -best))[:k]
        return found[top], best[top], seed_of[top]


def fresh_candidates(
    state: UserState, embeddings: Embeddings, index: VectorIndex, k: int = 50
) -> list[FreshCandidate]:
    """One-off form of :class:`FreshCandidates` (which keeps the id -> row map between calls)."""
    return FreshCandidates(embeddings, index)(state, k)
