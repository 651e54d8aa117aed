"""Item-item co-visitation: items often consumed by the same users as the user's items.

Similarity is cosine over user sets, ``|U_i & U_j| / (|U_i|^a |U_j|^(1-a))`` (``a`` =
``asymmetry``; 0.5 is plain cosine), pruned to each item's ``neighbours`` best. The
sparse item-item matrix is what the nearline tier can serve "because you watched" from.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator

_ROW_BLOCK = 2048  # items per dense block while pruning; memory ~ block x items floats


class CovisitationGenerator(ScoringGenerator):
    name = "covisit"

    def __init__(self, neighbours: int = 100, asymmetry: float = 0.5, shrink: float = 0.0) -> None:
        self.neighbours = neighbours
        self.asymmetry = asymmetry
        self.shrink = shrink  # added to the denominator: damps pairs seen by few users
        self._similarity: sp.csr_matrix | None = None
        self._x: sp.csr_matrix | None = None

    def fit(self, interactions: sp.csr_matrix) -> Self:
        train = self._remember(interactions)
        x = train.copy()
        x.data[:] = 1.0
        xt = x.T.tocsr()
        degree = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        n_items = x.shape[1]
        blocks = []
        for start in range(0, n_items, _ROW_BLOCK):
            rows = np.arange(start, min(start + _ROW_BLOCK, n_items))
            counts = (xt[rows] @ x).toarray()
            norm = (
                np.power(degree[rows, None], self.asymmetry)
                * np.power(degree[None, :], 1.0 - self.asymmetry)
                + self.shrink
            )
            sim = np.divide(counts, norm, out=np.zeros_like(counts), where=norm > 0)
            sim[np.arange(len(rows)), rows] = 0.0
            blocks.append(_prune(sim, self.neighbours))
        self._similarity = sp.vstack(blocks).tocsr()
        self._x = x
        return self

    @property
    def similarity(self) -> sp.csr_matrix:
        if self._similarity is None:
            raise RuntimeError("covisit: call fit() first")
        return self._similarity

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self._x is None:
            raise RuntimeError("covisit: call fit() first")
        return np.asarray((self._x[user_indices] @ self.similarity).toarray(), dtype=np.float32)


def _prune(sim: npt.NDArray[np.float64], keep: int) -> sp.csr_matrix:
    """Keep each row's ``keep`` largest entries."""
    if keep < sim.shape[1]:
        drop = np.argpartition(-sim, keep, axis=1)[:, keep:]
        np.put_along_axis(sim, drop, 0.0, axis=1)
    return sp.csr_matrix(sim.astype(np.float32))
