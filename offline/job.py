"""The offline job: pipeline -> generators -> ranker -> FAISS index -> bundle -> candidates.

:func:`run_offline` is what ``recsys offline run`` calls. In order:

1. ``pipeline``: the Spark steps (ingest, clean, split, features), content-addressed so an
   unchanged step is read back, not recomputed (:mod:`offline.pipeline`).
2. ``generators``: the candidate generators are fitted on the training part. EASE and
   co-visitation need an items x items matrix, so they run only for catalogues up to
   ``item_item_max_items``; ALS (implicit, or Spark MLlib when ``als_backend=spark``)
   always runs; popularity is the cold-start list.
3. ``ranker``: the torch ranker learns on candidates of generators fitted on the
   training part minus a validation part, labelled by that validation part; it starts
   from the z-score blend of the members (:func:`offline.ranker_training.blend_prior`).
   The generators are then used as fitted on the whole training part.
4. ``candidates``: per user, the union of every generator's top ``per_generator`` items,
   scored by the ranker; the best ``candidates_per_user`` are kept. Users without any
   training history get the popularity list.
5. ``evaluate``: the final top-k of every test user against the test part (or the
   ``holdout`` file), each generator alone and the blend beside it, beyond-accuracy
   metrics and cold/warm/heavy slices (:mod:`offline.report`).
6. ``index``: a FAISS index of the ALS item vectors, its recall against exact search
   measured and recorded.
7. ``register``, ``promote``, ``export`` (:mod:`offline.publish`): the candidates are
   written to the candidate store under the bundle's version (not yet live) and the bundle
   is published to the registry; then, unless ``--no-promote``, the candidate version is
   activated and the bundle made live; then the recommendations file is written
   (``--recommendations-out``). Anything failing before promotion leaves the live bundle
   and the live candidates as they were.

The specification and result types (:class:`~offline.spec.JobSpec`,
:class:`~offline.spec.JobResult`, ...) live in :mod:`offline.spec`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from offline.drift_profile import bundle_profile
from offline.generators.base import ScoringGenerator, torch_threads
from offline.generators.matrix import IdIndex
from offline.publish import export, promote, register
from offline.ranker_training import (
    CandidateSet,
    FeatureContext,
    TrainConfig,
    TrainReport,
    blend_prior,
    build_candidates,
    candidate_labels,
    feature_context,
    genre_matrix,
    rank_candidates,
    train_ranker,
)
from offline.report import evaluation_report
from offline.spec import (
    GENERATORS,
    Fitted,
    JobResult,
    JobSpec,
    ModelParams,
    RankedLists,
    StepCallback,
    Timer,
)
from shared.errors import DataError
from shared.ranker import Ranker, extra_names
from shared.registry import ModelRegistry
from shared.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SCORE_BATCH = 2048  # users ranked at once in the final pass (bounds memory)


def run_offline(
    settings: Settings,
    spec: JobSpec,
    progress: StepCallback | None = None,
    spark: SparkSession | None = None,
) -> JobResult:
    """Run the whole offline job; see the module docstring for the steps.

    Without ``spark`` the pipeline builds a session from settings and stops it after.
    """
    from offline.pipeline.run import run_pipeline

    timer = Timer(progress)
    started = time.perf_counter()
    result = run_pipeline(
        settings, spec.source, split=spec.split, clean=spec.clean, items=spec.items, spark=spark
    )
    cached = [name for name, hit in result.cached.items() if hit]
    timer.done(
        "pipeline",
        started,
        f"{result.rows['clean']['interactions']:,} clean rows"
        + (f"; cached: {', '.join(cached)}" if cached else ""),
    )
    for name, seconds in result.seconds.items():
        timer.seconds[f"pipeline.{name}"] = seconds
    train = pd.read_parquet(result.path("split", "train"))
    test = _test_part(result, spec)
    fitted = fit_models(settings, train, spec, timer)
    fitted.drift = bundle_profile(fitted, train, test, spec.source)

    started = time.perf_counter()
    users = np.arange(fitted.train.shape[0], dtype=np.int64)
    lists = rank_users(fitted, users, spec.candidates_per_user, spec.k)
    timer.done(
        "candidates", started, f"{len(users):,} users, up to {spec.candidates_per_user} each"
    )

    started = time.perf_counter()
    report = evaluation_report(fitted, lists, test, spec, result)
    timer.done("evaluate", started, _headline(report))

    version = register(
        settings, spec=spec, fitted=fitted, lists=lists, report=report, pipeline=result, timer=timer
    )
    if spec.promote:
        started = time.perf_counter()
        promote(settings, version)
        timer.done("promote", started, f"{version} is live")
    export(spec, fitted, lists, result)
    return JobResult(
        version=version,
        bundle=ModelRegistry(settings.registry_url).path(version),
        promoted=spec.promote,
        metrics=dict(report.get("metrics", {})),
        report=report,
        seconds=dict(timer.seconds),
    )


def _test_part(result: Any, spec: JobSpec) -> pd.DataFrame | None:
    if spec.holdout is not None:
        return spec.holdout
    if spec.split.kind == "none":
        return None
    return pd.read_parquet(result.path("split", "test"))


def _headline(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    if not metrics:
        return "no test part (split none)"
    return " ".join(
        f"{name} {metrics[name]:.4f}" for name in ("ndcg@10", "map@10") if name in metrics
    )


def make_members(
    settings: Settings, params: ModelParams, n_items: int
) -> tuple[list[ScoringGenerator], dict[str, str]]:
    """The blend members for a catalogue of ``n_items``, and why any were left out."""
    from offline.generators.covisit import CovisitationGenerator
    from offline.generators.ease import EaseGenerator

    members: list[ScoringGenerator] = []
    skipped: dict[str, str] = {}
    weights = params.blend_weights
    item_item = n_items <= params.item_item_max_items
    for name in weights:
        if name in ("ease", "covisit") and not item_item:
            skipped[name] = (
                f"{n_items:,} items > item_item_max_items {params.item_item_max_items:,}"
            )
            continue
        if name == "ease":
            members.append(EaseGenerator(l2=params.ease_l2))
        elif name == "covisit":
            members.append(
                CovisitationGenerator(
                    neighbours=params.covisit_neighbours, asymmetry=params.covisit_asymmetry
                )
            )
        elif name == "als":
            members.append(_als(settings, params))
        else:
            raise DataError(
                f"unknown generator {name!r} in blend weights ({', '.join(GENERATORS)})"
            )
    if not any(m.name in ("als", "spark_als") for m in members):
        members.append(_als(settings, params))  # the index and the session vectors need it
    return members, skipped


def _als(settings: Settings, params: ModelParams) -> ScoringGenerator:
    """ALS from the configured backend: implicit on this machine, or Spark MLlib on
    ``spark_master`` (``RECSYS_ALS_BACKEND=spark``) for data that outgrows it."""
    from offline.generators.spark_als import make_als

    kwargs: dict[str, Any] = {
        "factors": params.als_factors,
        "regularization": params.als_regularization,
        "alpha": params.als_alpha,
        "iterations": params.als_iterations,
    }
    if settings.als_backend == "spark":
        from offline.spark import spark_session

        return make_als("spark", spark_session(settings, "recsys-offline-als"), **kwargs)
    return make_als("implicit", None, **kwargs, device=settings.device)


def blend_weight(params: ModelParams, member: str) -> float:
    """A member's blend weight; Spark's ALS takes the weight of ALS."""
    key = "als" if member == "spark_als" else member
    return float(params.blend_weights.get(key, 1.0))


def fit_models(settings: Settings, train: pd.DataFrame, spec: JobSpec, timer: Timer) -> Fitted:
    """Fit the generators on ``train`` and, unless disabled, the ranker (step 2 and 3)."""
    from offline.split import validation_mask

    params = spec.params
    index, user_codes, item_codes = IdIndex.factorize(train)
    matrix = index.matrix_of_codes(user_codes, item_codes)
    ranker: Ranker | None = None
    report: TrainReport | None = None
    context: FeatureContext | None = None
    if spec.train_ranker:
        seconds = train["timestamp"].to_numpy(dtype=np.int64)
        genres = _genres(spec, index)
        context = feature_context(matrix.shape, user_codes, item_codes, seconds, genres)
        started = time.perf_counter()
        in_fit = validation_mask(user_codes)  # validation_split's rows, from the codes
        if in_fit.all() or not in_fit.any():
            raise DataError(
                f"{spec.label}: too little data to train the ranker "
                f"({len(train)} training rows); run with --no-ranker"
            )
        fit_matrix = index.matrix_of_codes(user_codes[in_fit], item_codes[in_fit])
        valid_matrix = index.matrix_of_codes(user_codes[~in_fit], item_codes[~in_fit])
        members, _ = make_members(settings, params, len(index.items))
        for member in members:
            member.fit(fit_matrix)
        users = _ranker_users(fit_matrix, valid_matrix, params)
        fit_context = feature_context(
            fit_matrix.shape, user_codes[in_fit], item_codes[in_fit], seconds[in_fit], genres
        )
        cands = build_candidates(members, fit_matrix, params.per_generator, users, fit_context)
        weights = {m.name: blend_weight(params, m.name) for m in members}
        config = TrainConfig(
            epochs=params.ranker_epochs,
            negatives=params.ranker_negatives,
            seed=params.seed,
            prior=blend_prior(weights),
            device=settings.device,
        )
        ranker, report = train_ranker(cands, candidate_labels(cands, valid_matrix), config)
        timer.done(
            "ranker",
            started,
            f"{report.examples:,} examples, best epoch {report.best_epoch}/{report.epochs_run}"
            f", serves {report.served}",
        )
    started = time.perf_counter()
    members, skipped = make_members(settings, params, len(index.items))
    for member in members:
        member.fit(matrix)
    popularity = np.diff(matrix.tocsc().indptr).astype(np.int64)
    timer.done("generators", started, ", ".join(m.name for m in members))
    weights = {m.name: blend_weight(params, m.name) for m in members}
    return Fitted(
        index, matrix, members, popularity, ranker, report, skipped, weights, context=context
    )


def _genres(spec: JobSpec, index: IdIndex) -> sp.csr_matrix | None:
    """Each training item's genres from the item metadata, None without any."""
    if spec.items is None or "genres" not in spec.items.columns:
        return None
    meta = spec.items.drop_duplicates("item_id", keep="last")
    by_id = dict(zip(meta["item_id"].astype(str), meta["genres"], strict=True))
    listed = [by_id.get(str(i)) for i in index.items]
    return genre_matrix(
        [[str(g) for g in v] if isinstance(v, list | tuple | np.ndarray) else [] for v in listed]
    )


