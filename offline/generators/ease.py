"""EASE (Steck, 2019): a closed-form item-item linear model.

``B = I - P / diag(P)`` with ``P = (X^T X + lambda I)^-1`` and a zero diagonal; scores are
``X B``. One dense ``items x items`` inverse, so this is for catalogues that fit in
memory (``max_items``); it is often the strongest simple model on dense datasets.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator


class EaseGenerator(ScoringGenerator):
    name = "ease"

    def __init__(self, l2: float = 500.0, binary: bool = True, max_items: int = 30_000) -> None:
        self.l2 = l2
        self.binary = binary  # weights are usually confidences, not targets
        self.max_items = max_items
        self._weights: npt.NDArray[np.float32] | None = None
        self._x: sp.csr_matrix | None = None

    def fit(self, interactions: sp.csr_matrix) -> Self:
        train = self._remember(interactions)
        n_items = train.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"ease: {n_items} items need a {n_items}^2 dense inverse; over max_items="
                f"{self.max_items} use ALS or co-visitation"
            )
        x = train.copy()
        if self.binary:
            x.data[:] = 1.0
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n_items)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        weights[np.diag_indices(n_items)] = 0.0
        self._weights = weights.astype(np.float32)
        self._x = x
        return self

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self._weights is None or self._x is None:
            raise RuntimeError("ease: call fit() first")
        return np.asarray(self._x[user_indices] @ self._weights, dtype=np.float32)
