"""The candidate-generator interface and the top-n selection every generator shares.

A generator is fitted on a user x item CSR matrix of interaction weights (dense indices;
see :mod:`offline.generators.matrix`) and answers, for a batch of users, their best
``n`` items with scores. Generators here score every item for a batch of users
(:meth:`ScoringGenerator.score`); that is exact and cheap for catalogues of up to tens
of thousands of items. Beyond that the FAISS index of the offline tier takes over.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

ItemArray = npt.NDArray[np.int32]
ScoreArray = npt.NDArray[np.float32]
# Users scored at once: bounds the dense [users, items] score block to a few hundred MB
# for catalogues of ~50k items.
_BATCH_USERS = 1024


class CandidateGenerator(ABC):
    """Fit on interactions, then recommend ``n`` items per user."""

    name: str = "generator"

    @abstractmethod
    def fit(self, interactions: sp.csr_matrix) -> Self:
        """Learn from a users x items matrix of interaction weights (non-zero = seen)."""

    @abstractmethod
    def recommend(
        self, user_indices: npt.ArrayLike, n: int, exclude_seen: bool = True
    ) -> tuple[ItemArray, ScoreArray]:
        """``(items [u, n] int32, scores [u, n] float32)``, best first.

        Slots beyond the items available are ``-1`` with score ``-inf``.
        """

    def item_embeddings(self) -> npt.NDArray[np.float32] | None:
        """``[items, d]`` vectors whose dot product with a user vector scores; None if the
        model has none."""
        return None

    def user_embeddings(self) -> npt.NDArray[np.float32] | None:
        return None


class ScoringGenerator(CandidateGenerator):
    """A generator that scores every item for a batch of users; recommend is shared.

    Items without any training interaction are never returned: nothing is known about
    them (and the benchmark recommends from the training catalogue only).
    """

    _train: sp.csr_matrix | None = None

    @abstractmethod
    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Dense ``[u, items]`` scores (higher is better)."""

    def _remember(self, interactions: sp.csr_matrix) -> sp.csr_matrix:
        """Keep the training matrix (for seen-item masks) in canonical CSR form."""
        train = sp.csr_matrix(interactions, dtype=np.float32)
        train.sum_duplicates()
        train.eliminate_zeros()
        self._train = train
        self._known = np.diff(train.tocsc().indptr) > 0
        return train

    @property
    def train_matrix(self) -> sp.csr_matrix:
        if self._train is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        return self._train

    def recommend(
        self, user_indices: npt.ArrayLike, n: int, exclude_seen: bool = True
    ) -> tuple[ItemArray, ScoreArray]:
        users = np.asarray(user_indices, dtype=np.int64).reshape(-1)
        train = self.train_matrix
        items = np.full((len(users), n), -1, dtype=np.int32)
        scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        # 0 where an item is known, -inf where not: one in-place add masks a whole block.
        unknown = np.where(self._known, np.float32(0.0), np.float32(-np.inf))
        for start in range(0, len(users), _BATCH_USERS):
            batch = users[start : start + _BATCH_USERS]
            block = np.array(self.score(batch), dtype=np.float32, copy=True)
            block += unknown
            if exclude_seen:
                seen = train[batch]
                block[
                    np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices
                ] = -np.inf
            top_items, top_scores = top_n(block, n)
            items[start : start + len(batch)] = top_items
            scores[start : start + len(batch)] = top_scores
        return items, scores


class FactorGenerator(ScoringGenerator):
    """A matrix factorisation: score = user vector . item vector. Subclasses set
    ``_users`` ``[users, d]`` and ``_items`` ``[items, d]`` in ``fit``."""

    _users: npt.NDArray[np.float32] | None = None
    _items: npt.NDArray[np.float32] | None = None

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self._users is None or self._items is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self._users[user_indices] @ self._items.T

    def item_embeddings(self) -> npt.NDArray[np.float32] | None:
        return self._items

    def user_embeddings(self) -> npt.NDArray[np.float32] | None:
        return self._users


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: leave as is), then
    restore the previous setting. Small torch work runs on one thread: on a busy 2-core
    machine a second OpenMP thread is often descheduled and every call waits for it."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def top_n(scores: npt.NDArray[np.float32], n: int) -> tuple[ItemArray, ScoreArray]:
    """Best ``n`` columns per row, best first; ties by lower index; ``-inf`` slots -> -1."""
    n_rows, n_cols = scores.shape
    width = min(n, n_cols)
    if width < n_cols:
        # torch.topk selects in one pass, 7x faster than np.argpartition on [1024, 40000]
        # (0.74 s against 5.1 s on the loaded 2-core machine). Which of several items tied
        # at the cut gets in is arbitrary with either; the order inside is fixed below.
        block = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
        with torch_threads(1):
            candidates = torch.topk(block, width, dim=1, sorted=False).indices.numpy()
    else:
        candidates = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    cand_scores = np.take_along_axis(scores, candidates, axis=1)
    # lexsort: last key first -> by score descending, then by item index.
    order = np.lexsort((candidates, -cand_scores), axis=1)
    top_items = np.take_along_axis(candidates, order, axis=1).astype(np.int32)
    top_scores = np.take_along_axis(cand_scores, order, axis=1).astype(np.float32)
    top_items[~np.isfinite(top_scores)] = -1
    items = np.full((n_rows, n), -1, dtype=np.int32)
    out_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
    items[:, :width] = top_items
    out_scores[:, :width] = top_scores
    return items, out_scores
