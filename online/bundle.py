"""A model bundle made ready to serve: everything a request needs, loaded once.

:func:`load_serving_bundle` reads the ranker (onto the device that
``shared.device.resolve_device`` decides from ``device``, the API passing ``RECSYS_DEVICE``,
then warmed up so the first request pays no lazy initialisation), the FAISS index, the
item vectors and the catalogue. A request takes one reference to a :class:`ServingBundle`
and uses only that, so a swap to a new bundle never mixes two bundles inside one answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from online.arrays import CatalogueArrays
from shared import bundle as layout
from shared.drift import Profile, read_profile
from shared.fresh import FreshCandidates
from shared.index import ItemIndex
from shared.online_features import UnproposedRows
from shared.ranker import ITEM_FEATURES, Ranker
from shared.registry import verify_bundle

_WARMUP_ROWS = (1, 64, 512)
# Neighbours kept per item for the fresh candidates: the fresh quota (50) plus the recent
# items a state keeps (50), the defaults; up to this many items (24 MB at 12 bytes each).
NEIGHBOUR_TABLE_WIDTH = 100
NEIGHBOUR_TABLE_MAX_ITEMS = 20_000


@dataclass(frozen=True)
class CatalogueItem:
    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    n_interactions: int
    popularity_rank: int
    trending_score: float
    # Per-item ranker features the catalogue stores (shared.ranker.ITEM_FEATURES), by
    # name; empty for bundles written before them.
    features: tuple[tuple[str, float], ...] = ()


@dataclass
class ServingBundle:
    """One bundle's ranker, index, vectors and catalogue; read-only once built."""

    version: str
    path: Path
    ranker: Ranker | None
    index: ItemIndex
    fresh: FreshCandidates
    items: dict[str, CatalogueItem]
    popular: list[str]  # by popularity rank
    trending: list[str]  # by trending score, items with a score only
    rows: dict[str, int] = field(default_factory=dict)  # item id -> row of the vectors
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    # Histograms of the training data (shared.drift); None for a bundle written without:
    # it serves the same, and /metrics then has no drift series.
    drift: Profile | None = None

    def __post_init__(self) -> None:
        # Dense indices and per-item arrays of the request path (see online.arrays).
        items = self.items
        self.catalogue = CatalogueArrays.build(
            self.fresh.embeddings.ids,
            titles={i: item.title for i, item in items.items()},
            popularity={i: item.n_interactions for i, item in items.items()},
            first_genre={i: item.genres[0] for i, item in items.items() if item.genres},
            popular=self.popular,
            trending=self.trending,
        )
        # Per-item ranker features over the catalogue's indices ([n + 1]; the last slot,
        # an item this bundle does not know, reads 0 like its popularity).
        self.item_columns: dict[str, np.ndarray] = {}
        for item, i in self.catalogue.index.items():
            found = items.get(item)
            for name, value in found.features if found is not None else ():
                column = self.item_columns.get(name)
                if column is None:
                    column = np.zeros(self.catalogue.size + 1, dtype=np.float32)
                    self.item_columns[name] = column
                column[i] = value
        self.unproposed: UnproposedRows | None = None
        if self.ranker is not None:
            try:
                self.unproposed = UnproposedRows(
                    self.ranker.spec, self.catalogue.popularity, self.item_columns
                )
            except ValueError:  # a ranker of another feature layout: each request says so
                self.unproposed = None

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` items nearest to ``item_id`` (itself excluded); [] for unknown items."""
        if item_id not in self.rows:
            return []
        vector = self.fresh.embeddings.vectors[self.rows[item_id]][None, :]
        ids, scores = self.index.search(vector, k + 1)
        out = []
        for row, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
            other = self.fresh.embeddings.ids[row] if row >= 0 else None
            if other is not None and other != item_id:
                out.append((other, float(score)))
        return out[:k]


def _table_width(index: ItemIndex) -> int:
    """How many neighbours per item the bundle keeps from its index (0: none): on an exact
    (flat) index of at most ``NEIGHBOUR_TABLE_MAX_ITEMS`` items, enough for the default
    fresh quota with every recent item a state keeps; a request that asks for more, or an
    approximate index (HNSW, whose answer depends on how many are asked for), searches."""
    if index.kind != "flat" or index.size > NEIGHBOUR_TABLE_MAX_ITEMS:
        return 0
    return min(NEIGHBOUR_TABLE_WIDTH, index.size)


def load_serving_bundle(version: str, path: Path, device: str = "auto") -> ServingBundle:
    """Check, load and warm a bundle; raises ``CorruptBundle`` when a file is missing or
    changed since the bundle was written, or the loader's error (the old bundle keeps
    serving either way)."""
    started = time.perf_counter()
    verify_bundle(path)
    ranker = None
    if (path / layout.RANKER_DIR).is_dir():
        ranker = Ranker.load(path / layout.RANKER_DIR, device=device).freeze()
        width = len(ranker.spec.names)
        for rows in _WARMUP_ROWS:  # allocator, kernels, lazy CUDA context: before traffic
            ranker.score(np.zeros((rows, width), dtype=np.float32))
    index = ItemIndex.load(path / layout.INDEX_DIR)
    embeddings = layout.item_embeddings(path)
    items = _catalogue(path / layout.CATALOGUE)
    popular = sorted(items, key=lambda i: (items[i].popularity_rank, i))
    trending = [
        i
        for i in sorted(items, key=lambda i: (-items[i].trending_score, items[i].popularity_rank))
        if items[i].trending_score > 0
    ]
    return ServingBundle(
        version=version,
        path=path,
        ranker=ranker,
        index=index,
        fresh=FreshCandidates(embeddings, index, table_width=_table_width(index)),
        items=items,
        popular=popular,
        trending=trending,
        rows=embeddings.position(),
        load_seconds=time.perf_counter() - started,
        drift=read_profile(path) if ranker is not None else None,
    )


def _catalogue(path: Path) -> dict[str, CatalogueItem]:
    out: dict[str, CatalogueItem] = {}
    records: list[dict[str, Any]] = pd.read_parquet(path).to_dict("records")  # type: ignore[assignment]
    for row in records:
        item = str(row["item_id"])
        year, genres = row.get("year"), row.get("genres")
        out[item] = CatalogueItem(
            item_id=item,
            title=str(row.get("title") or item),
            year=None if year is None or pd.isna(year) else int(year),
            genres=tuple(str(g) for g in genres) if genres is not None else (),
            n_interactions=int(row["n_interactions"]),
            popularity_rank=int(row["popularity_rank"]),
            trending_score=float(row["trending_score"]),
            features=tuple(
                (name, float(row[name]))
                for name in ITEM_FEATURES
                if name in row and row[name] is not None and not pd.isna(row[name])
            ),
        )
    return out
