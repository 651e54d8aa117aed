"""Ranker features for candidates the offline job did not score: fresh and popular items.

The offline job stores, with each precomputed candidate, the exact feature row it ranked
(:class:`shared.storage.candidates.Candidates.features`); the online tier re-scores those
rows as they are. Items that reach the request by another road (neighbours of the user's
recent items, trending and popular lists, or precomputed candidates of a version written
without features) have no generator signals, so every generator reads as "not proposing
it", which is also what the offline features say about an item outside a generator's list:
z-score 0, rank ``spec.top_n`` (``logrank = log1p(top_n)``), ``in_top = 0``. The item's
popularity and the user's history length are real signals, and so are the per-item
extra features of newer rankers (``item_log_age``, ``item_trend``: the bundle's catalogue
stores each item's value, the one the offline job used); the per-user-and-item ones
(``covisit_recent``, ``genre_affinity``) need the user's training history, which the
request does not have, and read 0 like the generators' signals. All of it goes through
:func:`shared.ranker.assemble_features`, the one feature path training uses too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from shared.ranker import ITEM_FEATURES, FeatureSpec, assemble_features, extra_names

FloatArray = npt.NDArray[np.float32]
_IN_TOP = "_in_top"
HISTORY_FEATURE = "user_log_history"


def spec_members(spec: FeatureSpec) -> list[str]:
    """The generator names a ranker was trained on, in feature order."""
    return [name[: -len(_IN_TOP)] for name in spec.names if name.endswith(_IN_TOP)]


def unproposed_features(
    spec: FeatureSpec,
    item_popularity: Sequence[int] | npt.NDArray[np.integer],
    history: int,
    item_columns: Mapping[str, npt.NDArray[np.floating]] | None = None,
) -> FloatArray:
    """``[len(item_popularity), len(spec.names)]`` features of items no generator proposed.

    ``item_popularity`` is each item's interaction count in the bundle's catalogue
    (``n_interactions``, what the offline job calls popularity); ``history`` is the length
    of the user's history (see :func:`history_length`); ``item_columns`` holds the same
    items' values of each per-item extra feature the spec names (from the catalogue).
    Raises ``ValueError`` when the spec needs one it does not hold.
    """
    members = spec_members(spec)
    popularity = np.asarray(item_popularity, dtype=np.int64).reshape(1, -1)
    shape = popularity.shape
    z = {m: np.zeros(shape, dtype=np.float32) for m in members}
    rank = {m: np.full(shape, spec.top_n, dtype=np.int64) for m in members}
    extras: dict[str, npt.NDArray[np.floating]] = {}
    for name in extra_names(spec.names):
        if name not in ITEM_FEATURES:  # needs the user's training history: unknown here
            extras[name] = np.zeros(shape, dtype=np.float32)
        elif item_columns is None or name not in item_columns:
            raise ValueError(f"ranker needs the item feature {name!r}; the catalogue has none")
        else:
            extras[name] = np.asarray(item_columns[name], dtype=np.float32).reshape(shape)
    features = assemble_features(
        members,
        z=z,
        rank=rank,
        item_popularity=popularity,
        history=np.asarray([max(int(history), 0)], dtype=np.int64),
        top_n=spec.top_n,
        extras=extras,
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


class UnproposedRows:
    """:func:`unproposed_features` for one catalogue, computed once: in such a row only the
    item's popularity and the user's history vary (every generator column is the constant
    "not proposed"), so the rows of all items are computed here through that same function
    with history 0, and a request copies its items' rows and sets the history column, whose
    value per history length comes from the function too (and is remembered)."""

    _HISTORIES_KEPT = 10_000

    def __init__(
        self,
        spec: FeatureSpec,
        item_popularity: npt.NDArray[np.integer],
        item_columns: Mapping[str, npt.NDArray[np.floating]] | None = None,
    ) -> None:
        self.spec = spec
        self._by_item = unproposed_features(spec, item_popularity, 0, item_columns)
        names = list(spec.names)
        self._column = names.index(HISTORY_FEATURE) if HISTORY_FEATURE in names else None
        self._history: dict[int, np.float32] = {}

    def rows(self, items: npt.NDArray[np.integer], history: int) -> FloatArray:
        """``[len(items), features]``: equal to ``unproposed_features(spec, popularity of
        items, history, their item columns)``; ``items`` index the arrays the rows were
        built from."""
        out: FloatArray = self._by_item[items]
        if self._column is not None:
            out[:, self._column] = self._history_value(history)
        return out

    def _history_value(self, history: int) -> np.float32:
        found = self._history.get(history)
        if found is None:
            if len(self._history) >= self._HISTORIES_KEPT:
                self._history.clear()
            assert self._column is not None
            zero = {n: np.zeros(1, dtype=np.float32) for n in ITEM_FEATURES}
            row = unproposed_features(self.spec, np.zeros(1, dtype=np.int64), history, zero)
            found = self._history[history] = row[0, self._column]
        return found
