"""The benchmark's floor keeps the user's candidates as the API does: the candidate version
read whole at start-up, and what a request reads afterwards exactly what it would have read
one user at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from online.bundle import load_serving_bundle
from recsys.bench.floor import Floor
from shared.registry import ModelRegistry
from shared.storage.factory import open_candidates
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates


def test_the_floor_starts_with_every_users_candidates_as_a_read_would_give_them(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(f"file://{tmp_path}/models")
    version = make_bundle(registry)
    bundle = load_serving_bundle(version, registry.path(version), device="cpu")
    store = open_candidates("memory://")
    rows = candidate_rows(n_users=12)
    publish_candidates(store, version, rows)
    try:
        filled = Floor(bundle, None, store, version)  # type: ignore[arg-type]  # no Redis used
        filled.fill()
        assert sorted(filled.cache) == sorted(r.user_id for r in rows)
        one_by_one = Floor(bundle, None, store, version)  # type: ignore[arg-type]
        for row in rows:
            read = asyncio.run(one_by_one.user_candidates(row.user_id))
            kept = filled.cache[row.user_id]
            assert read is not None and kept is not None
            assert kept.items == read.items == row.items and kept.sources == read.sources
            assert kept.features is not None and read.features is not None
            assert np.array_equal(kept.features, read.features)
            assert np.array_equal(kept.scores, read.scores)
        nothing = Floor(bundle, None, store, None)  # type: ignore[arg-type]  # no version
        nothing.fill()
        assert nothing.cache == {}
    finally:
        store.close()
