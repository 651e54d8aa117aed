"""The parameter search (offline.tune) and its params file (offline.params_file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pandas as pd
import pytest

from offline.params_file import load_params, write_params
from offline.spec import ModelParams
from offline.tune import MIN_VALID_USERS, TrialLine, tune, validation_data
from shared.data.synthetic import generate
from shared.errors import DataError
from shared.settings import Settings


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return generate(20_000, seed=3).interactions


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


def test_validation_part_is_carved_from_training_users(train: pd.DataFrame) -> None:
    data = validation_data(train, "synthetic")
    assert data.truth.shape == (len(data.users), data.n_items)
    assert (data.truth.getnnz(axis=1) > 0).all()  # every evaluated user has a target
    assert (data.fit[data.users].getnnz(axis=1) > 0).all()  # and something to go on
    # No target is an item the user already has in the fitting part.
    assert data.truth.multiply(data.fit[data.users]).nnz == 0
    # Fitting part and validation part together hold every training pair once.
    pairs = train[["user_id", "item_id"]].drop_duplicates()
    assert data.fit.nnz + data.truth.nnz <= len(pairs)
    assert data.fit.nnz > 2 * data.truth.nnz  # 75/25 per user, most users


def test_large_data_is_scored_on_a_sample_of_users(train: pd.DataFrame) -> None:
    whole = validation_data(train, "synthetic")
    sampled = validation_data(train, "synthetic", max_users=50)
    assert len(sampled.users) == 50 and sampled.sampled_from == len(whole.users)
    assert set(sampled.users) <= set(whole.users)


def test_too_little_data_names_what_it_needs() -> None:
    tiny = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "rating": 1.0, "timestamp": 0}
    )
    with pytest.raises(DataError, match=f"too little data to tune.*at least {MIN_VALID_USERS}"):
        validation_data(tiny, "tiny.csv")


def test_search_finds_parameters_and_resumes(settings: Settings, train: pd.DataFrame) -> None:
    lines: list[TrialLine] = []
    first = tune(
        settings, train, label="synthetic", fingerprint="f1", trials=4, minutes=None,
        on_trial=lines.append,
    )  # fmt: skip
    assert [line.number for line in lines] == [0, 1, 2, 3]
    assert first.trials == 4 and first.complete >= 1
    assert 0.0 < first.value <= 1.0
    assert set(first.members) == {"ease", "covisit", "als"}
    assert set(first.params.blend_weights) == {"ease", "covisit", "als"}
    assert first.params != ModelParams()  # the search's own values, not the defaults
    assert (settings.home / "tune" / "studies.db").is_file()

    again = tune(settings, train, label="synthetic", fingerprint="f1", trials=2, minutes=None)
    assert again.study == first.study and again.trials == 6  # resumed, not restarted
    assert again.value >= first.value  # the best of more trials

    with pytest.raises(DataError, match="made on other data"):
        tune(settings, train, label="other", fingerprint="f2", study=first.study, trials=1)


def test_a_budget_is_required(settings: Settings, train: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="--trials or --minutes"):
        tune(settings, train, label="s", fingerprint="f", trials=None, minutes=None)


def test_item_item_generators_are_left_out_above_their_catalogue_limit(
    settings: Settings, train: pd.DataFrame
) -> None:
    base = ModelParams(item_item_max_items=10)
    result = tune(settings, train, label="s", fingerprint="f3", trials=2, minutes=None, base=base)
    assert set(result.members) == {"als"}
    assert set(result.params.blend_weights) == {"als"}
    assert result.params.ease_l2 == base.ease_l2  # not searched


def test_params_file_round_trip(settings: Settings, train: pd.DataFrame, tmp_path: Path) -> None:
    result = tune(settings, train, label="synthetic", fingerprint="f4", trials=2, minutes=None)
    path = write_params(tmp_path / "best.json", result, "synthetic")
    params, tuned = load_params(path)
    assert params == dataclasses.replace(ModelParams(), **_searched(result.params))
    assert tuned["study"] == result.study and tuned["trials"] == 2
    assert tuned["validation_ndcg@10"] == pytest.approx(result.value, abs=1e-6)


def _searched(params: ModelParams) -> dict[str, object]:
    keys = ("ease_l2", "als_factors", "als_regularization", "als_alpha", "als_iterations")
    more = ("covisit_neighbours", "covisit_asymmetry", "blend_weights")
    return {key: getattr(params, key) for key in (*keys, *more)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", 'an object with a "params" object'),
        (orjson.dumps({"params": {"ease_l3": 1.0}}), "unknown key.*ease_l3"),
        (
            orjson.dumps({"params": {"blend_weights": {"sasrec": 1.0}}}),
            "unknown generator.*sasrec",
        ),
        (orjson.dumps({"params": {"blend_weights": {"ease": -1}}}), "at least 0"),
        (orjson.dumps({"params": {"als_factors": 2.5}}), "als_factors must be an integer"),
        (orjson.dumps({"params": {"als_factors": 0}}), "als_factors must be an integer >= 1"),
        (orjson.dumps({"params": {"ease_l2": "big"}}), "ease_l2 must be a finite number"),
        (orjson.dumps({"params": {"ease_l2": True}}), "ease_l2 must be a number"),
    ],
)
def test_bad_params_file_is_one_line_naming_file_and_key(
    tmp_path: Path, body: bytes, message: str
) -> None:
    path = tmp_path / "params.json"
    path.write_bytes(body)
    with pytest.raises(DataError, match=message) as info:
        load_params(path)
    assert str(info.value).startswith(f"--params {path}: ")
    assert "\n" not in str(info.value)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_params(tmp_path / "nope.json")


def test_partial_params_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(orjson.dumps({"params": {"ease_l2": 250, "seed": 0}}))
    params, tuned = load_params(path)
    assert params == dataclasses.replace(ModelParams(), ease_l2=250.0)
    assert tuned == {}