def _ranker_users(
    fit: sp.csr_matrix, valid: sp.csr_matrix, params: ModelParams
) -> npt.NDArray[np.int64]:
    """Users with both a history and validation items, sampled down to the cap."""
    usable = np.nonzero((np.diff(fit.indptr) > 0) & (np.diff(valid.indptr) > 0))[0]
    if len(usable) > params.ranker_max_users:
        rng = np.random.default_rng(params.seed)
        usable = np.sort(rng.choice(usable, params.ranker_max_users, replace=False))
    return usable.astype(np.int64)


def rank_users(fitted: Fitted, users: npt.NDArray[np.int64], n: int, k: int = 10) -> RankedLists:
    """Step 4: each user's best ``n`` candidates, in batches of users; and, when the bundle
    serves something other than the trained ranker, that ranker's top ``k`` of them."""
    trained = fitted.ranker_report.trained if fitted.ranker_report is not None else None
    unserved = np.full((len(users), k), -1, dtype=np.int32) if trained is not None else None
    out_items = np.full((len(users), n), -1, dtype=np.int32)
    out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    out_features: npt.NDArray[np.float32] | None = None
    has_features = np.zeros(len(users), dtype=bool)
    sources: list[list[str]] = [[] for _ in users]
    history = np.diff(fitted.train.indptr)
    popular = np.argsort(-fitted.popularity, kind="stable")[:n].astype(np.int32)
    popular = popular[fitted.popularity[popular] > 0]
    for start in range(0, len(users), _SCORE_BATCH):
        batch = users[start : start + _SCORE_BATCH]
        warm = batch[history[batch] > 0]
        rows = {int(u): start + i for i, u in enumerate(batch)}
        for user in batch[history[batch] == 0]:  # nothing known: the popular list
            row = rows[int(user)]
            out_items[row, : len(popular)] = popular
            if unserved is not None:
                unserved[row, : min(k, len(popular))] = popular[:k]
            out_scores[row, : len(popular)] = -np.arange(len(popular), dtype=np.float32)
            sources[row] = ["popularity"] * len(popular)
        if len(warm) == 0:
            continue
        context = fitted.context if _has_extras(fitted) else None
        cands = build_candidates(fitted.members, fitted.train, fitted_n(fitted), warm, context)
        scores = _score(fitted, cands)
        if unserved is not None and trained is not None:
            warm_rows = np.fromiter((rows[int(u)] for u in warm), np.int64, count=len(warm))
            with torch_threads(1):
                unserved[warm_rows] = rank_candidates(trained, cands, k)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        top_items = np.take_along_axis(cands.items, order, axis=1)
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_features = np.take_along_axis(cands.features, order[:, :, None], axis=1)
        if out_features is None:
            out_features = np.zeros((len(users), n, cands.features.shape[2]), dtype=np.float32)
        in_top = _membership(cands, order)
        valid = (top_items >= 0) & np.isfinite(top_scores)
        # Valid slots first in each row, in their order: a stable sort on "not valid".
        packed = np.argsort(~valid, axis=1, kind="stable")
        counts = valid.sum(axis=1)
        kept = np.arange(packed.shape[1])[None, :] < counts[:, None]
        out_rows = np.fromiter((rows[int(u)] for u in warm), dtype=np.int64, count=len(warm))
        width = packed.shape[1]
        out_items[out_rows, :width] = np.where(
            kept, np.take_along_axis(top_items, packed, axis=1), -1
        )
        out_scores[out_rows, :width] = np.where(
            kept, np.take_along_axis(top_scores, packed, axis=1), -np.inf
        )
        out_features[out_rows, :width] = np.where(
            kept[:, :, None], np.take_along_axis(top_features, packed[:, :, None], axis=1), 0.0
        )
        has_features[out_rows] = True
        labels = np.take_along_axis(in_top, packed, axis=1)
        for i, row in enumerate(out_rows):
            sources[row] = labels[i, : counts[i]].tolist()
    return RankedLists(out_items, out_scores, sources, out_features, has_features, unserved)


