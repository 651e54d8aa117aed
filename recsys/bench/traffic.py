"""Who the simulated visitors are and what a good answer looks like (pure, no locust).

Visitors come in sessions. At the start of one, a user is drawn: a never-seen id with
probability ``new_share``, else a known user by a Zipf law over their rank (a few very active
users come back again and again, most come rarely). A session is a geometric number of page
views; each view is an action drawn from the mix (home-page recommendations, similar items,
an event), items by a Zipf law over popularity.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

MIX = {"home": 75.0, "similar": 10.0, "event": 15.0}
HOME_ONLY = {"home": 100.0}
EVENT_TYPES = ("click", "play", "add_to_list")


@dataclass
class Population:
    """Known users (with the items they have seen, when known) and the catalogue."""

    users: list[str]
    items: list[str]  # most popular first
    seen: dict[str, list[str]] = field(default_factory=dict)
    new_share: float = 0.1  # share of sessions by a user never seen before
    user_skew: float = 1.1  # Zipf exponent over users
    item_skew: float = 0.8  # Zipf exponent over items
    session_views: float = 5.0  # mean page views per session

    def __post_init__(self) -> None:
        self._user_weights = _cumulative(len(self.users), self.user_skew)
        self._item_weights = _cumulative(len(self.items), self.item_skew)

    @classmethod
    def synthetic(cls, users: int, items: int, **options: Any) -> Population:
        """The naming of the benchmark's synthetic data: users ``u0..``, items ``i0..``."""
        return cls([f"u{u}" for u in range(users)], [f"i{i}" for i in range(items)], **options)

    @classmethod
    def from_json(cls, data: bytes | str) -> Population:
        raw = orjson.loads(data)
        return cls(**raw)

    def to_json(self) -> bytes:
        fields = ("users", "items", "seen", "new_share", "user_skew", "item_skew", "session_views")
        return orjson.dumps({f: getattr(self, f) for f in fields})

    def user(self, rng: random.Random) -> str:
        if not self.users or rng.random() < self.new_share:
            return f"new-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        return rng.choices(self.users, cum_weights=self._user_weights)[0]

    def item(self, rng: random.Random) -> str:
        return rng.choices(self.items, cum_weights=self._item_weights)[0]

    def views(self, rng: random.Random) -> int:
        """Page views in a session: geometric with mean ``session_views``."""
        p = 1.0 / max(self.session_views, 1.0)
        n = 1
        while rng.random() > p:
            n += 1
        return n


def _cumulative(n: int, skew: float) -> list[float]:
    total = 0.0
    out = []
    for rank in range(1, n + 1):
        total += rank**-skew
        out.append(total)
    return out


def action(mix: Mapping[str, float], rng: random.Random) -> str:
    names = list(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


def event_body(user: str, item: str, rng: random.Random) -> bytes:
    """One event as ``POST /v1/events`` takes it."""
    kind = rng.choice(EVENT_TYPES)
    return orjson.dumps({"user_id": user, "item_id": item, "type": kind, "context": {"bench": 1}})


def _status(status: int) -> str:
    """Locust's fast client reports status 0 for no answer (timeout, refused connection)."""
    return "no answer (timeout or connection error)" if status == 0 else f"status {status}"


@dataclass(frozen=True)
class Checked:
    problem: str | None  # None: a good answer
    degraded: bool = False
    items: tuple[str, ...] = ()


def check_recommendations(
    status: int, body: bytes | None, k: int, seen: Sequence[str] = ()
) -> Checked:
    """200, the documented shape, ``k`` distinct items, none of them already seen (unless the
    answer says the user's state could not be read: degraded, not wrong)."""
    if status != 200:
        return Checked(_status(status))
    try:
        data = orjson.loads(body or b"")
        items = [entry["item_id"] for entry in data["items"]]
        for entry in data["items"]:
            if not isinstance(entry["score"], float | int) or not entry["sources"]:
                return Checked("shape: an item without score or sources")
        degraded = bool(data["degraded"])
        failed_stages = set(data["failures"])
        if not isinstance(data["timings_ms"], dict):
            return Checked("shape: no timings_ms")
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        return Checked(f"shape: {type(err).__name__} {err}")
    if len(items) != len(set(items)):
        return Checked("duplicate items")
    if not degraded and len(items) != k:
        return Checked(f"shape: {len(items)} items, asked for {k}")
    if set(items) & set(seen) and "user_state" not in failed_stages:
        return Checked("seen item returned")  # (without its state the API cannot know)
    return Checked(None, degraded, tuple(items))


def check_similar(status: int, body: bytes | None, item: str, k: int) -> Checked:
    """200, ``k`` distinct items, not the item itself."""
    if status != 200:
        return Checked(_status(status))
    try:
        items = [entry["item_id"] for entry in orjson.loads(body or b"")["items"]]
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        return Checked(f"shape: {type(err).__name__} {err}")
    if len(items) != len(set(items)):
        return Checked("duplicate items")
    if item in items:
        return Checked("the item is similar to itself")
    if len(items) != k:
        return Checked(f"shape: {len(items)} items, asked for {k}")
    return Checked(None, items=tuple(items))


def check_event(status: int, body: bytes | None) -> Checked:
    """202 and one event accepted."""
    if status != 202:
        return Checked(_status(status))
    try:
        accepted = orjson.loads(body or b"")["accepted"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        return Checked(f"shape: {type(err).__name__} {err}")
    return Checked(None if accepted == 1 else f"accepted {accepted}, sent 1")


def check_constant(status: int, body: bytes | None) -> Checked:
    if status != 200:
        return Checked(_status(status))
    return Checked(None if body and body.startswith(b'{"items"') else "shape: not the constant")
