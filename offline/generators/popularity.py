"""Most popular items: the cold-start fallback and the baseline every model must beat."""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator


class PopularityGenerator(ScoringGenerator):
    """Scores an item by how many distinct users interacted with it."""

    name = "popularity"

    def __init__(self) -> None:
        self._counts: npt.NDArray[np.float32] | None = None

    def fit(self, interactions: sp.csr_matrix) -> Self:
        train = self._remember(interactions)
        self._counts = np.diff(train.tocsc().indptr).astype(np.float32)
        return self

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self._counts is None:
            raise RuntimeError("popularity: call fit() first")
        return np.broadcast_to(self._counts, (len(user_indices), len(self._counts)))
