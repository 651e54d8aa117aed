"""The request path of ``GET /v1/users/{id}/recommendations``, inside a deadline.

1. user state (Redis) and precomputed candidates (Cassandra, through a TTL cache) are read
   concurrently, each within the store timeout and what is left of the budget;
2. fresh candidates: FAISS neighbours of the recent items (or of the session vector);
   trending items always, popular items when the user is cold or precomputed are missing;
3. merge with per-source quotas, dedupe, drop seen and excluded items;
4. rank: precomputed candidates keep the feature rows the offline job stored with them,
   the others get :func:`shared.online_features.unproposed_features`; one batch through
   the resident ranker (arm ``blend``: each source's own order instead);
5. select ``k`` with a per-genre cap and a few slots kept for fresh and trending items.

A stage that fails or runs out of time is left out and named in ``failures``; the answer
is then ``degraded``, never an error and never late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from online import blend
from online.bundle import ServingBundle
from online.experiments import ARMS, Arm, assign
from online.holder import BundleHolder
from online.metrics import OnlineMetrics
from online.settings import OnlineSettings
from online.stores import CandidateCache, StageFailed, StoreSlot
from shared.fresh import FreshCandidate
from shared.online_features import history_length, unproposed_features
from shared.storage.candidates import Candidates, CandidateStore
from shared.storage.user_state import UserState, UserStateStore

log = logging.getLogger(__name__)
_COMPUTE_RESERVE_S = 0.010  # kept back from the store stage for ranking and the response
_ARM_CACHE_SIZE = 100_000  # users whose arm is remembered (then the memo starts over)


class NoBundle(Exception):
    """No bundle has been loaded yet: nothing to serve from."""


@dataclass(frozen=True)
class Recommended:
    item_id: str
    score: float
    sources: list[str]
    reason: str


@dataclass
class Answer:
    user_id: str
    items: list[Recommended]
    bundle: str
    arm: str
    degraded: bool
    failures: dict[str, str]
    timings_ms: dict[str, float]
    surface: str = "home"
    recent: list[str] = field(default_factory=list)  # the user's recent items, as read


@dataclass
class _Gathered:
    state: UserState | None = None
    candidates: Candidates | None = None
    failures: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class Recommender:
    """Everything one request needs, built once in the lifespan."""

    def __init__(
        self,
        settings: OnlineSettings,
        holder: BundleHolder,
        user_state: StoreSlot[UserStateStore],
        candidates: StoreSlot[CandidateStore],
        metrics: OnlineMetrics,
    ) -> None:
        self.settings = settings
        self.holder = holder
        self.user_state = user_state
        self.candidates = candidates
        self.metrics = metrics
        self.cache = CandidateCache(settings.candidates_cache_ttl_s, settings.candidates_cache_size)
        self._arms: dict[str, Arm] = {}  # the settings are fixed for the process's life
        self.quotas = blend.Quotas(
            precomputed=settings.precomputed_quota,
            fresh=settings.fresh_quota,
            trending=settings.trending_quota,
            popular=settings.popular_quota,
        )

    def warm_up(self, bundle: ServingBundle) -> None:
        """One request's computation on ``bundle`` before it serves (FAISS, the ranker,
        numpy paths), counted in a scratch registry so the real metrics stay clean."""
        scratch = Recommender(
            self.settings, self.holder, self.user_state, self.candidates, OnlineMetrics()
        )
        state = UserState("warm-up", recent_items=bundle.popular[:3])
        for arm in ARMS.values():
            scratch._compute(bundle, arm, _Gathered(state=state), 10, set())

    def arm_of(self, user_id: str) -> Arm:
        """The user's arm, hashed once per user (SHA-256 per request is measurable here)."""
        arm = self._arms.get(user_id)
        if arm is None:
            if len(self._arms) >= _ARM_CACHE_SIZE:
                self._arms.clear()
            arm = assign(user_id, self.settings.experiment_salt, self.settings.experiment_arms)
            self._arms[user_id] = arm
        return arm

    async def recommend(
        self, user_id: str, k: int, exclude: set[str], surface: str = "home"
    ) -> Answer:
        started = time.perf_counter()
        deadline = started + self.settings.budget_ms / 1000
        live = self.holder.current  # read once: a swap mid-request does not affect us
        if live is None:
            raise NoBundle(self.holder.error or "no bundle loaded")
        arm = self.arm_of(user_id)
        bound = self.settings.experiment_bundles.get(arm.name)
        bundle = self.holder.pinned.get(bound, live) if bound else live
        got = await self._gather(bundle, user_id, deadline)
        if bound and bundle is live and live.version != bound:
            got.failures["experiment"] = f"bundle {bound} of arm {arm.name} not loaded"
        try:
            items = self._compute(bundle, arm, got, k, exclude)
        except Exception as err:  # a bug must cost quality, not the answer
            log.exception("ranking failed for user %s", user_id)
            self.metrics.errors.labels("rank").inc()
            got.failures["rank"] = f"{type(err).__name__}: {err}"
            items = self._popular_only(bundle, got, k, exclude)
        total = time.perf_counter() - started
        got.timings["total"] = total * 1000
        self.metrics.child(self.metrics.request_seconds, arm.name).observe(total)
        for stage, reason in got.failures.items():
            self.metrics.fallbacks.labels(stage, _reason_kind(reason)).inc()
        for item in items:
            self.metrics.child(self.metrics.served, item.sources[0].partition(":")[0]).inc()
        return Answer(
            user_id=user_id,
            items=items,
            bundle=bundle.version,
            arm=arm.name,
            degraded=bool(got.failures),
            failures=got.failures,
            timings_ms={s: round(ms, 3) for s, ms in got.timings.items()},
            surface=surface,
            recent=list(got.state.recent_items) if got.state is not None else [],
        )

    async def _gather(self, bundle: ServingBundle, user_id: str, deadline: float) -> _Gathered:
        got = _Gathered()
        budget = deadline - time.perf_counter() - _COMPUTE_RESERVE_S
        timeout = min(self.settings.store_timeout_ms / 1000, budget)
        store = self.user_state.store
        read_state = (  # on the loop when the client can (no thread hop), else in the pool
            self.user_state.call_async(lambda s: s.aget(user_id), timeout)
            if store is not None and store.reads_async
            else self.user_state.call(lambda s: s.get(user_id), timeout)
        )
        state, cands = await asyncio.gather(
            self._timed(got, "user_state", read_state),
            self._timed(got, "candidates", self._read_candidates(bundle, user_id, timeout)),
        )
        got.state = state
        got.candidates = cands
        return got

    async def _timed(self, got: _Gathered, stage: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            return await work
        except StageFailed as err:
            got.failures[stage] = str(err)
            return None
        finally:
            seconds = time.perf_counter() - started
            got.timings[stage] = seconds * 1000
            self.metrics.child(self.metrics.stage_seconds, stage).observe(seconds)

    async def _read_candidates(
        self, bundle: ServingBundle, user_id: str, timeout: float
    ) -> Candidates | None:
        version = self.holder.candidate_versions.get(bundle.version)
        if version is not None:
            hit, value = self.cache.get(version, user_id)
            if hit:
                return value
        value = await self.candidates.call(lambda s: s.get(user_id, version), timeout)
        if version is not None:
            self.cache.put(version, user_id, value)
        return value

    def _compute(
        self, bundle: ServingBundle, arm: Arm, got: _Gathered, k: int, exclude: set[str]
    ) -> list[Recommended]:
        t = time.perf_counter()
        state, cands = got.state, got.candidates
        recent = state.recent_items if state is not None else []
        fresh = self._fresh(bundle, state) if state is not None else []
        t = self._lap(got, "fresh", t)
        cold = not recent and cands is None and not got.failures  # known to be new
        need_popular = cands is None or not cands.items
        pool = blend.merge(
            precomputed=(cands.items, cands.scores, cands.sources) if cands else None,
            fresh=fresh,
            trending=bundle.trending,
            popular=bundle.popular if need_popular else [],
            drop=set(recent) | exclude,
            quotas=self.quotas,
        )
        t = self._lap(got, "merge", t)
        per_source = Counter(entry.sources[0].partition(":")[0] for entry in pool)
        for source, count in per_source.items():
            self.metrics.child(self.metrics.candidates, source).inc(count)
        if not pool:
            return []
        if arm.rerank and bundle.ranker is not None:
            features = ranking_features(bundle, pool, cands, recent)
            t = self._lap(got, "features", t)
            scores = bundle.ranker.score(features)
            t = self._lap(got, "rank", t)
        else:
            scores = blend.stored_order_scores(pool)
        chosen = blend.select(
            pool,
            scores,
            k,
            genre_of=bundle.first_genre.get,
            genre_cap=self.settings.genre_cap,
        )
        out = [self._item(bundle, pool[i], float(scores[i]), arm, cold) for i in chosen]
        self._lap(got, "select", t)
        return out

    def _fresh(self, bundle: ServingBundle, state: UserState) -> list[FreshCandidate]:
        if self.quotas.fresh <= 0:  # fresh candidates switched off (FAISS takes no k=0)
            return []
        fresh = bundle.fresh(state, self.quotas.fresh)
        vector = state.session_vector
        if fresh or vector is None or vector.shape != (bundle.index.dim,):
            return fresh
        ids, scores = bundle.index.search(vector[None, :], self.quotas.fresh)
        items = bundle.fresh.embeddings.ids
        return [
            FreshCandidate(items[r], float(s), "")
            for r, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
            if r >= 0
        ]

    def _item(
        self, bundle: ServingBundle, entry: blend.Pooled, score: float, arm: Arm, cold: bool
    ) -> Recommended:
        def title(item: str) -> str:
            found = bundle.items.get(item)
            return found.title if found else item

        shown = score if arm.rerank and bundle.ranker is not None else entry.source_score
        why = blend.reason(entry, title, cold)
        return Recommended(entry.item_id, round(float(shown), 6), list(entry.sources), why)

    def _popular_only(
        self, bundle: ServingBundle, got: _Gathered, k: int, exclude: set[str]
    ) -> list[Recommended]:
        recent = set(got.state.recent_items) if got.state else set()
        items = [i for i in bundle.popular if i not in exclude and i not in recent][:k]
        cold = got.state is None and got.candidates is None and "user_state" not in got.failures
        entry = blend.Pooled("", [blend.POPULAR])
        return [Recommended(i, 0.0, [blend.POPULAR], blend.reason(entry, str, cold)) for i in items]

    def _lap(self, got: _Gathered, stage: str, since: float) -> float:
        now = time.perf_counter()
        got.timings[stage] = (now - since) * 1000
        self.metrics.child(self.metrics.stage_seconds, stage).observe(now - since)
        return now


def ranking_features(
    bundle: ServingBundle,
    pool: list[blend.Pooled],
    cands: Candidates | None,
    recent: list[str],
) -> npt.NDArray[np.float32]:
    """``[len(pool), features]`` ranker inputs: a precomputed candidate's stored row as the
    offline job computed it, every other candidate's from the one shared fallback path."""
    if bundle.ranker is None:
        raise ValueError(f"bundle {bundle.version} has no ranker")
    spec = bundle.ranker.spec
    stored = _stored_features(cands, len(spec.names))
    history = history_length(spec, stored, recent)
    features = np.empty((len(pool), len(spec.names)), dtype=np.float32)
    others = list(range(len(pool)))
    if stored is not None:
        at = [(i, e.stored_row) for i, e in enumerate(pool) if e.stored_row is not None]
        if at:
            rows, stored_rows = zip(*at, strict=True)
            features[list(rows)] = stored[list(stored_rows)]
            others = [i for i, e in enumerate(pool) if e.stored_row is None]
    if others:  # computed only for the candidates without a stored row
        popularity = bundle.popularity_of([pool[i].item_id for i in others])
        features[others] = unproposed_features(spec, popularity, history)
    return features


def _stored_features(cands: Candidates | None, width: int) -> npt.NDArray[np.float32] | None:
    """The stored feature rows, when present and laid out for this ranker."""
    if cands is None or cands.features is None:
        return None
    array = np.asarray(cands.features, dtype=np.float32)
    if array.shape != (len(cands.items), width):  # written for another ranker layout
        return None
    return array


def _reason_kind(reason: str) -> str:
    """A bounded label for the fallbacks metric."""
    if reason.startswith("timeout"):
        return "timeout"
    if reason.startswith("unavailable"):
        return "unavailable"
    if reason.startswith("no time"):
        return "no_time"
    return "error"
