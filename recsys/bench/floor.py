"""The ``floor`` target of ``recsys bench online``: the full path's external calls, nothing
else, on the same stack (uvicorn + FastAPI, one process per worker).

Served by ``uvicorn --factory recsys.bench.floor:floor_app`` against the bundle and stores of
the benchmark's own environment (``RECSYS_REGISTRY_URL``, ``RECSYS_USER_STATE_URL``, which
must be Redis, ``RECSYS_CANDIDATES_URL``). Per ``GET /v1/users/{user_id}/recommendations``:

1. one Redis round trip: the real store's read script (``_READ_STATE``, EVALSHA through
   redis.asyncio) on the keys :class:`~shared.storage.redis_state.RedisUserStateStore` builds;
2. one FAISS search from up to 10 recent items the bundle knows, ``k`` = 50 (the fresh
   quota) + the number of recent items, as the full path asks; its answer is not used;
3. one forward of the live bundle's ranker over the user's precomputed candidates' stored
   feature rows (read from the candidate store at start-up, the version whole, as the API
   fills its cache when a bundle loads; a user it did not read is read once and kept);
4. the ``k`` best by score, the same JSON shape as the API (orjson).

No merge, dedupe, quotas, genre cap, metrics, impressions or deadline: what no request path
doing this work can go below. Recent items are still left out of the answer (the load
generators reject an answer with a seen item) and users without candidates get the popular
items (``k`` of them, as the API answers new users), so that every answer passes the
checks the full path's answers pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson

# at module level: FastAPI resolves the endpoint's (string) annotations in these globals
from fastapi import FastAPI, Query, Response

if TYPE_CHECKING:
    from online.bundle import ServingBundle
    from shared.storage.candidates import Candidates, CandidateStore
    from shared.storage.redis_state import RedisUserStateStore

LABEL = "floor: the external calls only"
FRESH_QUOTA = 50  # the full path's fresh quota (the benchmark's RECSYS_FRESH_QUOTA)
SEEDS = 10  # the recent items the full path searches from (FreshCandidates.seeds)
_CACHE_SIZE = 100_000  # users kept; then the dict starts over (new users never come back)
_PRECOMPUTED_REASON = "picked for your taste"  # online.blend.explain's wording
_POPULAR_REASON = "popular now"


@dataclass(frozen=True, slots=True)
class UserCandidates:
    """One user's precomputed candidates as the floor keeps them: ready for the ranker."""

    items: list[str]
    sources: list[list[str]]  # each item's sources field, built once
    features: npt.NDArray[np.float32] | None  # [items, features], contiguous
    scores: npt.NDArray[np.float32]  # stored scores: the order when there are no features


def top_k(scores: npt.NDArray[np.float32], k: int, skip: int) -> list[int]:
    """Positions of the ``k + skip`` highest scores, best first (ties by position): enough
    to leave ``skip`` seen items out and still answer ``k``."""
    n = len(scores)
    want = min(n, k + skip)
    if want <= 0:
        return []
    if want < n:  # a partial sort of the few needed, not of every candidate
        part = np.argpartition(-scores, want - 1)[:want]
        chosen = part[np.lexsort((part, -scores[part]))]
    else:
        chosen = np.lexsort((np.arange(n), -scores))
    return [int(i) for i in chosen.tolist()]


def pick(
    items: Sequence[str], order: Sequence[int], seen: set[str], k: int
) -> list[tuple[int, str]]:
    """The first ``k`` of ``order`` whose item is not in ``seen``: (position, item id)."""
    out: list[tuple[int, str]] = []
    for j in order:
        item = items[j]
        if item in seen:
            continue
        out.append((j, item))
        if len(out) == k:
            break
    return out


