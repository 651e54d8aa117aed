"""Synthetic interactions with the structure of real ones, vectorised with numpy.

The model, in order of generation (all draws come from ``seed``):

* Items belong to one primary genre (genre sizes drawn from a Dirichlet) and sometimes a
  second one. Item popularity follows a Zipf law (weight ``rank ** -item_zipf``) over a
  random ranking, so a few items draw most events.
* Users have long-tailed activity (log-normal weights; every user gets at least one
  event) and 1-3 preferred genres, picked in proportion to each genre's popularity.
* Each event is drawn, with probability ``taste_share``, from one of the user's genres
  (by popularity within it), otherwise from the whole catalogue by popularity.
* Ratings are ``3.4 + user bias + item quality +/- taste match + noise``, rounded to 1..5,
  so events that match the user's taste rate higher.
* Each user is active over a random window of the period. Their events come in
  sessions (a geometric number of events seconds to minutes apart); sessions are spread
  over the window with exponential gaps, so gaps between sessions are hours to days.

Users are generated in fixed blocks of about ``BLOCK_EVENTS`` events, each with its own
random stream, so output depends only on the seed and sizes, never on how it is chunked.
Rows come ordered by user, then time. A (user, item) pair may repeat, as in an event log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from shared.data.frame import validate_interactions

BLOCK_EVENTS = 1 << 18
GENRE_NAMES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_TASTE_SLOTS = 3  # a user likes at most this many genres
_NO_GENRE = -1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SyntheticOptions:
    """Shape of the generated data; the defaults give MovieLens-like statistics."""

    n_genres: int = len(GENRE_NAMES)
    start: int = 1_577_836_800  # 2020-01-01T00:00:00Z, seconds since the epoch
    days: int = 730  # length of the period the timestamps span
    item_zipf: float = 1.0  # popularity exponent; higher is a longer head
    user_activity_sigma: float = 1.2  # log-normal sigma of user activity
    taste_share: float = 0.8  # share of events drawn from the user's own genres
    mean_session_events: float = 8.0
    mean_event_gap_s: float = 90.0  # mean gap between events within a session


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes, seed and options of one synthetic dataset."""

    n_interactions: int
    n_users: int
    n_items: int
    seed: int = 0
    options: SyntheticOptions = field(default_factory=SyntheticOptions)

    @classmethod
    def build(
        cls,
        n_interactions: int,
        n_users: int | None = None,
        n_items: int | None = None,
        seed: int = 0,
        options: SyntheticOptions | None = None,
    ) -> SyntheticSpec:
        """Fill in proportionate sizes and check the combination makes sense."""
        users, items = default_sizes(n_interactions)
        spec = cls(
            n_interactions, n_users or users, n_items or items, seed, options or SyntheticOptions()
        )
        spec.check()
        return spec

    def check(self) -> None:
        """Raise ValueError for sizes or options that cannot produce a dataset."""
        o = self.options
        if self.n_interactions < 1 or self.n_users < 1 or self.n_items < 1:
            raise ValueError("n_interactions, n_users and n_items must be at least 1")
        if self.n_users > self.n_interactions:
            raise ValueError(
                f"n_users ({self.n_users}) exceeds n_interactions ({self.n_interactions}); "
                "every user gets at least one event"
            )
        if not 1 <= o.n_genres <= self.n_items:
            raise ValueError(f"n_genres ({o.n_genres}) must be between 1 and n_items")
        if o.days < 1 or not 0.0 <= o.taste_share <= 1.0 or o.mean_session_events < 1:
            raise ValueError("days >= 1, 0 <= taste_share <= 1 and mean_session_events >= 1")