def _has_extras(fitted: Fitted) -> bool:
    """Whether the ranker was trained with the extra features (see shared.ranker)."""
    return fitted.ranker is not None and bool(extra_names(fitted.ranker.spec.names))


def fitted_n(fitted: Fitted) -> int:
    """Per-generator list length: what the ranker was trained on, else 50."""
    return fitted.ranker.spec.top_n if fitted.ranker is not None else 50


def _score(fitted: Fitted, cands: CandidateSet) -> npt.NDArray[np.float32]:
    u, c, f = cands.features.shape
    if fitted.ranker is not None:
        with torch_threads(1):  # a small MLP: one thread, no waits on a busy machine
            flat = fitted.ranker.score(cands.features.reshape(u * c, f)).reshape(u, c)
    else:  # no ranker: the blend of the members' z-scores
        names = list(cands.names)
        flat = np.zeros((u, c), dtype=np.float32)
        for member in fitted.members:
            column = names.index(f"{member.name}_z")
            flat += np.float32(fitted.weights[member.name]) * cands.features[:, :, column]
    return np.where(cands.valid, flat, -np.inf).astype(np.float32)


def _membership(
    cands: CandidateSet, order: npt.NDArray[np.integer[Any]]
) -> npt.NDArray[np.object_]:
    """Which generators had each kept candidate in their own top list: ``[u, n]`` labels
    such as ``"ease+als"`` (``"ranker"`` when none had it). Each cell's flags form a
    bit code and the labels come from a table of the 2^members codes, not a Python loop
    over every cell (50,000 users x 200 candidates at 5M interactions)."""
    names = list(cands.names)
    members = [n[: -len("_in_top")] for n in names if n.endswith("_in_top")]
    columns = [names.index(f"{m}_in_top") for m in members]
    flags = cands.features[:, :, columns] > 0.5  # [u, c, members]
    picked = np.take_along_axis(flags, order[:, :, None], axis=1)
    codes = (picked.astype(np.int64) << np.arange(len(members), dtype=np.int64)).sum(axis=2)
    table = np.array(
        [
            "+".join(m for bit, m in enumerate(members) if code >> bit & 1) or "ranker"
            for code in range(1 << len(members))
        ],
        dtype=object,
    )
    labels: npt.NDArray[np.object_] = table[codes]
    return labels
