"""Drift: how far live traffic has moved from the data a bundle was trained on.

The offline job stores a :class:`Profile` of its training data in each bundle
(``drift/profile.json``, with ``drift/item_buckets.npy``: each item's popularity bucket, in
the row order of ``embeddings/item_ids.json``). The nearline worker keeps the same counts over
a sliding :class:`EventWindow` of live events, the API a :class:`ScoreWindow` of the ranker
scores it served, and :func:`compare` gives, per feature, the population stability index
and the Jensen-Shannon divergence between the two histograms. The bins are fixed by the
bundle, so a live histogram and the training one always count the same things:

- ``popularity``: events by the popularity decile of their item among the bundle's items
  (bucket 0: the 10% most popular), events on unknown items left out;
- ``event_type``: events by type (only when the training data carried types: the event lake);
- ``user_events``: users by how many events they have in the window, in log2 buckets
  (1, 2-3, 4-7, ..., 1024+); the training figure counts the last ``window`` training events,
  so a live window of the same length is comparable;
- ``unseen_items``: events on items the bundle has never seen, against those it has
  (training: the test part's share, 0 without one);
- ``score``: the ranker scores of the items served, in bins whose edges are the deciles of the
  scores it gave the items it would have served its validation users.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared import bundle as layout

EPSILON = 1e-4  # an empty bin counts as this share, so PSI and JS stay finite
POPULARITY_BUCKETS = 10
USER_EVENT_BUCKETS = 11  # log2 buckets: 1, 2-3, 4-7, ..., 512-1023, 1024+
SCORE_BINS = 10
DEFAULT_WINDOW = 50_000  # events in a window (the training figure counts as many)
MIN_EVENTS = 1_000  # a window smaller than this is noise: not compared
MIN_SCORES = 500
EVENT_FEATURES = ("popularity", "event_type", "user_events", "unseen_items")
SCORE_FEATURE = "score"

Counts = npt.NDArray[np.float64]


def shares(counts: npt.ArrayLike, eps: float = EPSILON) -> Counts:
    """Counts as shares, every bin at least ``eps`` (then renormalised)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    p = c / total if total > 0 else np.full(len(c), 1.0 / max(len(c), 1))
    p = np.maximum(p, eps)
    out: Counts = p / p.sum()
    return out


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, eps: float = EPSILON) -> float:
    """Population stability index: sum of (actual - expected) * ln(actual / expected)."""
    p, q = shares(expected, eps), shares(actual, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js(expected: npt.ArrayLike, actual: npt.ArrayLike, eps: float = EPSILON) -> float:
    """Jensen-Shannon divergence in bits: symmetric, 0 for equal shares, at most 1."""
    p, q = shares(expected, eps), shares(actual, eps)
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def popularity_buckets(popularity: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """Each item's popularity decile among the items (0: the most popular tenth), from its
    interaction count; ties keep the item order."""
    pop = np.asarray(popularity)
    order = np.argsort(-pop, kind="stable")
    buckets = np.empty(len(pop), dtype=np.int8)
    buckets[order] = (np.arange(len(pop)) * POPULARITY_BUCKETS // max(len(pop), 1)).astype(np.int8)
    return buckets


def user_event_histogram(per_user: npt.ArrayLike) -> Counts:
    """Users per log2 bucket of their event count (counts of 0 are left out)."""
    n = np.asarray(per_user, dtype=np.int64)
    n = n[n > 0]
    buckets = np.minimum(np.log2(n).astype(np.int64), USER_EVENT_BUCKETS - 1)
    return np.bincount(buckets, minlength=USER_EVENT_BUCKETS).astype(np.float64)


def score_edges(scores: npt.ArrayLike, bins: int = SCORE_BINS) -> list[float]:
    """The inner bin edges: the quantiles of ``scores`` (duplicates dropped)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return []
    return sorted({float(x) for x in np.quantile(s, np.linspace(0, 1, bins + 1)[1:-1])})


def score_histogram(scores: npt.ArrayLike, edges: Sequence[float]) -> Counts:
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    at = np.searchsorted(np.asarray(edges, dtype=np.float64), s, side="right")
    return np.bincount(at, minlength=len(edges) + 1).astype(np.float64)


@dataclass(frozen=True)
class Profile:
    """Histograms of a bundle's training data (counts; :func:`shares` makes them shares)."""

    window: int  # training events the popularity, user and type figures count
    popularity: list[float]
    user_events: list[float]
    unseen_items: list[float]  # [seen, unseen]
    event_types: dict[str, float] | None = None
    score_edges: list[float] | None = None
    scores: list[float] | None = None

    def histograms(self) -> dict[str, Counts]:
        out = {
            "popularity": np.asarray(self.popularity),
            "user_events": np.asarray(self.user_events),
            "unseen_items": np.asarray(self.unseen_items),
        }
        if self.event_types is not None:
            out["event_type"] = np.asarray(list(self.event_types.values()))
        if self.scores is not None:
            out[SCORE_FEATURE] = np.asarray(self.scores)
        return out


def training_profile(
    train_items: npt.NDArray[np.integer[Any]],
    train_users: npt.NDArray[np.integer[Any]],
    item_buckets: npt.NDArray[np.int8],
    *,
    test_known: npt.NDArray[np.bool_] | None = None,
    event_types: Mapping[str, int] | None = None,
    scores: npt.ArrayLike | None = None,
    window: int = DEFAULT_WINDOW,
) -> Profile:
    """The profile of training rows given in time order (item and user codes): its last
    ``window`` rows; ``test_known`` says for each test row whether its item was trained on."""
    items, users = train_items[-window:], train_users[-window:]
    _, per_user = np.unique(users, return_counts=True)
    unseen = 0 if test_known is None else int((~test_known).sum())
    seen = len(items) if test_known is None else int(test_known.sum())
    edges = score_edges(scores) if scores is not None else None
    return Profile(
        window=len(items),
        popularity=np.bincount(item_buckets[items], minlength=POPULARITY_BUCKETS).tolist(),
        user_events=user_event_histogram(per_user).tolist(),
        unseen_items=[float(seen), float(unseen)],
        event_types=None if event_types is None else {k: float(v) for k, v in event_types.items()},
        score_edges=edges,
        scores=None if edges is None else score_histogram(scores, edges).tolist(),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Reference:
    """A bundle's profile with its items' popularity buckets (what the live side needs)."""

    version: str
    profile: Profile
    item_buckets: dict[str, int]


def write_profile(folder: Path, profile: Profile, item_buckets: npt.NDArray[np.int8]) -> None:
    """Into a bundle's staging folder (the manifest then covers both files)."""
    (folder / layout.DRIFT_PROFILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / layout.DRIFT_PROFILE).write_text(json.dumps(asdict(profile)), encoding="utf-8")
    np.save(folder / layout.DRIFT_ITEM_BUCKETS, item_buckets.astype(np.int8))


def read_profile(bundle: Path) -> Profile | None:
    """The bundle's profile, or None for a bundle written without one."""
    path = bundle / layout.DRIFT_PROFILE
    if not path.is_file():
        return None
    return Profile(**json.loads(path.read_text(encoding="utf-8")))


def read_reference(bundle: Path, version: str, item_ids: Sequence[str]) -> Reference | None:
    """Profile and item buckets of the bundle (``item_ids``: its item_ids.json), or None."""
    profile = read_profile(bundle)
    if profile is None:
        return None
    buckets = np.load(bundle / layout.DRIFT_ITEM_BUCKETS, allow_pickle=False)
    return Reference(version, profile, dict(zip(item_ids, buckets.tolist(), strict=True)))


def compare(profile: Profile, live: Mapping[str, Counts]) -> dict[str, tuple[float, float]]:
    """Feature -> (PSI, JS) for the features both sides have."""
    reference = profile.histograms()
    return {
        name: (psi(reference[name], counts), js(reference[name], counts))
        for name, counts in live.items()
        if name in reference and len(reference[name]) == len(counts)
    }


NOT_INTERACTION = -2  # the bucket of an event that is no interaction (an impression)


class EventWindow:
    """The last ``capacity`` events as three numpy rings: popularity bucket (-1: unknown
    item, :data:`NOT_INTERACTION`: counted for its type only, as training rows hold no
    impression), event type code (-1: a type the profile does not list) and user hash.
    Appended per batch; the histograms are counted only when asked (a scrape)."""

    def __init__(self, capacity: int, types: Sequence[str] = ()) -> None:
        self.capacity = capacity
        self.types = {t: i for i, t in enumerate(types)}
        self._buckets = np.zeros(capacity, dtype=np.int8)
        self._types = np.zeros(capacity, dtype=np.int8)
        self._users = np.zeros(capacity, dtype=np.int64)
        self._next = 0
        self.size = 0
        self._lock = threading.Lock()  # a scrape reads from another thread

    def add(
        self,
        buckets: npt.NDArray[np.int8],
        types: npt.NDArray[np.int8],
        users: npt.NDArray[np.int64],
    ) -> None:
        n = len(buckets)
        if n > self.capacity:
            buckets, types, users = (
                buckets[-self.capacity :],
                types[-self.capacity :],
                users[-self.capacity :],
            )
            n = self.capacity
        with self._lock:
            at = (self._next + np.arange(n)) % self.capacity
            self._buckets[at], self._types[at], self._users[at] = buckets, types, users
            self._next = (self._next + n) % self.capacity
            self.size = min(self.size + n, self.capacity)

    def histograms(self) -> dict[str, Counts]:
        with self._lock:
            size = self.size
            buckets = self._buckets[:size].copy()
            types = self._types[:size].copy()
            users = self._users[:size].copy()
        known, unknown = buckets >= 0, buckets == -1
        _, per_user = np.unique(users[buckets != NOT_INTERACTION], return_counts=True)
        out = {
            "popularity": np.bincount(buckets[known], minlength=POPULARITY_BUCKETS).astype(
                np.float64
            ),
            "user_events": user_event_histogram(per_user),
            "unseen_items": np.array([known.sum(), unknown.sum()], dtype=np.float64),
        }
        if self.types:
            listed = types[types >= 0]
            out["event_type"] = np.bincount(listed, minlength=len(self.types)).astype(np.float64)
        return out


class ScoreWindow:
    """The last ``capacity`` served scores: a numpy ring, a few microseconds an answer."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._values = np.zeros(capacity, dtype=np.float32)
        self._next = 0
        self.size = 0

    def add(self, scores: npt.NDArray[np.floating[Any]]) -> None:
        n = min(len(scores), self.capacity)
        start, end = self._next, self._next + n
        if end <= self.capacity:
            self._values[start:end] = scores[:n]
        else:
            split = self.capacity - start
            self._values[start:] = scores[:split]
            self._values[: end - self.capacity] = scores[split:n]
        self._next = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def clear(self) -> None:
        self._next = self.size = 0

    def values(self) -> npt.NDArray[np.float32]:
        return self._values[: self.size].copy()
