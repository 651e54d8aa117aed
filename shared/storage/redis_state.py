"""User state in Redis: a hash, a capped recent set and a dedupe set per user, all with a TTL.

Keys carry the user id in a hash tag (``user:{42}:state``) so the keys of one user land
on the same slot of a Redis Cluster and one script can update them together.

``apply_events`` runs one Lua script per user (all of a batch's calls in one pipeline):
the script checks each event id against the user's sorted set of applied ids and changes
counters, recent items, last active and the session vector only for new ones, atomically,
so a replayed batch changes nothing. It mirrors :func:`shared.storage.user_state.fold_events`.

The recent items are a sorted set scored by the event's time, each member the event id and
the item (``id \\x1f item``): newest first by time, then event id, whatever order events
arrive in, capped by rank. A user written by an older release has a plain list there (newest
first); the first new event turns it into the set, at the user's last active time, and reads
take either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import orjson
import redis
import redis.asyncio as aioredis

from shared.errors import ServiceUnavailable
from shared.storage.user_state import (
    StateEvent,
    UserState,
    UserStateStore,
    UserStateUpdate,
    pushed_entries,
)

_COUNTER = "c:"
_SESSION = "session"
_LAST_ACTIVE = "last_active"

# KEYS: state hash, recent zset, seen zset. ARGV: cap, ttl, half life, window, the events
# as one JSON array of [id, item, type, timestamp (text), push (1/0), vector bytes], and
# their vectors (float32 little-endian) end to end. Two arguments instead of six per event:
# the client spent more time packing arguments than Redis running the script.
_APPLY_EVENTS = """
local state, recent, seen = KEYS[1], KEYS[2], KEYS[3]
local cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local decay, window = math.log(2) / tonumber(ARGV[3]), tonumber(ARGV[4])
local head = redis.call('HMGET', state, 'seq', 'last_active')
local seq = tonumber(head[1] or '0')
local last_s = head[2] or nil
local last = last_s and tonumber(last_s) or nil
local last0 = last_s
local mean, weight, ref, loaded, changed = nil, 0, 0, false, false
local new, fresh, scored, pushed, counts = 0, {}, {}, {}, {}
local function format(n)  -- one struct call per vector, not one per float
  return '<' .. string.rep('f', n)
