"""The request path of ``GET /v1/users/{id}/recommendations``, inside a deadline.

1. user state (Redis, one script call) and precomputed candidates (Cassandra, through a TTL
   cache that keeps them packed as arrays) are read, concurrently on a cache miss, each
   within the store timeout and what is left of the budget;
2. fresh candidates: FAISS neighbours of the recent items (or of the session vector);
   trending items always, popular items when the user is cold or precomputed are missing;
3. merge with per-source quotas, dedupe, drop seen and excluded items;
4. rank: precomputed candidates keep the feature rows the offline job stored with them,
   the others get :func:`shared.online_features.unproposed_features`'s rows; one batch
   through the resident ranker (arm ``blend``: each source's own order instead);
5. select ``k`` with a per-genre cap and a few slots kept for fresh and trending items.

Steps 2-5 work on item indices and arrays (:mod:`online.arrays`), by the rules that
:mod:`online.blend` states item by item; objects are made for the ``k`` items returned.
A stage that fails or runs out of time is left out and named in ``failures``; the answer
is then ``degraded``, never an error and never late.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from online import arrays, blend
from online.arrays import Fresh, PackedCandidates, Pool
from online.bundle import ServingBundle
from online.experiments import ARMS, Arm, assign
from online.holder import BundleHolder
from online.metrics import OnlineMetrics
from online.stores import CandidateCache, StageFailed, StoreSlot
from shared.online_features import history_length, unproposed_features
from shared.settings import Settings
from shared.storage.candidates import Candidates, CandidateStore
from shared.storage.user_state import UserState, UserStateStore

log = logging.getLogger(__name__)
_COMPUTE_RESERVE_S = 0.010  # kept back from the store stage for ranking and the response
_ARM_CACHE_SIZE = 100_000  # users whose arm is remembered (then the memo starts over)
_FILL_BATCH = 64  # users read and packed per hop to the store's thread when the cache fills
_FILL_CALL_TIMEOUT_S = 10.0  # one batch of the fill, at most


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
    # Names this answer in its impression event and to the client, which may send it back
    # with the events the list led to (a click's context), so outcomes join to what was shown.
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))


class CachedCandidates:
    """A user's precomputed candidates as read (None: the store has none for the user),
    packed once for each bundle that serves them (usually one)."""

    __slots__ = ("_packed", "raw")

    def __init__(self, raw: Candidates | None) -> None:
        self.raw = raw
        self._packed: dict[str, PackedCandidates] = {}

    def packed(self, bundle: ServingBundle) -> PackedCandidates | None:
        if self.raw is None:
            return None
        found = self._packed.get(bundle.version)
        if found is None:
            found = PackedCandidates.pack(bundle.version, self.raw, bundle.catalogue)
            self._packed[bundle.version] = found
        return found


@dataclass
class _Gathered:
    state: UserState | None = None
    cached: CachedCandidates | None = None
    failures: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def candidates(self) -> Candidates | None:
        return self.cached.raw if self.cached is not None else None


class Recommender:
    """Everything one request needs, built once in the lifespan."""

    def __init__(
        self,
        settings: Settings,
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
        self.cache: CandidateCache[CachedCandidates] = CandidateCache(
            settings.candidates_cache_ttl_s, settings.candidates_cache_size
        )
        self._arms: dict[str, Arm] = {}  # the settings are fixed for the process's life
        self.quotas = blend.Quotas(
            precomputed=settings.precomputed_quota,
            fresh=settings.fresh_quota,
            trending=settings.trending_quota,
            popular=settings.popular_quota,
        )

    def warm_up(self, bundle: ServingBundle) -> None:
        """One request's computation on ``bundle`` before it serves (FAISS, the ranker,
        numpy paths), with metrics that record nothing so the real ones stay clean."""
        scratch = Recommender(
            self.settings, self.holder, self.user_state, self.candidates, OnlineMetrics(False)
        )
        state = UserState("warm-up", recent_items=bundle.popular[:3])
        for arm in ARMS.values():
            scratch._compute(bundle, arm, _Gathered(state=state), 10, set())

    async def fill_cache(self, bundle: ServingBundle) -> int:
        """Read ``bundle``'s candidate version whole into the cache, packed for it, before
        it serves (``candidates_cache_warm_s``; up to ``candidates_cache_size`` users): a
        fresh server's or a new bundle's first requests then hit. Reads run in the store's
        pool a batch at a time, so requests on the current bundle go on meanwhile. A failed
        or unfinished fill leaves what it read; the rest fills on misses. Returns the users
        cached."""
        version = self.holder.candidate_versions.get(bundle.version)
        budget_s = self.settings.candidates_cache_warm_s
        store = self.candidates.store
        if version is None or budget_s <= 0 or not self.cache.enabled or store is None:
            return 0
        started = time.monotonic()
        rows = store.scan(version, self.cache.size)
        filled = 0
        stopped = "every user read"
        while True:
            left = budget_s - (time.monotonic() - started)
            if left <= 0:
                stopped = f"stopped after {budget_s:g} s"
                break
            try:
                batch = await self.candidates.call(
                    lambda _: _read_packed(rows, bundle), min(left, _FILL_CALL_TIMEOUT_S)
                )
            except StageFailed as err:
                stopped = f"stopped: {err}"
                break
            if not batch:
                break
            for cached in batch:
                assert cached.raw is not None  # a scan yields only users it holds
                self.cache.put(version, cached.raw.user_id, cached)
            filled += len(batch)
        log.info(
            "candidate cache: %d users of version %s cached for bundle %s in %.2f s (%s)",
            filled,
            version,
            bundle.version,
            time.monotonic() - started,
            stopped,
        )
        return filled

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
        if got.failures:
            self.metrics.degraded.inc()
        served: dict[str, int] = {}
        for item in items:
            source = item.sources[0].partition(":")[0]
            served[source] = served.get(source, 0) + 1
        for source, count in served.items():
            self.metrics.child(self.metrics.served, source).inc(count)
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
        read_state = self.user_state.read(
            lambda s: s.get(user_id), lambda s: s.aget(user_id), timeout
        )
        version = self.holder.candidate_versions.get(bundle.version)
        hit, cached = self.cache.get(version, user_id) if version is not None else (False, None)
        if hit:  # the usual case: only the user state to wait for, no task to gather
            got.timings["candidates"] = 0.0
            got.cached = cached
            got.state = await self._timed(got, "user_state", read_state)
            return got
        got.state, got.cached = await asyncio.gather(
            self._timed(got, "user_state", read_state),
            self._timed(got, "candidates", self._read_candidates(user_id, version, timeout)),
        )
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
        self, user_id: str, version: str | None, timeout: float
    ) -> CachedCandidates:
        value = await self.candidates.read(
            lambda s: s.get(user_id, version), lambda s: s.aget(user_id, version), timeout
        )
        cached = CachedCandidates(value)
        if version is not None:
            self.cache.put(version, user_id, cached)
        return cached

    def _compute(
        self, bundle: ServingBundle, arm: Arm, got: _Gathered, k: int, exclude: set[str]
    ) -> list[Recommended]:
        """Candidates to answer, on arrays (see :mod:`online.arrays`; the rules are those
        of :mod:`online.blend`, item by item)."""
        t = time.perf_counter()
        catalogue = bundle.catalogue
        state, raw = got.state, got.candidates
        packed = got.cached.packed(bundle) if got.cached is not None else None
        recent = state.recent_items if state is not None else []
        fresh = self._fresh(bundle, state) if state is not None else Fresh.empty()
        t = self._lap(got, "fresh", t)
        cold = not recent and raw is None and not got.failures  # known to be new
        need_popular = raw is None or not raw.items
        pool = arrays.merge(
            packed=packed,
            fresh=fresh,
            trending=catalogue.trending,
            popular=catalogue.popular if need_popular else catalogue.popular[:0],
            drop=_drop_mask(catalogue, packed, recent, exclude),
            quotas=self.quotas,
        )
        t = self._lap(got, "merge", t)
        for source, count in arrays.source_counts(pool.first).items():
            self.metrics.child(self.metrics.candidates, source).inc(count)
        if not len(pool):
            return []
        reranked = arm.rerank and bundle.ranker is not None
        if reranked:
            features = pool_features(bundle, pool, packed, recent)
            t = self._lap(got, "features", t)
            assert bundle.ranker is not None
            scores = bundle.ranker.score(features)
            t = self._lap(got, "rank", t)
        else:
            scores = arrays.stored_order_scores(pool)
        genre = catalogue.genre[np.minimum(pool.index, catalogue.size)]
        chosen = arrays.select(pool, scores, k, genre=genre, genre_cap=self.settings.genre_cap)
        if reranked and bundle.drift is self.metrics.drift_profile:  # the live bundle's
            self.metrics.record_scores(scores, chosen)
        shown = scores if reranked else pool.score
        out = _returned(catalogue, packed, pool, chosen, scores=shown, cold=cold)
        self._lap(got, "select", t)
        return out

    def _fresh(self, bundle: ServingBundle, state: UserState) -> Fresh:
        """Neighbours of the recent items with a vector (or else of the session vector)."""
        quota = self.quotas.fresh
        if quota <= 0:  # fresh candidates switched off (FAISS takes no k=0)
            return Fresh.empty()
        catalogue = bundle.catalogue
        get, embedded = catalogue.index.get, catalogue.embedded
        known = [i for i in map(get, dict.fromkeys(state.recent_items)) if i is not None]
        rows = np.asarray([i for i in known if i < embedded], dtype=np.int64)
        n_seen = len(set(state.recent_items))
        found, scores, seed_of = bundle.fresh.search(rows, rows, quota, n_seen)
        if len(found):
            return Fresh(found, scores, rows[seed_of])
        vector = state.session_vector
        if vector is None or vector.shape != (bundle.index.dim,):
            return Fresh.empty()
        ids, values = bundle.index.search(vector[None, :], quota)
        keep = ids[0] >= 0
        index = ids[0][keep]
        return Fresh(index, values[0][keep].astype(np.float64), np.full(len(index), -1))

    def _popular_only(
        self, bundle: ServingBundle, got: _Gathered, k: int, exclude: set[str]
    ) -> list[Recommended]:
        recent = set(got.state.recent_items) if got.state else set()
        items = [i for i in bundle.popular if i not in exclude and i not in recent][:k]
        cold = got.state is None and got.candidates is None and "user_state" not in got.failures
        why = blend.explain([blend.POPULAR], None, cold)
        return [Recommended(i, 0.0, [blend.POPULAR], why) for i in items]

    def _lap(self, got: _Gathered, stage: str, since: float) -> float:
        now = time.perf_counter()
        got.timings[stage] = (now - since) * 1000
        self.metrics.child(self.metrics.stage_seconds, stage).observe(now - since)
        return now


def _drop_mask(
    catalogue: arrays.CatalogueArrays,
    packed: PackedCandidates | None,
    recent: list[str],
    exclude: set[str],
) -> npt.NDArray[np.bool_]:
    """Seen and excluded items, as a mask over the catalogue and the user's extra items."""
    extras = packed.extras if packed is not None else ()
    drop = np.zeros(catalogue.size + len(extras), dtype=bool)
    get = catalogue.index.get
    unknown: list[str] = []
    for item in (*recent, *exclude):
        i = get(item)
        if i is not None:
            drop[i] = True
        elif extras:
            unknown.append(item)
    for item in unknown:  # only when the candidates name items this bundle does not know
        if item in extras:
            drop[catalogue.size + extras.index(item)] = True
    return drop


