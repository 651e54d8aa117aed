"""Experiment arms from logged events: per-arm engagement with confidence intervals.

The online tier logs one impression event per answer (:mod:`online.impressions`): the items
shown with their ``position`` and ``source``, and the user's ``arm``, the ``bundle``, the
``surface`` and the ``request_id`` in its context. :func:`events_frame` explodes it into one
row per item shown, which is the row an older log holds for each item (one impression event
per item, ``position`` and ``source`` in its context), so both read the same from there on.
An outcome event (a play, a click) counts for an arm when the same user was shown the same
item on that surface: it is attributed to that impression's arm.

Two rates per arm, each with an interval that respects that one user's impressions are not
independent of each other:

* **play rate**: attributed plays / impressions, with a percentile bootstrap over users;
* **engaged users**: users with at least one attributed play / users shown anything, with
  the Wilson score interval (users are independent draws).

For an offline replay (no real users), :func:`simulated_plays` derives outcomes from held-out
interactions: a user "plays" an impressed item when it is among their held-out test items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from shared.events import Event, EventType
from shared.storage.event_log import EventLog
from shared.storage.user_state import UserStateStore, UserStateUpdate

FloatArray = npt.NDArray[np.float64]
EVENT_COLUMNS = ["event_id", "user_id", "item_id", "type", "value", "timestamp"]


def events_frame(events: Iterable[Event]) -> pd.DataFrame:
    """One row per event, its context keys (``arm``, ``bundle``, ...) as columns; an
    impression with a shown list gives one row per item shown instead (its ``item_id``,
    ``position`` and ``source``; the event's ``event_id`` and context on each)."""
    rows: list[dict[str, Any]] = []
    for e in events:
        row = {**e.context, **e.model_dump(include=set(EVENT_COLUMNS))}
        if e.shown is None:
            rows.append(row)
        else:
            rows.extend(
                {**row, "item_id": s.item_id, "position": s.position, "source": s.source}
                for s in e.shown
            )
    frame = pd.DataFrame(rows)
    for column in EVENT_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    frame["type"] = frame["type"].astype(str)
    return frame


def read_events(log: EventLog, group: str, idle_polls: int = 2) -> pd.DataFrame:
    """Every event on the log's topic, read by a fresh consumer ``group`` that commits
    nothing; stops after ``idle_polls`` polls in a row return nothing. Records that are
    not valid events are skipped (the nearline tier dead-letters them)."""
    consumer = log.consumer(group)
    events: list[Event] = []
    idle = 0
    try:
        while idle < idle_polls:
            records = consumer.poll(max_records=5000, timeout_s=1.0)
            idle = 0 if records else idle + 1
            for record in records:
                try:
                    events.append(Event.from_json(record.value))
                except ValidationError:
                    continue
    finally:
        consumer.close()
    return events_frame(events)


def append_events(log: EventLog, events: Sequence[Event]) -> None:
    """Append events keyed by user id, as the events API does."""
    if events:
        log.append([(e.user_id, e.to_json()) for e in events])


def seed_recent_items(store: UserStateStore, train: pd.DataFrame, users: Iterable[str]) -> int:
    """Give each user the state the nearline tier would hold after seeing their training
    interactions in time order (the store keeps the most recent ones); returns how many."""
    wanted = {str(u) for u in users}
    rows = train[train["user_id"].astype(str).isin(wanted)].sort_values(
        ["user_id", "timestamp"], kind="stable"
    )
    updates = [
        UserStateUpdate(
            user_id=str(user),
            new_items=[str(i) for i in group["item_id"]],
            counter_increments={EventType.PLAY.value: len(group)},
            last_active=float(group["timestamp"].max()),
        )
        for user, group in rows.groupby("user_id", sort=True)
    ]
    store.apply(updates)
    return len(updates)


def simulated_plays(impressions: pd.DataFrame, holdout: pd.DataFrame) -> list[Event]:
    """A play for every impression of an item that is in the user's held-out interactions.

    One play per (user, item, surface), one millisecond after the first such impression; the
    context marks it ``simulated`` and keeps the impression's arm, bundle and surface.
    """
    held = holdout[["user_id", "item_id"]].astype(str).drop_duplicates()
    shown = impressions.assign(
        user_id=impressions["user_id"].astype(str), item_id=impressions["item_id"].astype(str)
    ).sort_values("timestamp", kind="stable")
    hits = shown.merge(held, on=["user_id", "item_id"]).drop_duplicates(
        ["user_id", "item_id", "surface"]
    )
    columns = ["user_id", "item_id", "timestamp", "arm", "bundle", "surface"]
    return [
        Event(
            user_id=user,
            item_id=item,
            type=EventType.PLAY,
            timestamp=float(timestamp) + 0.001,
            context={
                "arm": str(arm),
                "bundle": str(bundle),
                "surface": str(surface),
                "simulated": True,
            },
        )
        for user, item, timestamp, arm, bundle, surface in hits[columns].itertuples(
            index=False, name=None
        )
    ]


def per_user_outcomes(
    events: pd.DataFrame, outcome: str = EventType.PLAY.value, surface: str | None = None
) -> pd.DataFrame:
    """Per (arm, user): impressions, and outcomes attributed to one of those impressions."""
    frame = events if surface is None else events[events["surface"] == surface]
    shown = frame[frame["type"] == EventType.IMPRESSION.value]
    shown = shown.drop_duplicates(["user_id", "item_id", "surface"])
    done = frame[frame["type"] == outcome].drop_duplicates(["user_id", "item_id", "surface"])
    attributed = shown.merge(
        done[["user_id", "item_id", "surface"]], on=["user_id", "item_id", "surface"]
    )
    impressions = shown.groupby(["arm", "user_id"]).size().rename("impressions")
    outcomes = attributed.groupby(["arm", "user_id"]).size().rename("outcomes")
    out = pd.concat([impressions, outcomes], axis=1).fillna(0).astype(np.int64)
    return out.reset_index()


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; ``(0, 1)`` when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_ratio(
    numerators: FloatArray,
    denominators: FloatArray,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``sum(numerators) / sum(denominators)``, resampling units
    (users) with replacement, so correlated events within a unit stay together."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if len(num) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), size=(n_boot, len(num)))
    totals = den[picks].sum(axis=1)
    ratios = np.divide(num[picks].sum(axis=1), totals, out=np.zeros(n_boot), where=totals > 0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def engagement_by_arm(
    events: pd.DataFrame,
    outcome: str = EventType.PLAY.value,
    surface: str | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per arm: users, impressions, outcomes, the two rates and their intervals."""
    per_user = per_user_outcomes(events, outcome, surface)
    rows: dict[str, dict[str, Any]] = {}
    for arm, group in per_user.groupby("arm", sort=True):
        users, impressions = len(group), int(group["impressions"].sum())
        outcomes = int(group["outcomes"].sum())
        engaged = int((group["outcomes"] > 0).sum())
        rate_low, rate_high = bootstrap_ratio(
            group["outcomes"].to_numpy(), group["impressions"].to_numpy(), confidence, seed=seed
        )
        users_low, users_high = wilson_interval(engaged, users, confidence)
        rows[str(arm)] = {
            "users": users,
            "impressions": impressions,
            "outcomes": outcomes,
            "rate": outcomes / impressions if impressions else 0.0,
            "rate_low": rate_low,
            "rate_high": rate_high,
            "engaged_users": engaged,
            "engaged_share": engaged / users if users else 0.0,
            "engaged_low": users_low,
            "engaged_high": users_high,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("arm")


def rate_difference(
    events: pd.DataFrame,
    treatment: str,
    control: str,
    *,
    outcome: str = EventType.PLAY.value,
    surface: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``rate(treatment) - rate(control)`` and its bootstrap interval (users resampled
    within each arm independently)."""
    per_user = per_user_outcomes(events, outcome, surface)
    rng = np.random.default_rng(seed)
    estimates, draws = [], []
    for arm in (treatment, control):
        group = per_user[per_user["arm"] == arm]
        num = group["outcomes"].to_numpy(dtype=np.float64)
        den = group["impressions"].to_numpy(dtype=np.float64)
        if den.sum() == 0:
            raise ValueError(f"arm {arm!r} has no impressions")
        estimates.append(num.sum() / den.sum())
        picks = rng.integers(0, len(num), size=(n_boot, len(num)))
        draws.append(num[picks].sum(axis=1) / np.maximum(den[picks].sum(axis=1), 1.0))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws[0] - draws[1], [tail, 100 - tail])
    return float(estimates[0] - estimates[1]), float(low), float(high)