end
local function floats(bytes, pos, len)
  local v = {struct.unpack(format(len / 4), bytes, pos)}
  v[#v] = nil  -- struct.unpack also returns the next position
  return v
end
local function call_chunked(command, key, args)  -- unpack() has a stack limit
  for i = 1, #args, 1000 do
    redis.call(command, key, unpack(args, i, math.min(i + 999, #args)))
  end
end
local events, blob, at = cjson.decode(ARGV[5]), ARGV[6], 1
for _, e in ipairs(events) do
  local id, len, pos = e[1], e[6], at
  at = at + len
  if not fresh[id] and not redis.call('ZSCORE', seen, id) then
    seq = seq + 1
    new = new + 1
    fresh[id] = true
    scored[#scored + 1] = seq
    scored[#scored + 1] = id
    counts[e[3]] = (counts[e[3]] or 0) + 1
    if e[5] == 1 then
      pushed[#pushed + 1] = e[4]
      pushed[#pushed + 1] = id .. '\\31' .. e[2]
    end
    local ts = tonumber(e[4])
    if last == nil or ts > last then last, last_s = ts, e[4] end
    if len > 0 then
      if not loaded then
        loaded = true
        local stored = redis.call('HMGET', state, 'session', 'session_w', 'session_t')
        if stored[1] and #stored[1] == len then
          mean = floats(stored[1], 1, len)
          weight = tonumber(stored[2] or '1')
          ref = tonumber(stored[3] or last0 or '0')
        end
      end
      local v = floats(blob, pos, len)
      if mean == nil or #mean ~= #v then
        mean, weight, ref = {}, 0, ts
        for j = 1, #v do mean[j] = 0 end
      end
      local w = 1
      if ts > ref then
        weight = weight * math.exp(-decay * (ts - ref))
        ref = ts
      else
        w = math.exp(-decay * (ref - ts))
      end
      local total = weight + w
      for j = 1, #v do mean[j] = (mean[j] * weight + v[j] * w) / total end
      weight = total
      changed = true
    end
  end
end
if new > 0 then
  call_chunked('ZADD', seen, scored)  -- 1000 is even: chunks keep score, member pairs
  for kind, n in pairs(counts) do redis.call('HINCRBY', state, 'c:' .. kind, n) end
  if #pushed > 0 then
    if redis.call('TYPE', recent).ok == 'list' then  -- written by an older release
      local items, old = redis.call('LRANGE', recent, 0, -1), {}
      redis.call('DEL', recent)
      for i, item in ipairs(items) do
        old[#old + 1] = last0 or '0'
        old[#old + 1] = string.format('~%06d', #items - i) .. '\\31' .. item
      end
      call_chunked('ZADD', recent, old)
    end
    call_chunked('ZADD', recent, pushed)  -- score (the time), member pairs
    redis.call('ZREMRANGEBYRANK', recent, 0, -(cap + 1))
  end
  if changed then
    redis.call('HSET', state, 'seq', seq, 'last_active', last_s,
      'session', struct.pack(format(#mean), unpack(mean)),
      'session_w', string.format('%.17g', weight), 'session_t', string.format('%.17g', ref))
  else
    redis.call('HSET', state, 'seq', seq, 'last_active', last_s)
  end
  if seq > window then redis.call('ZREMRANGEBYRANK', seen, 0, -(window + 1)) end
end
redis.call('EXPIRE', state, ttl)
redis.call('EXPIRE', recent, ttl)
redis.call('EXPIRE', seen, ttl)
return new
"""

# KEYS: state hash, recent zset (or an older release's list). ARGV: how many recent items.
# What the online tier reads.
_READ_STATE = """
local n, recent = tonumber(ARGV[1]) - 1, nil
if redis.call('TYPE', KEYS[2]).ok == 'list' then
  recent = redis.call('LRANGE', KEYS[2], 0, n)
else
  recent = redis.call('ZREVRANGE', KEYS[2], 0, n)
  for i, member in ipairs(recent) do  -- "id \\31 item": the item only, here not in Python
    recent[i] = string.sub(member, string.find(member, '\\31', 1, true) + 1)
  end
end
return {redis.call('HGETALL', KEYS[1]), recent}
"""


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
        self._script_sha: str | None = None
        self._read_sha: str | None = None
        self._plain_url = plain
        # redis.asyncio clients belong to the event loop they first ran on: one per loop.
        self._async: tuple[asyncio.AbstractEventLoop, aioredis.Redis[bytes]] | None = None

    reads_async = True

    def _async_client(self) -> aioredis.Redis[bytes]:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = aioredis.Redis.from_url(
                self._plain_url, socket_connect_timeout=2.0, socket_timeout=2.0
            )
            self._async = (loop, client)
        return self._async[1]

    async def aget(self, user_id: str) -> UserState | None:
        state_key, recent_key = self._keys(user_id)
        client = self._async_client()
        try:
            # One EVALSHA: a pipeline of HGETALL and LRANGE answers the same in one round
            # trip too, but redis-py's pipeline object cost ~0.12 ms more CPU per read.
            for attempt in range(2):
                if self._read_sha is None:
                    self._read_sha = str(await client.script_load(_READ_STATE))  # type: ignore[no-untyped-call]
                try:
                    flat, recent = await client.evalsha(  # type: ignore[no-untyped-call]
                        self._read_sha, 2, state_key, recent_key, self.recent_cap
                    )
                    break
                except redis.exceptions.NoScriptError:  # Redis restarted: load it again
                    self._read_sha = None
                    if attempt:
                        raise
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err
        if not flat and not recent:
            return None
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return _decode(user_id, fields, recent)

    async def aclose(self) -> None:
        if self._async is not None and self._async[0] is asyncio.get_running_loop():
            client, self._async = self._async[1], None
            await client.aclose()  # type: ignore[attr-defined]  # types-redis predates it

    def _keys(self, user_id: str) -> tuple[str, str]:
        base = f"{self._namespace}:{{{user_id}}}"
        return f"{base}:state", f"{base}:recent"

    def _seen_key(self, user_id: str) -> str:
        return f"{self._namespace}:{{{user_id}}}:seen"

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
                at = update.last_active if update.last_active is not None else time.time()
                pushed = pushed_entries(update.new_items, at)
                pipe.zadd(recent_key, {f"{e.event_id}\x1f{e.item_id}": e.timestamp for e in pushed})
                pipe.zremrangebyrank(recent_key, 0, -(self.recent_cap + 1))
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

    def apply_events(self, events: Sequence[StateEvent], half_life_s: float) -> int:
        by_user: dict[str, list[StateEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        if not by_user:
            return 0
        head = [self.recent_cap, self.ttl_s, half_life_s, self.dedupe_window]
        calls = []
        for user_id, user_events in by_user.items():
            rows, vectors = [], []
            for e in user_events:
                vector = b"" if e.vector is None else np.asarray(e.vector, "<f4").tobytes()
                rows.append(
                    (e.event_id, e.item_id, e.type, repr(e.timestamp), int(e.recent), len(vector))
                )
                vectors.append(vector)
            args: list[str | bytes | float | int] = [*head, orjson.dumps(rows), b"".join(vectors)]
            calls.append(([*self._keys(user_id), self._seen_key(user_id)], args))
        try:
            replies = self._run_script(calls)
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err
        return sum(int(r) for r in replies)

    def _run_script(
        self, calls: list[tuple[list[str], list[str | bytes | float | int]]], read: bool = False
    ) -> list[Any]:
        """EVALSHA every call of the apply (or read) script in one pipeline; (re)load the
        script once if Redis lost it."""
        source = _READ_STATE if read else _APPLY_EVENTS
        for attempt in range(2):
            sha = self._read_sha if read else self._script_sha
            if sha is None:
                sha = str(self._client.script_load(source))  # type: ignore[no-untyped-call]
                if read:
                    self._read_sha = sha
                else:
                    self._script_sha = sha
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            try:
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                # Redis restarted or flushed its scripts: nothing ran, so running again is safe.
                if read:
                    self._read_sha = None
                else:
                    self._script_sha = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        calls: list[tuple[list[str], list[str | bytes | float | int]]] = [
            (list(self._keys(user_id)), [self.recent_cap]) for user_id in user_ids
        ]
        try:
            replies = self._run_script(calls, read=True)
        except redis.RedisError as err:
            raise ServiceUnavailable(self.role, self.url, str(err)) from err
        states = {}
        for user_id, (flat, recent) in zip(user_ids, replies, strict=True):
            if flat or recent:
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                states[user_id] = _decode(user_id, fields, recent)
        return states

    def delete(self, user_id: str) -> None:
        self._client.delete(*self._keys(user_id), self._seen_key(user_id))

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
        recent_items=[r.decode() for r in recent],  # the read script strips the event ids
        counters=counters,
        session_vector=None if session is None else np.frombuffer(session, dtype=np.float32).copy(),
        last_active=None if last_active is None else float(last_active),
    )
