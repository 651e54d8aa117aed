"""What a model bundle holds and how the tiers read it.

The offline job writes a bundle through :meth:`shared.registry.ModelRegistry.create`; the
nearline worker (session vectors) and the online API (index, ranker, catalogue) read the
live one. The layout, relative to the bundle folder::

    manifest.json                 version, parent, data fingerprint, params, metrics, files
    embeddings/item_ids.json      item ids, in the row order of items.npy
    embeddings/items.npy          float32 [items, d]: item vectors (ALS item factors)
    embeddings/user_ids.json      user ids, in the row order of users.npy
    embeddings/users.npy          float32 [users, d]: user vectors (ALS user factors)
    index/                        FAISS index over items.npy (see shared.index.ItemIndex)
    ranker/                       the torch ranker (see shared.ranker.Ranker)
    catalogue.parquet             one row per item: item_id, title, year, genres,
                                  n_interactions, popularity_rank, trending_score
    report.json, report.md        the evaluation report of the run that built the bundle
    evaluation/holdout.parquet    (--holdout runs) the test file the bundle was scored on
    drift/profile.json            histograms of the training data (see shared.drift); bundles
                                  written before it have none, and serve without drift metrics
    drift/item_buckets.npy        int8 [items]: each item's popularity decile (0: the top tenth)

Paths are built here and nowhere else, so a reader and the writer cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shared.errors import RecsysError

EMBEDDINGS_DIR = "embeddings"
ITEM_IDS = f"{EMBEDDINGS_DIR}/item_ids.json"
ITEM_VECTORS = f"{EMBEDDINGS_DIR}/items.npy"
USER_IDS = f"{EMBEDDINGS_DIR}/user_ids.json"
USER_VECTORS = f"{EMBEDDINGS_DIR}/users.npy"
INDEX_DIR = "index"
RANKER_DIR = "ranker"
CATALOGUE = "catalogue.parquet"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
HOLDOUT = "evaluation/holdout.parquet"  # the test file of a --holdout run, to re-evaluate
DRIFT_PROFILE = "drift/profile.json"
DRIFT_ITEM_BUCKETS = "drift/item_buckets.npy"  # in the row order of ITEM_IDS


class BundleError(RecsysError):
    """A bundle folder that lacks a file it should have, or holds inconsistent ones."""


@dataclass(frozen=True)
class Embeddings:
    """Vectors with their ids: row ``i`` of ``vectors`` belongs to ``ids[i]``."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise BundleError(
                f"embeddings: {len(self.ids)} ids but vectors of shape {self.vectors.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def position(self) -> dict[str, int]:
        """id -> row."""
        return {item: row for row, item in enumerate(self.ids)}


def write_embeddings(
    folder: Path, ids_file: str, vectors_file: str, embeddings: Embeddings
) -> None:
    (folder / ids_file).parent.mkdir(parents=True, exist_ok=True)
    (folder / ids_file).write_text(json.dumps(embeddings.ids), encoding="utf-8")
    np.save(folder / vectors_file, np.ascontiguousarray(embeddings.vectors, dtype=np.float32))


def read_embeddings(folder: Path, ids_file: str, vectors_file: str) -> Embeddings:
    ids_path, vectors_path = folder / ids_file, folder / vectors_file
    for path in (ids_path, vectors_path):
        if not path.is_file():
            raise BundleError(f"bundle {folder}: missing {path.relative_to(folder)}")
    ids = [str(i) for i in json.loads(ids_path.read_text(encoding="utf-8"))]
    vectors = np.load(vectors_path, allow_pickle=False).astype(np.float32, copy=False)
    return Embeddings(ids, vectors)


def item_embeddings(bundle: Path) -> Embeddings:
    """The item vectors of the bundle at ``bundle`` (what session vectors average)."""
    return read_embeddings(bundle, ITEM_IDS, ITEM_VECTORS)


def user_embeddings(bundle: Path) -> Embeddings:
    return read_embeddings(bundle, USER_IDS, USER_VECTORS)
