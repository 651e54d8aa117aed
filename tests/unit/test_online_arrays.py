"""The served request path (on arrays) gives the same answers as the item-by-item path it
replaced (:mod:`tests.unit.reference_path`), over hundreds of random user states."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from online import arrays, blend
from online.bundle import ServingBundle, load_serving_bundle
from online.experiments import ARMS
from online.holder import BundleHolder
from online.metrics import OnlineMetrics
from online.recommend import CachedCandidates, Recommended, Recommender, _Gathered
from online.stores import StoreSlot
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.candidates import Candidates
from shared.storage.user_state import UserState
from tests.unit.reference_path import reference_items
from tests.unit.test_online_helpers import candidate_rows, make_bundle

N_ITEMS = 120
CASES = 600


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ServingBundle:
    registry = ModelRegistry(f"file://{tmp_path_factory.mktemp('models')}")
    version = make_bundle(registry, n_items=N_ITEMS)
    return load_serving_bundle(version, registry.path(version), device="cpu")


def recommender(bundle: ServingBundle, settings: Settings) -> Recommender:
    executor = ThreadPoolExecutor(1)
    metrics = OnlineMetrics()
    registry = ModelRegistry(f"file://{bundle.path.parent}")
    slot: StoreSlot[Any] = StoreSlot("none", lambda: None, executor, 1.0)
    return Recommender(settings, BundleHolder(registry, "cpu", metrics), slot, slot, metrics)


def random_case(
    rng: np.random.Generator, bundle: ServingBundle, rows: list[Candidates]
) -> dict[str, Any]:
    """One request: a user state, candidates, exclusions, arm, k and settings, each drawn
    to cover a branch of the path (cold users, stores missing, old candidate layouts...)."""
    ids = [f"i{j}" for j in range(N_ITEMS)]
    pick = lambda n: [ids[j] for j in rng.integers(0, N_ITEMS, n)]  # noqa: E731
    failures: dict[str, str] = {}
    state: UserState | None = None
    if rng.random() < 0.15:
        failures["user_state"] = "timeout after 30 ms"  # Redis missing
    elif rng.random() < 0.85:
        recent = pick(int(rng.integers(0, 20)))  # repeats: a rewatch
        if rng.random() < 0.3:
            recent.insert(int(rng.integers(0, len(recent) + 1)), "never-heard-of")
        vector = None
        if rng.random() < 0.6:
            dim = bundle.index.dim if rng.random() < 0.8 else bundle.index.dim + 1
            vector = rng.normal(size=dim).astype(np.float32)
        state = UserState("u", recent_items=recent, session_vector=vector)
    cands: Candidates | None = None
    if rng.random() < 0.15:
        failures["candidates"] = "unavailable (circuit open after 5 failures)"  # Cassandra
    elif rng.random() < 0.85:
        cands = _vary(rng, rows[int(rng.integers(0, len(rows)))])
    exclude = set(pick(int(rng.integers(0, 8))))
    if rng.random() < 0.2:
        exclude.add("x-unknown")
    if cands is not None and cands.items and rng.random() < 0.3:
        exclude.add(cands.items[0])
    quotas = {}
    if rng.random() < 0.03:  # nothing may be proposed: an empty answer
        quotas = dict.fromkeys(
            ("precomputed_quota", "fresh_quota", "trending_quota", "popular_quota"), 0
        )
    elif rng.random() < 0.4:
        quotas = {
            "precomputed_quota": int(rng.integers(0, 40)),
            "fresh_quota": int(rng.integers(0, 60)),
            "trending_quota": int(rng.integers(0, 25)),
            "popular_quota": int(rng.integers(0, 120)),
        }
    return {
        "state": state,
        "cands": cands,
        "failures": failures,
        "exclude": exclude,
        "arm": ARMS[str(rng.choice(list(ARMS)))],
        "k": int(rng.choice([1, 2, 3, 5, 10, 10, 10, 20, 50, 100])),
        "settings": Settings(genre_cap=float(rng.choice([0.2, 0.5, 0.5, 1.0])), **quotas),
    }


def _vary(rng: np.random.Generator, row: Candidates) -> Candidates:
    """The stored row, or a variant the store can hold: no features, features of another
    ranker layout, no generator labels, items this bundle does not know, an empty list."""
    draw = rng.random()
    if draw < 0.1:
        return dataclasses.replace(row, features=None)
    if draw < 0.15:
        return dataclasses.replace(row, features=np.zeros((len(row.items), 3), np.float32))
    if draw < 0.25:
        return dataclasses.replace(row, sources=[])
    if draw < 0.35:
        items = list(row.items)
        for j in rng.choice(len(items), 3, replace=False):
            items[j] = f"gone-{j}"
        return dataclasses.replace(row, items=items)
    if draw < 0.38:
        return Candidates(row.user_id, [], [], [], None)
    return row


def served(rec: Recommender, bundle: ServingBundle, case: dict[str, Any]) -> list[Recommended]:
    got = _Gathered(
        state=case["state"],
        cached=None if case["cands"] is None else CachedCandidates(case["cands"]),
        failures=dict(case["failures"]),
    )
    settings: Settings = case["settings"]
    rec.settings, rec.quotas = settings, quotas_of(settings)
    return rec._compute(bundle, case["arm"], got, case["k"], set(case["exclude"]))


def quotas_of(settings: Settings) -> blend.Quotas:
    return blend.Quotas(
        precomputed=settings.precomputed_quota,
        fresh=settings.fresh_quota,
        trending=settings.trending_quota,
        popular=settings.popular_quota,
    )


def reference(bundle: ServingBundle, case: dict[str, Any]) -> list[Recommended]:
    settings: Settings = case["settings"]
    return reference_items(
        bundle,
        case["arm"],
        state=case["state"],
        cands=case["cands"],
        failures=case["failures"],
        k=case["k"],
        exclude=set(case["exclude"]),
        quotas=quotas_of(settings),
        genre_cap=settings.genre_cap,
    )


def test_same_answers_as_the_item_by_item_path(bundle: ServingBundle) -> None:
    rng = np.random.default_rng(2026)
    rows = candidate_rows(n_users=10, n_items=N_ITEMS)
    rec = recommender(bundle, Settings())
    branches = {"cold": 0, "fresh": 0, "session": 0, "extras": 0, "blend": 0, "empty": 0}
    for n in range(CASES):
        case = random_case(rng, bundle, rows)
        new, old = served(rec, bundle, case), reference(bundle, case)
        where = f"case {n}: {case}"
        assert [r.item_id for r in new] == [r.item_id for r in old], where
        assert [r.sources for r in new] == [r.sources for r in old], where
        assert [r.reason for r in new] == [r.reason for r in old], where
        np.testing.assert_allclose(
            [r.score for r in new], [r.score for r in old], rtol=0, atol=1e-5, err_msg=where
        )
        reasons = {r.reason for r in new}
        branches["cold"] += any("new here" in r for r in reasons)
        branches["fresh"] += any(r.startswith("because you watched") for r in reasons)
        branches["session"] += "close to what you watched this session" in reasons
        branches["extras"] += any(r.item_id.startswith("gone-") for r in new)
        branches["blend"] += not case["arm"].rerank
        branches["empty"] += not new
    # The draw reached every branch it is there for (else the comparison proves less).
    assert all(count > 0 for count in branches.values()), branches


def test_catalogue_indices_put_embedded_items_first(bundle: ServingBundle) -> None:
    catalogue = bundle.catalogue
    assert catalogue.ids[: catalogue.embedded] == bundle.fresh.embeddings.ids
    assert [catalogue.ids[i] for i in catalogue.popular.tolist()] == bundle.popular
    assert [catalogue.ids[i] for i in catalogue.trending.tolist()] == bundle.trending
    first = catalogue.index["i0"]
    assert catalogue.titles[first] == bundle.items["i0"].title
    assert catalogue.popularity[first] == bundle.items["i0"].n_interactions
    assert catalogue.popularity[catalogue.size] == 0  # the slot of unknown items
    assert catalogue.genre[catalogue.size] == -1


def test_select_defers_a_full_genre_and_keeps_fresh_slots() -> None:
    # Five items of genre 0 scored above one of genre 1; cap 2 of 4: genre 0 fills two
    # slots, then genre 1, then genre 0 again; the one fresh item keeps its slot.
    index = np.arange(6)
    pool = arrays.Pool(
        index=index,
        first=np.zeros(6, np.int8),
        bits=np.array([1, 1, 1, 1, 1, 2], np.int8),
        score=np.zeros(6),
        rank=index,
        because=np.full(6, -1),
        stored_row=np.full(6, -1),
        label=np.zeros(6, np.int32),
    )
    scores = np.array([6, 5, 4, 3, 2, 1], np.float32)
    genre = np.array([0, 0, 0, 0, 0, 1], np.int32)
    chosen = arrays.select(pool, scores, 4, genre=genre, genre_cap=0.5)
    assert chosen == [0, 1, 5, 2]


def test_packed_candidates_keep_unknown_items_apart(bundle: ServingBundle, tmp_path: Path) -> None:
    row = Candidates("u", ["i3", "gone", "i5"], [3.0, 2.0, 1.0], ["ease", "", "als"])
    packed = arrays.PackedCandidates.pack(bundle.version, row, bundle.catalogue)
    n = bundle.catalogue.size
    assert packed.index.tolist() == [bundle.catalogue.index["i3"], n, bundle.catalogue.index["i5"]]
    assert packed.extras == ("gone",)
    assert [packed.labels[c] for c in packed.label.tolist()] == [
        "precomputed:ease",
        "precomputed",
        "precomputed:als",
    ]
    assert packed.item_id(n, bundle.catalogue) == "gone"
