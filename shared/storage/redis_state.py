"""User state in Redis: a hash and a capped list per user, both with a TTL.

Keys carry the user id in a hash tag (``user:{42}:state``) so both keys of one user land
on the same slot of a Redis Cluster and one pipeline can update them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import redis

from shared.errors import ServiceUnavailable
from shared.storage.user_state import UserState, UserStateStore, UserStateUpdate

_COUNTER = "c:"
_SESSION = "session"
_LAST_ACTIVE = "last_active"


class RedisUserStateStore(UserStateStore):
    """``redis://host:port/db[?namespace=prefix]``; every batch is one pipelined round trip."""

    def __init__(self, url: str, ttl_s: int, recent_cap: int) -> None:
        super().__init__(url, ttl_s, recent_cap)
        parts = urlsplit(url)
        self._namespace = parse_qs(parts.query).get("namespace", ["user"])[0]
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self._client = redis.Redis.from_url(
            plain, socket_connect_timeout=2.0, socket_timeout=2.0, health_check_interval=30
        )

    def _keys(self, user_id: str) -> tuple[str, str]:
        base = f"{self._namespace}:{{{user_id}}}"
        return f"{base}:state", f"{base}:recent"

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err

    def apply(self, updates: Sequence[UserStateUpdate]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for update in updates:
            state_key, recent_key = self._keys(update.user_id)
            if update.new_items:
                # LPUSH puts each argument at the head in turn: the newest ends up first.
                pipe.lpush(recent_key, *update.new_items)
                pipe.ltrim(recent_key, 0, self.recent_cap - 1)
            for name, n in update.counter_increments.items():
                pipe.hincrby(state_key, _COUNTER + name, n)
            fields: dict[str, bytes | float] = {}
            if update.session_vector is not None:
                fields[_SESSION] = np.asarray(update.session_vector, dtype=np.float32).tobytes()
            if update.last_active is not None:
                fields[_LAST_ACTIVE] = update.last_active
            if fields:
                pipe.hset(state_key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(state_key, self.ttl_s)
            pipe.expire(recent_key, self.ttl_s)
        try:
            pipe.execute()
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        pipe = self._client.pipeline(transaction=False)
        for user_id in user_ids:
            state_key, recent_key = self._keys(user_id)
            pipe.hgetall(state_key)
            pipe.lrange(recent_key, 0, self.recent_cap - 1)
        try:
            replies = pipe.execute()
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err
        states = {}
        for i, user_id in enumerate(user_ids):
            fields, recent = replies[2 * i], replies[2 * i + 1]
            if fields or recent:
                states[user_id] = _decode(user_id, fields, recent)
        return states

    def delete(self, user_id: str) -> None:
        self._client.delete(*self._keys(user_id))

    def close(self) -> None:
        self._client.close()


def _decode(user_id: str, fields: dict[bytes, bytes], recent: list[bytes]) -> UserState:
    counters = {
        k.decode()[len(_COUNTER) :]: int(v)
        for k, v in fields.items()
        if k.startswith(_COUNTER.encode())
    }
    session = fields.get(_SESSION.encode())
    last_active = fields.get(_LAST_ACTIVE.encode())
    return UserState(
        user_id=user_id,
        recent_items=[r.decode() for r in recent],
        counters=counters,
        session_vector=None if session is None else np.frombuffer(session, dtype=np.float32).copy(),
        last_active=None if last_active is None else float(last_active),
    )