class Floor:
    """Everything a request reads, built once per worker process."""

    def __init__(
        self,
        bundle: ServingBundle,
        state: RedisUserStateStore,
        candidates: CandidateStore,
        candidate_version: str | None,
    ) -> None:
        self.bundle = bundle
        self.state = state
        self.candidates = candidates
        self.candidate_version = candidate_version
        self.rows = bundle.rows
        self.vectors = bundle.fresh.embeddings.vectors
        self.ranker = bundle.ranker
        self.width = len(bundle.ranker.spec.names) if bundle.ranker is not None else 0
        self.cache: dict[str, UserCandidates | None] = {}
        self.client: Any = None  # redis.asyncio client, made on the server's loop
        self.sha = ""

    async def start(self) -> None:
        from shared.storage.redis_state import _READ_STATE

        self.client = self.state._async_client()
        self.sha = str(await self.client.script_load(_READ_STATE))
        await asyncio.to_thread(self.fill)

    def fill(self) -> None:
        """Every user's candidates of the version, ready for the ranker (as the API's cache
        is filled before a bundle serves)."""
        if self.candidate_version is None:
            return
        for raw in self.candidates.scan(self.candidate_version, _CACHE_SIZE):
            self.cache[raw.user_id] = self.ready(raw)

    async def stop(self) -> None:
        await self.state.aclose()
        self.state.close()
        self.candidates.close()

    async def recent(self, user_id: str) -> list[str]:
        state_key, recent_key = self.state._keys(user_id)
        # one EVALSHA, as the real store reads; only the recent items are used here
        _, recent = await self.client.evalsha(
            self.sha, 2, state_key, recent_key, self.state.recent_cap
        )
        return [r.decode() for r in recent]

    async def user_candidates(self, user_id: str) -> UserCandidates | None:
        if user_id in self.cache:
            return self.cache[user_id]
        raw = await asyncio.to_thread(self.candidates.get, user_id, self.candidate_version)
        found = None if raw is None else self.ready(raw)
        if len(self.cache) >= _CACHE_SIZE:
            self.cache.clear()
        self.cache[user_id] = found
        return found

    def ready(self, raw: Candidates) -> UserCandidates | None:
        """A user's stored candidates as a request uses them (None: no items)."""
        if not raw.items:
            return None
        features = raw.features
        if features is not None and features.shape[1] == self.width:
            features = np.ascontiguousarray(features, dtype=np.float32)
        else:  # another ranker's layout (or none): the stored order answers
            features = None
        return UserCandidates(
            items=list(raw.items),
            sources=[[f"precomputed:{s}" if s else "precomputed"] for s in raw.sources]
            or [["precomputed"]] * len(raw.items),
            features=features,
            scores=np.asarray(raw.scores, dtype=np.float32),
        )

    async def answer(self, user_id: str, k: int) -> bytes:
        recent = await self.recent(user_id)
        cands = await self.user_candidates(user_id)
        if recent:
            get = self.rows.get
            seeds = [r for r in (get(i) for i in recent) if r is not None][:SEEDS]
            if seeds:
                self.bundle.index.search(self.vectors[seeds], FRESH_QUOTA + len(recent))
        seen = set(recent)
        if cands is None:
            popular = self.bundle.popular
            items = [
                {"item_id": i, "score": 0.0, "sources": ["popular"], "reason": _POPULAR_REASON}
                for _, i in pick(popular, range(min(len(popular), k + len(seen))), seen, k)
            ]
        else:
            if cands.features is not None and self.ranker is not None:
                scores = self.ranker.score(cands.features)
            else:
                scores = cands.scores
            chosen = pick(cands.items, top_k(scores, k, len(seen)), seen, k)
            values = scores[[j for j, _ in chosen]].tolist()
            items = [
                {
                    "item_id": i,
                    "score": s,
                    "sources": cands.sources[j],
                    "reason": _PRECOMPUTED_REASON,
                }
                for (j, i), s in zip(chosen, values, strict=True)
            ]
        return orjson.dumps(
            {
                "user_id": user_id,
                "items": items,
                "bundle": self.bundle.version,
                "arm": "control",
                "degraded": False,
                "failures": {},
                "timings_ms": {},
                "request_id": "floor",
            }
        )


def build() -> Floor:
    """The live bundle (loaded and warmed as the API loads it) and the run's stores."""
    from online.bundle import load_serving_bundle
    from online.stores import candidate_version
    from recsys.online_cli import _THREADS_ENV, limit_threads
    from shared.registry import ModelRegistry
    from shared.settings import Settings
    from shared.storage.factory import open_candidates
    from shared.storage.redis_state import RedisUserStateStore

    # the API's threads per worker (recsys online serve's default: one)
    limit_threads(int(os.environ.get(_THREADS_ENV, "1")))
    settings = Settings()
    if not settings.user_state_url.startswith("redis://"):
        raise ValueError(f"the floor reads user state from Redis, not {settings.user_state_url}")
    registry = ModelRegistry(settings.registry_url)
    live = registry.live()
    if live is None:
        raise RuntimeError(f"no live bundle in {settings.registry_url}")
    bundle = load_serving_bundle(live.version, registry.path(live.version), settings.device)
    state = RedisUserStateStore(
        settings.user_state_url, settings.user_state_ttl_s, settings.recent_items_cap
    )
    candidates = open_candidates(settings.candidates_url)
    return Floor(bundle, state, candidates, candidate_version(candidates, bundle.version))


def floor_app() -> FastAPI:
    """The floor as ``uvicorn --factory`` builds it: it answers once the bundle is loaded
    and the read script is in Redis."""
    return create_app(build())


def create_app(floor: Floor) -> FastAPI:
    from shared.heap import freeze_startup_heap

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await floor.start()
        freeze_startup_heap()  # as the API does: no full collection walks the bundle
        yield
        await floor.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(
        user_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> Response:
        return Response(await floor.answer(user_id, k), media_type="application/json")

    return app