def default_sizes(n_interactions: int) -> tuple[int, int]:
    """About 100 events per user and 500 per item, with floors for tiny datasets."""
    n_users = max(n_interactions // 100, min(n_interactions, 100))
    n_items = max(n_interactions // 500, min(n_interactions, 50))
    return n_users, n_items


@dataclass(frozen=True)
class World:
    """Everything drawn once per dataset: the catalogue, the users and the event blocks."""

    spec: SyntheticSpec
    item_genre: IntArray
    item_second: IntArray  # _NO_GENRE when the item has one genre
    item_quality: FloatArray
    sorted_items: IntArray  # item indices ordered by genre
    cum_popularity: FloatArray  # inclusive cumulative popularity over sorted_items
    genre_low: FloatArray  # cumulative popularity before each genre's items
    genre_mass: FloatArray
    user_counts: IntArray
    user_genres: IntArray  # (n_users, 3); unused slots hold -2 so they never match
    user_cum_taste: FloatArray  # (n_users, 3) cumulative genre weights, last column 1.0
    user_bias: FloatArray
    user_join: FloatArray  # first active second
    user_span: FloatArray  # seconds the user stays active
    block_bounds: IntArray  # user index where each block starts, plus n_users

    @property
    def n_blocks(self) -> int:
        return len(self.block_bounds) - 1


def build_world(spec: SyntheticSpec) -> World:
    """Draw the catalogue and the users from ``seed``."""
    o, n_items, n_users = spec.options, spec.n_items, spec.n_users
    rng = np.random.default_rng([spec.seed, 0])
    genre_share = rng.dirichlet(np.full(o.n_genres, 1.5))
    item_genre = rng.choice(o.n_genres, size=n_items, p=genre_share).astype(np.int64)
    second = rng.integers(0, o.n_genres, size=n_items)
    has_second = (rng.random(n_items) < 0.4) & (second != item_genre)
    item_second = np.where(has_second, second, _NO_GENRE).astype(np.int64)
    ranks = rng.permutation(n_items)
    popularity = (ranks + 1.0) ** -o.item_zipf
    sorted_items = np.argsort(item_genre, kind="stable").astype(np.int64)
    genre_mass = np.bincount(item_genre, weights=popularity, minlength=o.n_genres).astype(
        np.float64
    )
    genre_low = np.concatenate(([0.0], np.cumsum(genre_mass)[:-1]))

    activity = rng.lognormal(0.0, o.user_activity_sigma, size=n_users)
    extra = rng.multinomial(spec.n_interactions - n_users, activity / activity.sum())
    user_counts = (extra + 1).astype(np.int64)
    n_liked = rng.choice([1, 2, 3], size=n_users, p=[0.35, 0.4, 0.25])
    liked = rng.choice(o.n_genres, size=(n_users, _TASTE_SLOTS), p=genre_mass / genre_mass.sum())
    active = np.arange(_TASTE_SLOTS)[None, :] < n_liked[:, None]
    taste = rng.gamma(1.0, size=(n_users, _TASTE_SLOTS)) * active
    cum_taste = np.cumsum(taste, axis=1) / taste.sum(axis=1, keepdims=True)
    cum_taste[:, -1] = 1.0  # exact, so a uniform draw in [0, 1) never passes the last slot
    period = o.days * 86_400.0
    join = o.start + period * rng.random(n_users) ** 1.5  # more users early: longer histories
    span = np.maximum((o.start + period - join) * rng.random(n_users) ** 0.5, 3_600.0)

    first_event = np.cumsum(user_counts) - user_counts
    block_of_user = first_event // BLOCK_EVENTS
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(block_of_user)) + 1, [n_users]))
    return World(
        spec=spec,
        item_genre=item_genre,
        item_second=item_second,
        item_quality=rng.normal(0.0, 0.45, size=n_items),
        sorted_items=sorted_items,
        cum_popularity=np.cumsum(popularity[sorted_items]),
        genre_low=genre_low,
        genre_mass=genre_mass,
        user_counts=user_counts,
        user_genres=np.where(active, liked, -2).astype(np.int64),
        user_cum_taste=cum_taste,
        user_bias=rng.normal(0.0, 0.35, size=n_users),
        user_join=join,
        user_span=span,
        block_bounds=bounds.astype(np.int64),
    )


@dataclass(frozen=True)
class Block:
    """The events of one block of users, as dense indices (0-based)."""

    users: IntArray
    items: IntArray
    ratings: npt.NDArray[np.float32]
    timestamps: IntArray


def generate_block(world: World, index: int) -> Block:
    """Events of the users in block ``index``; depends only on the seed and ``index``."""
    spec, o = world.spec, world.spec.options
    low, high = int(world.block_bounds[index]), int(world.block_bounds[index + 1])
    rng = np.random.default_rng([spec.seed, 1, index])
    counts = world.user_counts[low:high]
    users = np.repeat(np.arange(low, high, dtype=np.int64), counts)
    n = len(users)
    user_starts = np.cumsum(counts) - counts

    # Items: pick a taste slot, then an item of that genre (or of the whole catalogue)
    # by inverting the cumulative popularity with one searchsorted for all events.
    slot = (rng.random(n)[:, None] >= world.user_cum_taste[users]).sum(axis=1)
    genre = world.user_genres[users, np.minimum(slot, _TASTE_SLOTS - 1)]
    draw = rng.random(n)
    from_taste = rng.random(n) < o.taste_share
    target = np.where(
        from_taste,
        world.genre_low[genre] + draw * world.genre_mass[genre],
        draw * world.cum_popularity[-1],
    )
    position = np.searchsorted(world.cum_popularity, target, side="right")
    items = world.sorted_items[np.minimum(position, spec.n_items - 1)]

    liked = world.user_genres[users]
    match = (liked == world.item_genre[items][:, None]).any(axis=1) | (
        liked == world.item_second[items][:, None]
    ).any(axis=1)
    score = (
        3.4
        + world.user_bias[users]
        + world.item_quality[items]
        + np.where(match, 0.5, -0.8)
        + rng.normal(0.0, 0.7, size=n)
    )
    ratings = np.clip(np.rint(score), 1, 5).astype(np.float32)

    timestamps = _session_times(world, rng, users, user_starts, low)
    order = np.lexsort((timestamps, users))  # users are grouped; sort each by time
    return Block(users, items[order], ratings[order], timestamps[order])


