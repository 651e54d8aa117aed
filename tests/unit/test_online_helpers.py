"""A small hand-made bundle and candidates for the online tests (no Spark, milliseconds).

Items ``i0`` .. ``i{n-1}`` with clustered vectors (``i0`` is most popular), four genres,
a ranker that starts from a blend prior, and precomputed candidates with their feature
rows for users ``u0`` .. ``u{users-1}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared import bundle as layout
from shared import drift
from shared.bundle import Embeddings, write_embeddings
from shared.index import build_index
from shared.ranker import FeatureSpec, Ranker, assemble_features, feature_names
from shared.registry import ModelRegistry
from shared.storage.candidates import Candidates, CandidateStore

GENRES = ("Drama", "Comedy", "Action", "Horror")
MEMBERS = ("ease", "als")
TOP_N = 20


def item_ids(n: int) -> list[str]:
    return [f"i{j}" for j in range(n)]


def make_bundle(
    registry: ModelRegistry, n_items: int = 120, seed: int = 0, scores: Any = None
) -> str:
    """Publish (not promote) a bundle; returns its version. With ``scores`` (validation
    scores of its ranker) it has a drift profile, else none, as bundles before it."""
    rng = np.random.default_rng(seed)
    ids = item_ids(n_items)
    centres = rng.normal(size=(len(GENRES), 8))
    vectors = centres[np.arange(n_items) % len(GENRES)] + 0.3 * rng.normal(size=(n_items, 8))
    vectors = vectors.astype(np.float32)
    names = feature_names(MEMBERS)
    spec = FeatureSpec(
        names=names,
        mean=(0.0,) * len(names),
        std=(1.0,) * len(names),
        hidden=(8,),
        top_n=TOP_N,
        prior=tuple({"ease_z": 1.0, "als_z": 2.0, "item_log_pop": 0.1}.get(n, 0.0) for n in names),
    )
    with registry.create(parent=None, data_fingerprint="hand-made", params={"seed": seed}) as b:
        write_embeddings(b.path, layout.ITEM_IDS, layout.ITEM_VECTORS, Embeddings(ids, vectors))
        users = rng.normal(size=(10, 8)).astype(np.float32)
        write_embeddings(
            b.path, layout.USER_IDS, layout.USER_VECTORS, Embeddings(user_ids(10), users)
        )
        build_index(vectors).save(b.path / layout.INDEX_DIR)
        Ranker.new(spec, device="cpu", seed=seed).save(b.path / layout.RANKER_DIR)
        counts = np.arange(n_items, 0, -1) * 10
        pd.DataFrame(
            {
                "item_id": ids,
                "title": [f"Movie {i}" for i in ids],
                "year": [1990 + j % 30 for j in range(n_items)],
                "genres": [[GENRES[j % len(GENRES)]] for j in range(n_items)],
                "n_interactions": counts,
                "popularity_rank": np.arange(1, n_items + 1),
                "trending_score": [
                    float(n_items - j) if j % 7 == 3 else 0.0 for j in range(n_items)
                ],
            }
        ).to_parquet(b.path / layout.CATALOGUE, index=False)
        if scores is not None:
            buckets = drift.popularity_buckets(counts)
            rows = np.arange(1000) % n_items
            profile = drift.training_profile(rows, rows % 50, buckets, scores=scores)
            drift.write_profile(b.path, profile, buckets)
        version = b.version
    return version


def user_ids(n: int) -> list[str]:
    return [f"u{j}" for j in range(n)]


def candidate_rows(n_users: int = 10, n_items: int = 120, per_user: int = 30) -> list[Candidates]:
    """Per user: items from the back half of the catalogue, with feature rows as the
    offline job writes them (ranks in each member's list, z-scores, popularity, history)."""
    rng = np.random.default_rng(1)
    rows = []
    for u, user in enumerate(user_ids(n_users)):
        picks = rng.choice(np.arange(n_items // 2, n_items), per_user, replace=False)
        z = {m: rng.normal(size=(1, per_user)).astype(np.float32) for m in MEMBERS}
        rank = {m: rng.integers(0, TOP_N + 5, size=(1, per_user)) for m in MEMBERS}
        popularity = ((n_items - picks) * 10).reshape(1, -1)
        features = assemble_features(
            MEMBERS,
            z=z,
            rank=rank,
            item_popularity=popularity,
            history=np.asarray([5 + u]),
            top_n=TOP_N,
        )[0]
        scores = features[:, 0] + 2 * features[:, 3]
        order = np.argsort(-scores, kind="stable")
        sources = ["+".join(m for m in MEMBERS if rank[m][0, j] < TOP_N) or "ranker" for j in order]
        rows.append(
            Candidates(
                user,
                [f"i{picks[j]}" for j in order],
                [float(scores[j]) for j in order],
                sources,
                features[order],
            )
        )
    return rows


def publish_candidates(store: CandidateStore, version: str, rows: list[Candidates]) -> None:
    store.init_schema()
    store.write(version, rows)
    store.activate(version)


def bundle_dir(registry: ModelRegistry, version: str) -> Path:
    return registry.path(version)
