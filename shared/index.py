"""FAISS inner-product index over item embeddings (e.g. ALS item factors).

In shared because the offline job builds it and the online tier and the nearline bench
query it.

Small catalogues get an exact index (``IndexFlatIP``): brute force over a few thousand
vectors is microseconds and needs no tuning. Above ``hnsw_threshold`` items an HNSW graph
(``IndexHNSWFlat`` with the inner-product metric) keeps queries sub-linear; its recall
against exact search is measured with :func:`measure_recall` and belongs in the bundle's
metrics. The kind chosen and its parameters are recorded in ``ItemIndex.params``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

IndexKind = Literal["flat", "hnsw"]
INDEX_FILE = "items.faiss"
META_FILE = "items.json"
HNSW_THRESHOLD = 50_000  # items; below it exact search is fast enough for serving


@dataclass
class ItemIndex:
    """A FAISS index whose ids are the rows of the embedding matrix it was built from."""

    index: Any  # faiss.Index (faiss ships no type information)
    kind: IndexKind
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(
        self, vectors: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids [n, k], scores [n, k])``, best first; ids -1 where fewer than k exist."""
        queries = _as_float32_2d(vectors)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(int(self.params["ef_search"]), k)
        scores, ids = self.index.search(queries, k)
        return np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32)

    def save(self, path: str | Path) -> Path:
        import faiss

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        meta = {"kind": self.kind, "params": self.params, "size": self.size, "dim": self.dim}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ItemIndex:
        import faiss

        folder = Path(path)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return cls(faiss.read_index(str(folder / INDEX_FILE)), meta["kind"], meta["params"])


def build_index(
    embeddings: npt.ArrayLike,
    kind: Literal["auto", "flat", "hnsw"] = "auto",
    *,
    hnsw_threshold: int = HNSW_THRESHOLD,
    m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
) -> ItemIndex:
    """Index ``[items, d]`` embeddings; ``"auto"`` picks by catalogue size."""
    import faiss

    vectors = _as_float32_2d(embeddings)
    n, d = vectors.shape
    chosen: IndexKind
    index: Any  # faiss classes are untyped
    if kind == "auto":
        chosen = "hnsw" if n > hnsw_threshold else "flat"
    elif kind in ("flat", "hnsw"):
        chosen = kind
    else:
        raise ValueError(f"kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
    params: dict[str, Any] = {"requested": kind, "hnsw_threshold": hnsw_threshold}
    if chosen == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        params.update(m=m, ef_construction=ef_construction, ef_search=ef_search)
    index.add(vectors)
    return ItemIndex(index, chosen, params)


def exact_search(
    embeddings: npt.ArrayLike, queries: npt.ArrayLike, k: int
) -> npt.NDArray[np.int64]:
    """Ground truth: the ``k`` items of highest inner product, by brute force."""
    return build_index(embeddings, "flat").search(queries, k)[0]


def measure_recall(
    index: ItemIndex, embeddings: npt.ArrayLike, queries: npt.ArrayLike, k: int
) -> dict[str, float]:
    """Recall@k of ``index`` against exact search (the share of true top-k ids found)."""
    truth = exact_search(embeddings, queries, k)
    found = index.search(queries, k)[0]
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
    wanted = int((truth >= 0).sum())
    return {
        f"recall@{k}": hits / max(wanted, 1),
        "queries": float(len(truth)),
        "items": float(index.size),
    }


def _as_float32_2d(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    array = np.ascontiguousarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {array.shape}")
    return array
