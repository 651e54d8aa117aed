"""Weighted fusion of several generators' scores, the simplest ensemble worth having.

Scores of different models live on different scales, so each member's scores are first
standardised per user over the candidate items (z-score), or turned into reciprocal-rank
scores ``1 / (rrf_k + rank)``; then the weighted sum ranks the items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator

Fusion = Literal["zscore", "rrf"]


class BlendGenerator(ScoringGenerator):
    name = "blend"

    def __init__(
        self,
        members: Sequence[ScoringGenerator],
        weights: Sequence[float],
        fusion: Fusion = "zscore",
        rrf_k: float = 60.0,
    ) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("blend: one weight per member, at least one member")
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.fusion = fusion
        self.rrf_k = rrf_k

    def fit(self, interactions: sp.csr_matrix) -> Self:
        self._remember(interactions)
        for member in self.members:
            member.fit(interactions)
        return self

    def use_fitted(self, interactions: sp.csr_matrix) -> Self:
        """Adopt members already fitted on ``interactions`` (e.g. while tuning weights)."""
        self._remember(interactions)
        return self

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        known = self._known
        seen = self.train_matrix[user_indices]
        total = np.zeros((len(user_indices), len(known)), dtype=np.float64)
        for member, weight in zip(self.members, self.weights, strict=True):
            if weight == 0.0:
                continue
            raw = np.array(member.score(user_indices), dtype=np.float64, copy=True)
            # Normalise over the items that can be recommended, so seen items (often the
            # highest raw scores) do not squash everyone else's scale.
            mask = np.zeros_like(raw, dtype=bool)
            mask[:, ~known] = True
            mask[np.repeat(np.arange(len(user_indices)), np.diff(seen.indptr)), seen.indices] = True
            total += weight * _normalise(raw, mask, self.fusion, self.rrf_k)
        return total.astype(np.float32)


def _normalise(
    raw: npt.NDArray[np.float64], masked: npt.NDArray[np.bool_], fusion: Fusion, rrf_k: float
) -> npt.NDArray[np.float64]:
    values = np.where(masked, np.nan, raw)
    if fusion == "zscore":
        mean = np.nanmean(values, axis=1, keepdims=True)
        std = np.nanstd(values, axis=1, keepdims=True)
        out = (values - mean) / np.where(std > 0, std, 1.0)
    else:
        order = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(values.shape[1])[None, :], axis=1)
        out = 1.0 / (rrf_k + ranks + 1.0)
    return np.where(masked, 0.0, out)