def pool_features(
    bundle: ServingBundle, pool: Pool, packed: PackedCandidates | None, recent: list[str]
) -> npt.NDArray[np.float32]:
    """``[len(pool), features]`` ranker inputs: a precomputed candidate's stored row as the
    offline job computed it, every other candidate's from the one shared fallback path
    (:func:`shared.online_features.unproposed_features`)."""
    if bundle.ranker is None:
        raise ValueError(f"bundle {bundle.version} has no ranker")
    spec = bundle.ranker.spec
    stored = _stored_features(packed, len(spec.names))
    history = history_length(spec, stored, recent)
    features = np.empty((len(pool), len(spec.names)), dtype=np.float32)
    others = np.ones(len(pool), dtype=bool)
    if stored is not None:
        at = pool.stored_row >= 0
        features[at] = stored[pool.stored_row[at]]
        others = ~at
    if others.any():  # computed only for the candidates without a stored row
        index = np.minimum(pool.index[others], bundle.catalogue.size)
        if bundle.unproposed is not None:  # the same rows, precomputed per bundle
            features[others] = bundle.unproposed.rows(index, history)
        else:  # raises for a spec of another layout: the request degrades, saying why
            popularity = bundle.catalogue.popularity[index]
            columns = {name: values[index] for name, values in bundle.item_columns.items()}
            features[others] = unproposed_features(spec, popularity, history, columns)
    return features