def _session_times(
    world: World, rng: np.random.Generator, users: IntArray, user_starts: IntArray, low: int
) -> IntArray:
    """Timestamps in sessions: bursts of events, sessions spread over each user's window."""
    o = world.spec.options
    new_session = rng.random(len(users)) < 1.0 / o.mean_session_events
    new_session[user_starts] = True
    session_of_event = np.cumsum(new_session) - 1
    session_first = np.flatnonzero(new_session)
    session_user = users[session_first] - low

    # Gaps between sessions, cumulated within each user and scaled to the user's window.
    gaps = rng.exponential(1.0, size=len(session_first))
    cumulative = np.cumsum(gaps)
    first_session = session_of_event[user_starts]
    last_session = np.concatenate((first_session[1:], [len(session_first)])) - 1
    before = cumulative[first_session] - gaps[first_session]
    within_user = cumulative - before[session_user]
    total = within_user[last_session]
    fraction = (within_user - gaps) / total[session_user]  # first session at 0
    absolute_user = session_user + low
    session_start = world.user_join[absolute_user] + fraction * world.user_span[absolute_user]

    # Gaps between events of one session, cumulated from the session's first event.
    steps = rng.exponential(o.mean_event_gap_s, size=len(users))
    steps[session_first] = 0.0
    offsets = np.cumsum(steps)
    offsets -= offsets[session_first][session_of_event]
    end = o.start + o.days * 86_400
    seconds: FloatArray = np.minimum(session_start[session_of_event] + offsets, end)
    return np.floor(seconds).astype(np.int64)


def iter_blocks(world: World) -> Iterator[Block]:
    """Every block in order; memory stays at one block."""
    for index in range(world.n_blocks):
        yield generate_block(world, index)


def id_labels(prefix: str, n: int) -> pa.Array:
    """External ids ``<prefix>1 .. <prefix>n`` for dense indices 0 .. n-1."""
    return pa.array([f"{prefix}{i}" for i in range(1, n + 1)], type=pa.string())


def block_table(block: Block, user_labels: pa.Array, item_labels: pa.Array) -> pa.Table:
    """A block as an Arrow table with the canonical columns."""
    return pa.table(
        {
            "user_id": user_labels.take(pa.array(block.users)),
            "item_id": item_labels.take(pa.array(block.items)),
            "rating": pa.array(block.ratings, type=pa.float32()),
            "timestamp": pa.array(block.timestamps, type=pa.int64()),
        }
    )


def items_frame(world: World) -> pd.DataFrame:
    """Item metadata: item_id, title, year, genres (primary genre first)."""
    spec, o = world.spec, world.spec.options
    names = list(GENRE_NAMES[: o.n_genres]) + [
        f"Genre {k}" for k in range(len(GENRE_NAMES) + 1, o.n_genres + 1)
    ]
    rng = np.random.default_rng([spec.seed, 2])
    last_year = pd.Timestamp(o.start + o.days * 86_400, unit="s").year
    age = np.floor(rng.exponential(12.0, size=spec.n_items)).astype(np.int64)
    numbers = range(1, spec.n_items + 1)
    genres = [
        [names[g]] if s == _NO_GENRE else [names[g], names[s]]
        for g, s in zip(world.item_genre.tolist(), world.item_second.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            "item_id": pd.Series([f"i{n}" for n in numbers], dtype=str),
            "title": pd.Series([f"Synthetic Title {n}" for n in numbers], dtype=str),
            "year": pd.Series(np.maximum(last_year - age, 1920), dtype="Int64"),
            "genres": genres,
        }
    )


@dataclass(frozen=True)
class SyntheticData:
    """A generated dataset held in memory."""

    interactions: pd.DataFrame
    items: pd.DataFrame


def generate(
    n_interactions: int,
    n_users: int | None = None,
    n_items: int | None = None,
    seed: int = 0,
    options: SyntheticOptions | None = None,
) -> SyntheticData:
    """Generate a dataset in memory; use :func:`write_synthetic` for large ones."""
    world = build_world(SyntheticSpec.build(n_interactions, n_users, n_items, seed, options))
    user_labels = id_labels("u", world.spec.n_users)
    item_labels = id_labels("i", world.spec.n_items)
    tables = [block_table(b, user_labels, item_labels) for b in iter_blocks(world)]
    frame = pa.concat_tables(tables).to_pandas()
    for column in ("user_id", "item_id"):
        frame[column] = frame[column].astype(str)
    interactions = validate_interactions(frame, f"synthetic(seed={seed})")
    return SyntheticData(interactions, items_frame(world))
