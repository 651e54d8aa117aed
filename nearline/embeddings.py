"""Item vectors of the live bundle, for session vectors, with its drift profile; reloaded
when the live bundle changes."""

from __future__ import annotations

import logging
import time

import numpy as np
import numpy.typing as npt

from shared.bundle import Embeddings, item_embeddings
from shared.drift import Reference, read_reference
from shared.errors import RecsysError
from shared.registry import ModelRegistry

log = logging.getLogger(__name__)


class ItemVectors:
    """id -> float32 vector lookups over one bundle's item embeddings."""

    def __init__(
        self,
        embeddings: Embeddings,
        version: str | None = None,
        drift: Reference | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.version = version
        self.drift = drift  # the bundle's training profile; None for a bundle without one
        self._rows = embeddings.position()

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        row = self._rows.get(item_id)
        return None if row is None else self.embeddings.vectors[row]


class LiveItemVectors:
    """The live bundle's item vectors; checks the registry's pointer every ``check_s``."""

    def __init__(self, registry: ModelRegistry, check_s: float = 30.0) -> None:
        self._registry = registry
        self._check_s = check_s
        self._checked = -float("inf")
        self._current: ItemVectors | None = None

    def current(self) -> ItemVectors | None:
        now = time.monotonic()
        if now - self._checked >= self._check_s:
            self._checked = now
            self._refresh()
        return self._current

    def _refresh(self) -> None:
        try:
            live = self._registry.live()
            if live is None:
                if self._current is None:
                    log.warning(
                        "no live bundle in %s: session vectors stay empty", self._registry.url
                    )
                return
            if self._current is not None and self._current.version == live.version:
                return
            path = self._registry.path(live.version)
            embeddings = item_embeddings(path)
        except (RecsysError, OSError, ValueError) as err:
            log.warning("live bundle not loaded, keeping the previous one: %s", err)
            return
        reference = None
        try:
            reference = read_reference(path, live.version, embeddings.ids)
        except (OSError, ValueError, TypeError) as err:  # drift is not worth the vectors
            log.warning("bundle %s: drift profile unreadable, no drift: %s", live.version, err)
        log.info(
            "item vectors of bundle %s: %d items, d=%d",
            live.version,
            len(embeddings.ids),
            embeddings.dim,
        )
        self._current = ItemVectors(embeddings, live.version, reference)
