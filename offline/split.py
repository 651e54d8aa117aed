"""Train/test splits of an interactions frame (pure pandas/numpy, deterministic).

* :func:`benchmark_split` reproduces Microsoft Recommenders' ``python_stratified_split``
  (per-user random split), the protocol behind their published MovieLens tables.
* :func:`validation_split` applies the same protocol to a training part, so that tuning
  never looks at the test part.
* :func:`temporal_split` cuts the whole log at one point in time: what production does
  (train on the past, evaluate on the future).

Every function returns ``(train, test)`` frames holding the input's rows (and columns)
in the input's row order; the index is kept so a row can be traced back to its source.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

BENCHMARK_SEED = 42
# Differs from the benchmark seed so that the validation draw is not correlated with the
# draw that made the test part (both would otherwise start from the same random stream).
VALIDATION_SEED = 4242
VALIDATION_RATIO = 0.75  # share of each user's training rows kept to fit on


def benchmark_split(
    df: pd.DataFrame,
    ratio: float = 0.75,
    seed: int = BENCHMARK_SEED,
    min_rating: int | None = None,
    user_col: str = "user_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split: for each user, a ``ratio`` share of their rows goes to train.

    Follows ``python_stratified_split(data, ratio, min_rating, filter_by="user", seed)``:
    one uniform number per row from a legacy ``RandomState(seed)`` drawn in row order
    (the stream ``np.random.seed(seed); np.random.rand(n)`` gives), rows sorted by user
    then by that number, and a row goes to train when its rank within the user divided
    by the user's row count is ``<= ratio``. Fed the rows of ``u.data`` in file order
    (as ``shared.data.movielens.load_ratings`` returns them), it selects the same rows.

    Differences from the original, none of which changes which rows land where:
    it does not touch numpy's global random state, returns rows in input order (not
    sorted by user), and does not need integer ids. ``min_rating`` keeps the original's
    meaning: the minimum number of rows a user needs to be kept at all (None or 1: all).
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be between 0 and 1, got {ratio}")
    if min_rating is not None and min_rating > 1:
        counts = df.groupby(user_col, sort=False)[user_col].transform("size")
        df = df[counts.to_numpy() >= min_rating]
    in_train = _stratified_mask(df[user_col], ratio, seed)
    return df[in_train], df[~in_train]


def validation_split(
    train: pd.DataFrame,
    ratio: float = VALIDATION_RATIO,
    seed: int = VALIDATION_SEED,
    user_col: str = "user_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a validation part out of ``train`` with the benchmark's per-user protocol.

    Returns ``(fit, validation)``: tune on models fitted to ``fit`` and scored on
    ``validation``; then refit on the whole ``train`` with the chosen parameters.
    """
    return benchmark_split(train, ratio=ratio, seed=seed, user_col=user_col)


def temporal_split(
    df: pd.DataFrame, test_fraction: float, time_col: str = "timestamp"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time cut: train holds the events before the cut, test those at or after it.

    The cut is the timestamp of the first event in the last ``test_fraction`` of events
    (sorted by time); all events sharing that timestamp go to test, so no second is split
    in two. Test users without training events are kept: they are the cold-start slice.
    """
    times = df[time_col].to_numpy()
    if len(times) == 0:
        _check_fraction(test_fraction)
        return df, df
    in_train = times < temporal_cut(times, test_fraction)
    return df[in_train], df[~in_train]


def temporal_cut(times: npt.ArrayLike, test_fraction: float) -> int:
    """The cut of :func:`temporal_split`: events before it train, the rest test.

    Needs only the timestamps, so a big log can be cut without moving its rows (the
    pipeline collects this one column and filters in Spark).
    """
    _check_fraction(test_fraction)
    ordered = np.sort(np.asarray(times), kind="stable")
    if len(ordered) == 0:
        raise ValueError("temporal_cut: no timestamps")
    position = min(int(np.floor(len(ordered) * (1.0 - test_fraction))), len(ordered) - 1)
    return int(ordered[position])


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")


def _stratified_mask(users: pd.Series, ratio: float, seed: int) -> np.ndarray:
    """True for rows whose within-user random rank is in the first ``ratio`` share."""
    return stratified_mask(pd.factorize(users)[0], ratio, seed)


def validation_mask(user_codes: npt.NDArray[np.integer]) -> np.ndarray:
    """:func:`validation_split`'s fit rows (True) as a mask over rows given by their user
    codes in first-seen order, for a caller that has factorised the users already."""
    return stratified_mask(user_codes, VALIDATION_RATIO, VALIDATION_SEED)


def stratified_mask(codes: npt.NDArray[np.integer], ratio: float, seed: int) -> np.ndarray:
    """:func:`benchmark_split`'s train mask from the rows' user codes in first-seen order
    (``pd.factorize``'s codes), for a caller that has factorised the users already."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be between 0 and 1, got {ratio}")
    codes = np.asarray(codes)
    draws = np.random.RandomState(seed).rand(len(codes))
    # lexsort sorts by the last key first: user, then the random draw (no ties in practice).
    order = np.lexsort((draws, codes))
    sorted_codes = codes[order]
    counts = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_in_user = np.arange(len(order)) - starts[sorted_codes] + 1
    # Same float arithmetic as the original: rank / count (float64) compared with ratio.
    in_train_sorted = rank_in_user / counts[sorted_codes] <= ratio
    mask = np.empty(len(order), dtype=bool)
    mask[order] = in_train_sorted
    return mask
