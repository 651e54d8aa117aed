"""What the API holds while it runs: store slots, the bundle holder, the poller.

Built and started in the FastAPI lifespan (:mod:`online.app`), stopped when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from online.bundle import ServingBundle
from online.holder import BundleHolder
from online.impressions import ImpressionLogger
from online.metrics import OnlineMetrics
from online.recommend import Recommender
from online.stores import StoreSlot, candidate_version
from shared.heap import freeze_startup_heap
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage import factory
from shared.storage.base import Store
from shared.storage.candidates import CandidateStore
from shared.storage.event_log import EventLog
from shared.storage.user_state import UserStateStore

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Store)
_RESOLVE_TIMEOUT_S = 5.0


class Runtime:
    """Stores (given ones are used as they are and not closed), bundle, recommender."""

    def __init__(
        self,
        settings: Settings,
        *,
        user_state: UserStateStore | None = None,
        candidates: CandidateStore | None = None,
        event_log: EventLog | None = None,
        app_state: Any = None,
    ) -> None:
        self.settings = settings
        self.metrics = OnlineMetrics()
        self._executor = ThreadPoolExecutor(settings.store_threads, thread_name_prefix="stores")
        cfg = settings
        self.user_state = self._slot(
            "user_state",
            user_state,
            lambda: factory.open_user_state(
                cfg.user_state_url, cfg.user_state_ttl_s, cfg.recent_items_cap
            ),
        )
        self.candidates = self._slot(
            "candidates", candidates, lambda: factory.open_candidates(cfg.candidates_url)
        )
        self.event_log = self._slot(
            "event_log", event_log, lambda: factory.open_event_log(cfg.event_log_url)
        )
        self.slots: list[StoreSlot[Any]] = [self.user_state, self.candidates, self.event_log]
        given = (user_state, candidates, event_log)
        self._owned = [s for s, g in zip(self.slots, given, strict=True) if g is None]
        self.holder = BundleHolder(
            ModelRegistry(settings.registry_url),
            settings.device,
            self.metrics,
            prepare=self.prepare,
        )
        self.impressions = ImpressionLogger(self.event_log, self.metrics)
        self.recommender = Recommender(
            settings, self.holder, self.user_state, self.candidates, self.metrics
        )
        self._poller: asyncio.Task[None] | None = None
        self._filled: set[str] = set()  # candidate versions read into the cache
        self._app_state = app_state  # gets .event_log, for the events router

    def _slot(self, name: str, given: S | None, opener: Callable[[], S]) -> StoreSlot[S]:
        chosen: Callable[[], S] = (lambda: given) if given is not None else opener
        return StoreSlot(
            name,
            chosen,
            self._executor,
            self.settings.store_retry_s,
            max_in_flight=self.settings.store_threads,
        )

    async def start(self) -> None:
        """Open what answers, load the live bundle, start polling; never fails on a store."""
        await self.open_missing()
        await self.holder.refresh()
        await self.holder.pin(set(self.settings.experiment_bundles.values()))
        freeze_startup_heap()  # before the first request: no full collection walks all this
        self._poller = asyncio.create_task(self._poll(), name="bundle-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self.impressions.close()
        self.metrics.close()
        if self.user_state.store is not None:  # its async client belongs to this loop
            with contextlib.suppress(Exception):
                await self.user_state.store.aclose()
        for slot in self._owned:
            slot.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def open_missing(self) -> None:
        missing = [s for s in self.slots if s.store is None]
        await asyncio.gather(*(asyncio.to_thread(s.try_open) for s in missing))
        if self._app_state is not None:
            self._app_state.event_log = self.event_log.store

    async def prepare(self, bundle: ServingBundle) -> None:
        """Before a bundle serves: its candidate version, its candidates in the cache, and
        one warm-up computation."""
        await self.resolve(bundle)
        await self.fill_cache(bundle)
        try:
            await asyncio.to_thread(self.recommender.warm_up, bundle)
        except Exception:  # a warm-up failure is the first request's problem, not the swap's
            log.exception("warm-up on bundle %s failed", bundle.version)

    async def resolve(self, bundle: ServingBundle) -> None:
        """Which candidate version goes with ``bundle`` (unknown: the store's live one)."""
        if self.candidates.store is None:
            return
        try:
            self.holder.candidate_versions[bundle.version] = await self.candidates.call(
                lambda s: candidate_version(s, bundle.version), _RESOLVE_TIMEOUT_S
            )
        except Exception as err:
            log.warning("candidate version of %s unknown yet: %s", bundle.version, err)

    async def fill_cache(self, bundle: ServingBundle) -> None:
        """The bundle's candidates into the cache, once per candidate version (a pinned
        bundle that reads the live one's version finds it filled); never fails a swap."""
        version = self.holder.candidate_versions.get(bundle.version)
        if version is None or version in self._filled:
            return
        try:
            if await self.recommender.fill_cache(bundle):
                self._filled.add(version)
        except Exception:
            log.exception("filling the candidate cache for bundle %s failed", bundle.version)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.open_missing()
                await self.holder.refresh()
                await self.holder.pin(set(self.settings.experiment_bundles.values()))
                current = self.holder.current
                if current is not None and current.version not in self.holder.candidate_versions:
                    await self.resolve(current)  # the candidate store opened after the swap
                    await self.fill_cache(current)
            except Exception:  # the poller must outlive any one failure
                log.exception("bundle/store poll failed")
