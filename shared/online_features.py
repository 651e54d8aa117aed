"""Ranker features for candidates the offline job did not score: fresh and popular items.

The offline job stores, with each precomputed candidate, the exact feature row it ranked
(:class:`shared.storage.candidates.Candidates.features`); the online tier re-scores those
rows as they are. Items that reach the request by another road (neighbours of the user's
recent items, trending and popular lists, or precomputed candidates of a version written
without features) have no generator signals, so every generator reads as "not proposing
it", which is also what the offline features say about an item outside a generator's list:
z-score 0, rank ``spec.top_n`` (``logrank = log1p(top_n)``), ``in_top = 0``. The item's
popularity and the user's history length are real signals, and all of it goes through
:func:`shared.ranker.assemble_features`, the one feature path training uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shared.ranker import FeatureSpec, assemble_features

FloatArray = npt.NDArray[np.float32]
_IN_TOP = "_in_top"
HISTORY_FEATURE = "user_log_history"


def spec_members(spec: FeatureSpec) -> list[str]:
    """The generator names a ranker was trained on, in feature order."""
    return [name[: -len(_IN_TOP)] for name in spec.names if name.endswith(_IN_TOP)]


def unproposed_features(
    spec: FeatureSpec, item_popularity: Sequence[int] | npt.NDArray[np.integer], history: int
) -> FloatArray:
    """``[len(item_popularity), len(spec.names)]`` features of items no generator proposed.

    ``item_popularity`` is each item's interaction count in the bundle's catalogue
    (``n_interactions``, what the offline job calls popularity); ``history`` is the length
    of the user's history (see :func:`history_length`).
    """
    members = spec_members(spec)
    popularity = np.asarray(item_popularity, dtype=np.int64).reshape(1, -1)
    shape = popularity.shape
    z = {m: np.zeros(shape, dtype=np.float32) for m in members}
    rank = {m: np.full(shape, spec.top_n, dtype=np.int64) for m in members}
    features = assemble_features(
        members,
        z=z,
        rank=rank,
        item_popularity=popularity,
        history=np.asarray([max(int(history), 0)], dtype=np.int64),
        top_n=spec.top_n,
    )[0]
    if features.shape[1] != len(spec.names):  # a spec from another feature layout
        raise ValueError(
            f"ranker spec has {len(spec.names)} features, assembled {features.shape[1]}"
        )
    return np.asarray(features, dtype=np.float32)


def history_length(
    spec: FeatureSpec, stored: FloatArray | None, recent_items: Sequence[str]
) -> int:
    """The user's history length as the ranker knows it.

    Offline it is the number of distinct items in the user's training history; a stored
    feature row carries it (``user_log_history = log1p(n)``), so when the precomputed
    candidates have features, fresh candidates get the very same value and all of a
    user's candidates agree. Without them, the distinct items of the user's recent state
    (what the nearline tier knows) stand in.
    """
    if stored is not None and len(stored) and HISTORY_FEATURE in spec.names:
        column = spec.names.index(HISTORY_FEATURE)
        return round(float(np.expm1(np.float64(stored[0, column]))))
    return len(set(recent_items))
