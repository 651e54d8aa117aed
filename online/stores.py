"""Stores on the request path: opened in the background, called with a deadline.

The store clients block (redis-py, the Cassandra driver, SQLite), so every call runs in
a bounded thread pool and the event loop waits at most the stage's timeout: a slow or
dead store costs a request that timeout, never the loop. A store that cannot be opened at
start-up (Cassandra's driver connects in its constructor) is retried in the background;
until then calls fail at once and the request degrades.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from shared.storage.base import Store
from shared.storage.candidates import CandidateStore

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Store)
R = TypeVar("R")
V = TypeVar("V")


class StageFailed(Exception):
    """A stage did not deliver: the message says why, in a few words."""


class StoreSlot(Generic[S]):
    """A store that may not be open yet; :meth:`call` runs a function of it in the pool."""

    def __init__(
        self,
        name: str,
        opener: Callable[[], S],
        executor: ThreadPoolExecutor,
        retry_s: float,
        *,
        trip_after: int = 5,
        cooldown_s: float = 1.0,
        max_in_flight: int = 16,
    ) -> None:
        self.name = name
        self._opener = opener
        self._executor = executor
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self.store: S | None = None
        self.error: str | None = "not opened yet"
        self._next_try = 0.0
        # Circuit breaker: after ``trip_after`` failures in a row, calls fail at once for
        # ``cooldown_s`` (then one goes through to probe), so a stalled store does not
        # pile blocked calls up in the pool. In-flight calls are capped for the same reason.
        self.trip_after = trip_after
        self.cooldown_s = cooldown_s
        self.max_in_flight = max_in_flight
        self._failures = 0
        self._open_until = 0.0
        self._in_flight = 0

    def try_open(self) -> bool:
        """Open the store unless it is open or was tried recently (blocking: off the loop)."""
        with self._lock:
            if self.store is not None:
                return True
            if time.monotonic() < self._next_try:
                return False
            self._next_try = time.monotonic() + self._retry_s
            try:
                self.store = self._opener()
                self.error = None
                log.info("%s store open", self.name)
                return True
            except Exception as err:
                self.error = _one_line(err)
                log.warning("%s store not open: %s", self.name, self.error)
                return False

    async def call(self, fn: Callable[[S], R], timeout_s: float) -> R:
        """``fn(store)`` in the pool, within ``timeout_s``; raises :class:`StageFailed`."""
        store = self._admit(timeout_s)
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        future = loop.run_in_executor(self._executor, fn, store)
        future.add_done_callback(self._settled)
        return await self._outcome(asyncio.shield(future), timeout_s)

    async def call_async(self, fn: Callable[[S], Awaitable[R]], timeout_s: float) -> R:
        """``await fn(store)`` on the event loop (a non-blocking client), with the same
        timeout, circuit breaker and in-flight cap as :meth:`call`. Awaited in the caller's
        task: no task of its own to create and schedule on every request."""
        store = self._admit(timeout_s)
        self._in_flight += 1
        try:
            return await self._outcome(fn(store), timeout_s)
        finally:
            self._in_flight -= 1

    async def read(
        self,
        blocking: Callable[[S], R],
        non_blocking: Callable[[S], Awaitable[R]],
        timeout_s: float,
    ) -> R:
        """A read on the event loop when the store's client can (``reads_async``: no thread
        hop), else in the pool; with :meth:`call`'s timeout, circuit breaker and cap."""
        if getattr(self.store, "reads_async", False):
            return await self.call_async(non_blocking, timeout_s)
        return await self.call(blocking, timeout_s)

    def _admit(self, timeout_s: float) -> S:
        """The store, if a call may go to it now; else :class:`StageFailed` saying why."""
        store = self.store
        if store is None:
            raise StageFailed(f"unavailable ({self.error})")
        if timeout_s <= 0:
            raise StageFailed("no time left")
        now = time.monotonic()
        if now < self._open_until:
            raise StageFailed(f"unavailable (circuit open after {self._failures} failures)")
        if self._in_flight >= self.max_in_flight:
            raise StageFailed(f"unavailable ({self._in_flight} calls still in flight)")
        if self._failures >= self.trip_after:  # half-open: this call probes the store
            self._open_until = now + self.cooldown_s
        return store

    async def _outcome(self, work: Awaitable[R], timeout_s: float) -> R:
        try:
            async with asyncio.timeout(timeout_s):
                result = await work
        except TimeoutError:
            self._failed()
            raise StageFailed(f"timeout after {timeout_s * 1000:.0f} ms") from None
        except Exception as err:
            self._failed()
            raise StageFailed(_one_line(err)) from err
        self._failures = 0
        self._open_until = 0.0
        return result

    def _settled(self, _: object) -> None:
        self._in_flight -= 1

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self.trip_after:
            self._open_until = time.monotonic() + self.cooldown_s

    def ping(self) -> str | None:
        """None when the store answers, else why not (blocking)."""
        if self.store is None and not self.try_open():
            return self.error
        assert self.store is not None
        try:
            self.store.ping()
            return None
        except Exception as err:
            return _one_line(err)

    def close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
            self.store = None


class CandidateCache(Generic[V]):
    """Per-user precomputed candidates (as the request path keeps them) for ``ttl_s``
    seconds, keyed by candidate version (a new bundle's candidates are never answered from
    the old one's entries); LRU-bounded."""

    def __init__(self, ttl_s: float, size: int) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[float, V]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl_s > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, version: str, user_id: str) -> tuple[bool, V | None]:
        key = (version, user_id)
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        self._entries.move_to_end(key)
        return True, hit[1]

    def put(self, version: str, user_id: str, value: V) -> None:
        if not self.enabled:
            return
        self._entries[(version, user_id)] = (time.monotonic() + self.ttl_s, value)
        self._entries.move_to_end((version, user_id))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def candidate_version(store: CandidateStore, bundle_version: str) -> str | None:
    """The candidate version to read with a bundle: its own when written (a promoted or
    rolled-back bundle and its candidates switch together), else the store's live one."""
    versions = {v.version for v in store.versions()}
    return bundle_version if bundle_version in versions else store.live_version()


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}"
