"""Ranker behaviour on planted data: seen items stay out, learning helps, files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]
import torch

from offline.generators.base import ScoringGenerator
from offline.generators.ease import EaseGenerator
from offline.generators.popularity import PopularityGenerator
from offline.metrics import ranking_metrics
from offline.ranker_training import (
    CandidateSet,
    TrainConfig,
    build_candidates,
    candidate_labels,
    rank_candidates,
    train_ranker,
)
from shared.ranker import Ranker

TOP_N = 12


def planted(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """150 users in 3 taste groups of 15 items, plus 6 items everyone half-likes.

    Returns (fit, valid, test): each user's items split at random 50/25/25.
    Popular items have more interactions than any group item, so a ranker that only
    follows popularity loses to one that learns to trust the personalised generator.
    """
    rng = np.random.default_rng(seed)
    n_users, group, n_groups, n_popular = 150, 15, 3, 6
    dense = np.zeros((n_users, group * n_groups + n_popular), dtype=np.float32)
    for u in range(n_users):
        g = u % n_groups
        dense[u, g * group : (g + 1) * group] = rng.random(group) < 0.7
        dense[u, n_groups * group :] = rng.random(n_popular) < 0.5
    part = rng.random(dense.shape)
    return (
        sp.csr_matrix(dense * (part < 0.5)),
        sp.csr_matrix(dense * ((part >= 0.5) & (part < 0.75))),
        sp.csr_matrix(dense * (part >= 0.75)),
    )


def members() -> list[ScoringGenerator]:
    return [PopularityGenerator(), EaseGenerator(l2=10.0)]


@pytest.fixture(scope="module")
def trained() -> tuple[Ranker, CandidateSet, sp.csr_matrix, sp.csr_matrix]:
    torch.set_num_threads(1)
    fit, valid, test = planted()
    cands = build_candidates([m.fit(fit) for m in members()], fit, TOP_N)
    # compare_users=0: the trained net itself, not what a comparison would serve instead
    config = TrainConfig(hidden=(16,), epochs=8, lr=1e-2, device="cpu", seed=0, compare_users=0.0)
    ranker, report = train_ranker(cands, candidate_labels(cands, valid), config)
    assert report.positives > 0
    train = fit + valid
    test_cands = build_candidates([m.fit(train) for m in members()], train, TOP_N)
    return ranker, test_cands, train, test


def test_seen_items_never_come_back(
    trained: tuple[Ranker, CandidateSet, sp.csr_matrix, sp.csr_matrix],
) -> None:
    ranker, cands, train, _ = trained
    ranked = rank_candidates(ranker, cands, 10)
    assert ranked.shape == (train.shape[0], 10)
    for u in range(train.shape[0]):
        assert not set(ranked[u][ranked[u] >= 0]) & set(train[u].indices)
        assert len(set(ranked[u][ranked[u] >= 0])) == int((ranked[u] >= 0).sum())


def test_planted_positives_score_above_random_negatives(
    trained: tuple[Ranker, CandidateSet, sp.csr_matrix, sp.csr_matrix],
) -> None:
    ranker, cands, _, test = trained
    labels = candidate_labels(cands, test)
    u, c, f = cands.features.shape
    scores = ranker.score(cands.features.reshape(u * c, f)).reshape(u, c)
    negatives = cands.valid & ~labels
    assert scores[labels].mean() > scores[negatives].mean()
    # A better model scores better: the trained ranker beats an untrained one of the
    # same shape on the held-out part.
    untrained = Ranker.new(ranker.spec, "cpu", seed=1)
    good = ranking_metrics(rank_candidates(ranker, cands, 10), test, 10).ndcg
    bad = ranking_metrics(rank_candidates(untrained, cands, 10), test, 10).ndcg
    assert good > bad


def test_saved_and_loaded_model_gives_identical_scores(
    trained: tuple[Ranker, CandidateSet, sp.csr_matrix, sp.csr_matrix], tmp_path: Path
) -> None:
    ranker, cands, _, _ = trained
    flat = cands.features.reshape(-1, cands.features.shape[-1])
    loaded = Ranker.load(ranker.save(tmp_path / "ranker"), device="cpu")
    assert loaded.spec == ranker.spec
    np.testing.assert_array_equal(loaded.score(flat), ranker.score(flat))
