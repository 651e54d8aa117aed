"""The bundle being served, and the swap to a newly promoted one.

:meth:`BundleHolder.refresh` reads the registry's live pointer; when it names another
bundle, that bundle is loaded completely (ranker warmed up on its device) in a worker
thread while the current one keeps serving, then one attribute assignment swaps them.
A request reads ``holder.current`` once and uses only that object, so requests in flight
finish on the bundle they started with. A bundle that fails to load is not retried until
the pointer changes again; the previous bundle keeps serving. Rollback is the registry's
(``recsys models rollback``): the next refresh swaps back the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from online.bundle import ServingBundle, load_serving_bundle
from online.metrics import OnlineMetrics
from shared.registry import ModelRegistry

log = logging.getLogger(__name__)
Loader = Callable[[str, Path, str], ServingBundle]
Prepare = Callable[[ServingBundle], Awaitable[None]]


class BundleHolder:
    """Holds one :class:`ServingBundle` reference and replaces it atomically."""

    def __init__(
        self,
        registry: ModelRegistry,
        device: str,
        metrics: OnlineMetrics,
        loader: Loader = load_serving_bundle,
        prepare: Prepare | None = None,
    ) -> None:
        self.registry = registry
        self.device = device
        self.metrics = metrics
        self._loader = loader
        self._prepare = prepare  # run on a loaded bundle before it is swapped in
        self.current: ServingBundle | None = None
        self.pinned: dict[str, ServingBundle] = {}  # experiment arms' own bundles, by version
        self.candidate_versions: dict[str, str | None] = {}  # bundle -> candidate version
        self.error: str | None = None
        self._failed: str | None = None  # a version that failed to load
        self._lock = asyncio.Lock()

    async def pin(self, versions: set[str]) -> None:
        """Load the bundles experiment arms are bound to (once each; failures retried on
        the next call, while those arms are served by the live bundle)."""
        for version in sorted(versions - set(self.pinned)):
            if self.current is not None and self.current.version == version:
                self.pinned[version] = self.current
                continue
            try:
                path = self.registry.path(version)
                bundle = await asyncio.to_thread(self._loader, version, path, self.device)
                if self._prepare is not None:
                    await self._prepare(bundle)
            except Exception as err:
                self.metrics.bundle_load_failures.inc()
                log.error("bundle %s of an experiment arm failed to load: %s", version, err)
                continue
            self.pinned[version] = bundle

    async def refresh(self, force: bool = False) -> bool:
        """Swap to the registry's live bundle if it changed; True when a swap happened."""
        async with self._lock:
            try:
                info = await asyncio.to_thread(self.registry.live)
            except Exception as err:
                self.error = f"registry unreadable: {err}"
                return False
            if info is None:
                self.error = f"no live bundle in {self.registry.root}"
                return False
            current = self.current
            if current is not None and current.version == info.version:
                return False
            if info.version == self._failed and not force:
                return False
            try:
                path = self.registry.path(info.version)
                bundle = await asyncio.to_thread(self._loader, info.version, path, self.device)
                if self._prepare is not None:
                    await self._prepare(bundle)
            except Exception as err:
                self._failed = info.version
                self.metrics.bundle_load_failures.inc()
                self.error = f"bundle {info.version} failed to load: {err}"
                log.error("%s", self.error)
                return False
            self.current = bundle  # the swap: one reference, read once per request
            self.error = None
            self._failed = None
            self.metrics.bundle_swaps.inc()
            self.metrics.set_bundle(bundle.version, info.created_at)
            self.metrics.set_drift(bundle.drift)
            log.info(
                "serving bundle %s (loaded in %.2f s, was %s)",
                bundle.version,
                bundle.load_seconds,
                current.version if current else None,
            )
            return True
