"""Implicit-feedback matrix factorisation with the ``implicit`` library's ALS."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from offline.generators.base import FactorGenerator
from shared.device import implicit_device


class AlsGenerator(FactorGenerator):
    """Hu, Koren & Volinsky ALS; confidence = 1 + alpha * weight.

    ``bm25`` re-weights the matrix with implicit's BM25 first (down-weights heavy users
    and popular items), which often helps on MovieLens-like data.
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        bm25: tuple[float, float] | None = None,
        binary: bool = True,
        seed: int = 42,
        device: str = "auto",
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.bm25 = bm25  # (K1, B) or None
        self.binary = binary
        self.seed = seed
        self.device = implicit_device(device)  # RECSYS_DEVICE's decision, or CPU (see there)
        self.num_threads = num_threads  # implicit's own CPU threads; 0 = all cores
        self._users = None
        self._items = None

    def fit(self, interactions: sp.csr_matrix) -> Self:
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight
        from threadpoolctl import threadpool_limits

        train = self._remember(interactions)
        x = train.copy()
        if self.binary:
            x.data[:] = 1.0
        if self.bm25 is not None:
            x = sp.csr_matrix(bm25_weight(x, K1=self.bm25[0], B=self.bm25[1]), dtype=np.float32)
        # implicit parallelises itself; a multi-threaded BLAS underneath it oversubscribes
        # the cores (implicit warns of 10x slowdowns), so BLAS runs single-threaded here.
        with threadpool_limits(1, "blas"):
            model: Any = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                use_gpu=self.device == "cuda",
                num_threads=self.num_threads,
            )
            model.fit(x, show_progress=False)
        if self.device == "cuda":
            model = model.to_cpu()
        self._users = np.asarray(model.user_factors, dtype=np.float32)
        self._items = np.asarray(model.item_factors, dtype=np.float32)
        return self
