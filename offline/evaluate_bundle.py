"""``recsys offline evaluate BUNDLE``: score a bundle's stored candidate lists again.

The lists are read back from the candidate store (under the bundle's version, live or
not) and scored on the test part the bundle was evaluated on: the pipeline's split
output named in the manifest, or the holdout copy kept in the bundle. The result should
equal the run's own metrics; a difference means the store lost or reordered something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offline.generators.matrix import IdIndex
from offline.pipeline.run import default_work_dir
from offline.report import Evaluation, metrics_of
from offline.spec import Fitted, RankedLists
from shared.bundle import HOLDOUT
from shared.errors import DataError
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates


def _split_dir(settings: Settings, version: str) -> Path:
    keys = ModelRegistry(settings.registry_url).get(version).params.get("pipeline_keys") or {}
    split_dir = default_work_dir(settings) / "split" / str(keys.get("split"))
    if not (split_dir / "train").exists():
        raise DataError(
            f"bundle {version}: its pipeline output {split_dir} is gone; rerun the offline job"
        )
    return split_dir


def bundle_train(settings: Settings, version: str) -> pd.DataFrame:
    """The training part bundle ``version`` was fitted on (all of it with ``--split none``)."""
    return pd.read_parquet(_split_dir(settings, version) / "train")


def bundle_split(settings: Settings, version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test parts bundle ``version`` was fitted and scored on."""
    registry = ModelRegistry(settings.registry_url)
    split_dir = _split_dir(settings, version)
    train = pd.read_parquet(split_dir / "train")
    if (registry.path(version) / HOLDOUT).is_file():
        return train, pd.read_parquet(registry.path(version) / HOLDOUT)
    if (split_dir / "test").exists():
        return train, pd.read_parquet(split_dir / "test")
    raise DataError(f"bundle {version}: trained on everything (split none); no test part")


def evaluate_bundle(settings: Settings, version: str) -> dict[str, Any]:
    registry = ModelRegistry(settings.registry_url)
    params = registry.get(version).params
    train, test = bundle_split(settings, version)
    return score_lists(settings, version, train, test, int(params.get("k", 10)))


def score_lists(
    settings: Settings, version: str, train: pd.DataFrame, test: pd.DataFrame, k: int
) -> dict[str, Any]:
    """Bundle ``version``'s stored top-``k`` lists scored on ``test``, with ``train`` as what
    the users had already seen (the promotion gate scores two bundles on one holdout)."""
    index = IdIndex.from_frames(train)
    matrix = index.matrix(train)
    popularity = np.diff(matrix.tocsc().indptr).astype(np.int64)
    fitted = Fitted(index, matrix, [], popularity, None, None, {}, {})
    items = np.full((len(index.users), k), -1, dtype=np.int32)
    with_lists = 0
    store = open_candidates(settings.candidates_url)
    try:
        wanted = set(test["user_id"].astype(str))
        for row, user in enumerate(index.users):
            if str(user) not in wanted:
                continue
            found = store.get(str(user), version)
            if found is None:
                continue
            with_lists += 1
            codes = index.items.get_indexer(pd.Index(found.items[:k]))
            items[row, : len(codes)] = codes
    finally:
        store.close()
    lists = RankedLists(items, np.zeros(items.shape, dtype=np.float32), [[] for _ in index.users])
    evaluation = Evaluation(fitted, lists, test, k)
    metrics = metrics_of(evaluation.recommended, evaluation, popularity, matrix.shape[0])
    return {
        "version": version,
        "users": len(evaluation.users),
        "users_with_lists": with_lists,
        "metrics": metrics,
    }
