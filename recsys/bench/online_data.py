"""The data of ``recsys bench online``: a synthetic bundle, precomputed candidates with their
feature rows, and user state (recent items) for its users, on stores of the run's own.

Also the visitors' population file: the known users, the items they have seen (which no
answer may contain) and the catalogue, most popular first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.bench.traffic import Population

MEMBERS = ("ease", "als", "covisit")
TOP_N = 50


def prepare(
    env: dict[str, str], *, users: int, items: int, dim: int, per_user: int, population: Path
) -> float:
    """Bundle, candidates with features, user state and the population file; returns the
    seconds it took."""
    from shared.registry import ModelRegistry
    from shared.storage.factory import open_candidates, open_user_state
    from shared.storage.user_state import StateEvent

    started = time.perf_counter()
    rng = np.random.default_rng(7)
    registry = ModelRegistry(env["RECSYS_REGISTRY_URL"])
    version = synthetic_bundle(registry, items, dim, rng)
    store = open_candidates(env["RECSYS_CANDIDATES_URL"])
    try:
        store.init_schema()
        store.write(version, _candidates(rng, users, items, per_user))
        store.activate(version)
    finally:
        store.close()
    registry.promote(version)
    state = open_user_state(env["RECSYS_USER_STATE_URL"], ttl_s=3600, recent_cap=50)
    try:
        state.init_schema()
        now = time.time()
        seen = {
            f"u{u}": [f"i{i}" for i in rng.integers(0, items, 10).tolist()] for u in range(users)
        }
        events = [
            StateEvent(f"b{user}-{j}", user, item, "play", now - j)
            for user, watched in seen.items()
            for j, item in enumerate(watched)
        ]
        for start in range(0, len(events), 5000):
            state.apply_events(events[start : start + 5000], half_life_s=1800)
    finally:
        state.close()
    people = Population([f"u{u}" for u in range(users)], [f"i{i}" for i in range(items)], seen)
    population.write_bytes(people.to_json())
    return time.perf_counter() - started


def synthetic_bundle(
    registry: Any,
    items: int,
    dim: int,
    rng: np.random.Generator,
    hidden: tuple[int, ...] = (64, 32),
) -> str:
    """A bundle with every file the online tier reads; the ranker starts from a blend prior
    (``hidden``: its layers; wide ones make a bundle that is slow to serve)."""
    import pandas as pd

    from shared import bundle as layout
    from shared.bundle import Embeddings, write_embeddings
    from shared.index import build_index
    from shared.ranker import FeatureSpec, Ranker, feature_names

    ids = [f"i{j}" for j in range(items)]
    vectors = rng.normal(size=(items, dim)).astype(np.float32)
    names = feature_names(MEMBERS)
    prior = {"ease_z": 1.0, "als_z": 2.0, "covisit_z": 0.5}
    spec = FeatureSpec(
        names,
        (0.0,) * len(names),
        (1.0,) * len(names),
        hidden,
        TOP_N,
        tuple(prior.get(n, 0.0) for n in names),
    )
    genres = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Horror")
    counts = (1e5 / np.arange(1, items + 1) ** 0.8).astype(np.int64)
    with registry.create(None, "bench-online", {"items": items, "dim": dim}) as bundle:
        write_embeddings(
            bundle.path, layout.ITEM_IDS, layout.ITEM_VECTORS, Embeddings(ids, vectors)
        )
        write_embeddings(
            bundle.path, layout.USER_IDS, layout.USER_VECTORS, Embeddings(["u0"], vectors[:1])
        )
        build_index(vectors).save(bundle.path / layout.INDEX_DIR)
        Ranker.new(spec, device="cpu").save(bundle.path / layout.RANKER_DIR)
        pd.DataFrame(
            {
                "item_id": ids,
                "title": [f"Title {i}" for i in ids],
                "year": 2000 + np.arange(items) % 25,
                "genres": [[genres[j % len(genres)]] for j in range(items)],
                "n_interactions": counts,
                "popularity_rank": np.arange(1, items + 1),
                "trending_score": np.where(np.arange(items) % 9 == 0, counts / 10, 0.0),
            }
        ).to_parquet(bundle.path / layout.CATALOGUE, index=False)
        version: str = bundle.version
    return version


def _candidates(rng: np.random.Generator, users: int, items: int, n: int) -> Any:
    from shared.ranker import assemble_features
    from shared.storage.candidates import Candidates

    for u in range(users):
        picks = rng.choice(items, n, replace=False)
        z = {m: rng.normal(size=(1, n)) for m in MEMBERS}
        rank = {m: rng.integers(0, TOP_N + 10, size=(1, n)) for m in MEMBERS}
        features = assemble_features(
            MEMBERS,
            z=z,
            rank=rank,
            item_popularity=(1e5 / (picks + 1) ** 0.8).astype(np.int64)[None, :],
            history=np.asarray([20]),
            top_n=TOP_N,
        )[0]
        scores = features[:, 0] + 2 * features[:, 3] + 0.5 * features[:, 6]
        order = np.argsort(-scores)
        yield Candidates(
            f"u{u}",
            [f"i{picks[j]}" for j in order],
            [float(scores[j]) for j in order],
            ["ease+als"] * n,
            features[order],
        )