def _stored_features(packed: PackedCandidates | None, width: int) -> npt.NDArray[np.float32] | None:
    """The stored feature rows, when present and laid out for this ranker."""
    if packed is None or packed.features is None:
        return None
    array = np.asarray(packed.features, dtype=np.float32)
    if array.shape != (len(packed.index), width):  # written for another ranker layout
        return None
    return array


# The source names of each bitmask of sources (16 combinations), in the order they list.
_KINDS = tuple(
    tuple(name for code, name in enumerate(arrays.SOURCE_ORDER) if bits >> code & 1)
    for bits in range(1 << len(arrays.SOURCE_ORDER))
)


def _returned(
    catalogue: arrays.CatalogueArrays,
    packed: PackedCandidates | None,
    pool: Pool,
    chosen: list[int],
    *,
    scores: npt.NDArray[np.floating],
    cold: bool,
) -> list[Recommended]:
    """The one Python object per item returned: id, score, sources and reason."""
    at = np.asarray(chosen, dtype=np.int64)
    out = []
    for index, bits, label, because, score in zip(
        pool.index[at].tolist(),
        pool.bits[at].tolist(),
        pool.label[at].tolist(),
        pool.because[at].tolist(),
        scores[at].tolist(),
        strict=True,
    ):
        kinds = _KINDS[bits]
        sources = list(kinds)
        if packed is not None and kinds and kinds[0] == blend.PRECOMPUTED:
            sources[0] = packed.labels[label]
        why = blend.explain(kinds, catalogue.titles[because] if because >= 0 else None, cold)
        item = catalogue.ids[index] if index < catalogue.size else _extra(packed, index, catalogue)
        out.append(Recommended(item, round(score, 6), sources, why))
    return out


def _extra(packed: PackedCandidates | None, index: int, catalogue: arrays.CatalogueArrays) -> str:
    assert packed is not None  # only packed candidates name items past the catalogue
    return packed.item_id(index, catalogue)


def _read_packed(rows: Iterator[Candidates], bundle: ServingBundle) -> list[CachedCandidates]:
    """The next few users of a scan, packed for ``bundle`` (in the store's thread)."""
    batch = [CachedCandidates(raw) for raw in itertools.islice(rows, _FILL_BATCH)]
    for cached in batch:
        cached.packed(bundle)
    return batch


def _reason_kind(reason: str) -> str:
    """A bounded label for the fallbacks metric."""
    if reason.startswith("timeout"):
        return "timeout"
    if reason.startswith("unavailable"):
        return "unavailable"
    if reason.startswith("no time"):
        return "no_time"
    return "error"
