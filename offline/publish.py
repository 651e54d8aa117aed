"""The last steps of the offline job, in three parts the job calls in order.

1. :func:`register`: the FAISS index is built, the candidates are written to the candidate
   store under the new version (nobody reads it yet) and the bundle is published to the
   registry (listed, not live). If anything fails here, the half-written candidate version
   is dropped and the staging folder removed: the live bundle and the live candidates are
   untouched.
2. :func:`promote`: the candidate version is activated and the bundle made live. This is
   also what ``recsys models promote VERSION`` runs, so a run with ``--no-promote`` is
   finished later by the same code.
3. :func:`export`: the recommendations file (``--recommendations-out``), for any run,
   promoted or not.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from offline.report import recommendations_frame, render_markdown, write_recommendations
from offline.spec import Fitted, JobSpec, RankedLists, Timer, iter_user_lists
from shared import bundle as layout
from shared.bundle import Embeddings, write_embeddings
from shared.drift import write_profile
from shared.index import ItemIndex, build_index, measure_recall
from shared.ranker import ITEM_FEATURES
from shared.registry import BundleBuilder, BundleInfo, ModelRegistry
from shared.settings import Settings
from shared.storage.candidates import Candidates, CandidateStore
from shared.storage.factory import open_candidates

if TYPE_CHECKING:
    from offline.pipeline.run import PipelineResult

_RECALL_QUERIES = 1000
_RECALL_K = 10


def register(
    settings: Settings,
    *,
    spec: JobSpec,
    fitted: Fitted,
    lists: RankedLists,
    report: dict[str, Any],
    pipeline: PipelineResult,
    timer: Timer,
) -> str:
    """Write the run's candidates under a new version and publish its bundle, neither live.

    Builds the FAISS index (its recall goes into ``report["index"]``), writes every user's
    ranked list to the candidate store under the new version (not activated), and builds
    the bundle in the registry's staging folder, which is renamed into place when complete
    (listed, not live; its parent is the live bundle). Returns the version, what
    :func:`promote` takes. On any failure the half-written candidate version is dropped
    and the staging folder removed, so what was live stays as it was.
    """
    index, items, users = _index(fitted, spec, report, timer)
    started = time.perf_counter()
    registry = ModelRegistry(settings.registry_url)
    live = registry.live()
    store = open_candidates(settings.candidates_url)
    store.init_schema()
    params = {
        "source": spec.label,
        "split": report["data"]["split"],
        "clean": asdict(spec.clean),
        "k": spec.k,
        "candidates_per_user": spec.candidates_per_user,
        "models": spec.params.as_dict(),
        "tuned": dict(spec.params_origin) if spec.params_origin else None,
        "als_backend": settings.als_backend,
        "ranker": fitted.ranker is not None,
        # What the ranker folder scores with: "ranker", "blend" or a generator alone.
        "serves": fitted.ranker.spec.serves if fitted.ranker is not None else None,
        "pipeline_keys": {name: out.key for name, out in pipeline.steps.items()},
    }
    version = None
    try:
        with registry.create(
            parent=live.version if live else None,
            data_fingerprint=pipeline.steps["split"].key,
            params=params,
        ) as builder:
            version = builder.version
            _write_bundle(
                builder,
                fitted=fitted,
                spec=spec,
                pipeline=pipeline,
                report=report,
                vectors=(items, users),
                index=index,
            )
            rows = (
                Candidates(user, items_, scores, sources, features)
                for user, items_, scores, sources, features in iter_user_lists(fitted.index, lists)
            )
            written = store.write(version, rows)
    except BaseException:
        if version is not None and not _is_live(store, version):
            with contextlib.suppress(Exception):  # the original error matters more
                store.drop(version)
        raise
    finally:
        store.close()
    timer.done("bundle", started, f"{version}: {written:,} candidate lists written")
    return version


def promote(settings: Settings, version: str) -> BundleInfo:
    """Make a registered bundle live: activate its candidate version, then point the
    registry's live bundle at it (the previous one is kept for ``recsys models rollback``).

    The offline job calls this after :func:`register` unless ``--no-promote``; ``recsys
    models promote VERSION`` calls it too. A bundle whose candidates the store does not
    hold (written elsewhere, or a registry without an offline run) is promoted alone; the
    online tier then reads the store's live candidate version with it
    (:func:`online.stores.candidate_version`). Raises ``UnknownBundle`` for a version the
    registry does not list, before anything is switched.
    """
    registry = ModelRegistry(settings.registry_url)
    registry.get(version)  # unknown: fail before the candidates switch
    store = open_candidates(settings.candidates_url)
    try:
        store.init_schema()
        if _has_version(store, version):
            store.activate(version)
    finally:
        store.close()
    return registry.promote(version)


def rollback(settings: Settings) -> BundleInfo:
    """Make the previously live bundle live again, with its candidate version (when the
    store still holds it), as :func:`promote` does for a new one."""
    registry = ModelRegistry(settings.registry_url)
    info = registry.rollback()
    store = open_candidates(settings.candidates_url)
    try:
        store.init_schema()
        if _has_version(store, info.version):
            store.activate(info.version)
    finally:
        store.close()
    return info


def export(
    spec: JobSpec, fitted: Fitted, lists: RankedLists, pipeline: PipelineResult
) -> Path | None:
    """Write each test user's top ``spec.k`` to ``spec.recommendations_out`` (with its
    relevance against the test part: :func:`offline.report.recommendations_frame`).

    The test part is ``spec.holdout`` when given, else the split's test part. Returns the
    file written, or None when no file was asked for or there is no test part (split
    ``none`` without a holdout).
    """
    if spec.recommendations_out is None:
        return None
    if spec.holdout is not None:
        test = spec.holdout
    elif "test" in pipeline.rows["split"]:
        test = pd.read_parquet(pipeline.path("split", "test"))
    else:
        return None
    frame = recommendations_frame(fitted, lists, test, spec.k)
    write_recommendations(frame, spec.recommendations_out)
    return spec.recommendations_out


def _index(
    fitted: Fitted, spec: JobSpec, report: dict[str, Any], timer: Timer
) -> tuple[ItemIndex, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """FAISS index of the ALS item vectors; its recall against exact search goes in the
    report (queried with a sample of the users' vectors, as serving would)."""
    started = time.perf_counter()
    als = next((m for m in fitted.members if m.item_embeddings() is not None), None)
    if als is None:
        raise RuntimeError("no generator with item embeddings was fitted")
    items = np.asarray(als.item_embeddings(), dtype=np.float32)
    users = np.asarray(als.user_embeddings(), dtype=np.float32)
    index = build_index(items)
    rng = np.random.default_rng(spec.params.seed)
    queries = users[rng.choice(len(users), min(_RECALL_QUERIES, len(users)), replace=False)]
    recall = measure_recall(index, items, queries, _RECALL_K)
    report["index"] = {
        "kind": index.kind,
        "params": index.params,
        "items": index.size,
        "dim": index.dim,
        "k": _RECALL_K,
        "recall": recall[f"recall@{_RECALL_K}"],
        "queries": int(recall["queries"]),
    }
    timer.done(
        "index", started, f"{index.kind}, recall@{_RECALL_K} {report['index']['recall']:.4f}"
    )
    return index, items, users


def _write_bundle(
    builder: BundleBuilder,
    *,
    fitted: Fitted,
    spec: JobSpec,
    pipeline: PipelineResult,
    report: dict[str, Any],
    vectors: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    index: ItemIndex,
) -> None:
    """Every artefact of the bundle layout (:mod:`shared.bundle`) into the staging folder."""
    items, users = vectors

    folder, version = builder.path, builder.version
    ids = [str(i) for i in fitted.index.items]
    write_embeddings(folder, layout.ITEM_IDS, layout.ITEM_VECTORS, Embeddings(ids, items))
    user_ids = [str(u) for u in fitted.index.users]
    write_embeddings(folder, layout.USER_IDS, layout.USER_VECTORS, Embeddings(user_ids, users))
    index.save(folder / layout.INDEX_DIR)
    if fitted.ranker is not None:
        fitted.ranker.save(folder / layout.RANKER_DIR)
    catalogue(fitted, spec, pipeline).to_parquet(folder / layout.CATALOGUE, index=False)
    builder.metrics = {k: float(v) for k, v in report.get("metrics", {}).items()}
    (folder / layout.REPORT_JSON).write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    (folder / layout.REPORT_MD).write_text(render_markdown(report, version), "utf-8")
    if fitted.drift is not None:
        write_profile(folder, *fitted.drift)
    if spec.holdout is not None:
        (folder / layout.HOLDOUT).parent.mkdir(parents=True, exist_ok=True)
        spec.holdout.to_parquet(folder / layout.HOLDOUT, index=False)


def _is_live(store: CandidateStore, version: str) -> bool:
    try:
        return store.live_version() == version
    except Exception:
        return False


def _has_version(store: CandidateStore, version: str) -> bool:
    return any(v.version == version for v in store.versions())


def catalogue(fitted: Fitted, spec: JobSpec, pipeline: PipelineResult) -> pd.DataFrame:
    """One row per training item: metadata when known, popularity and trending scores.

    ``trending_score`` counts the item's interactions in the last ``trending_window_s``
    seconds of the training data (its newest timestamp is "now": rerunning on the same
    data gives the same scores), so "trending now" follows the data, not the wall clock.
    With a ranker trained on them, the per-item ranker features (``item_log_age``,
    ``item_trend``; :mod:`shared.ranker`) too: the values its candidates were ranked with,
    which the online tier reads for items the job did not rank for a user.
    """
    train = pd.read_parquet(pipeline.path("split", "train"), columns=["item_id", "timestamp"])
    now = int(train["timestamp"].max())
    recent = train[train["timestamp"] >= now - spec.trending_window_s]
    trending = recent.groupby("item_id").size()
    ids = pd.Series([str(i) for i in fitted.index.items], name="item_id")
    frame = pd.DataFrame(
        {
            "item_id": ids,
            "n_interactions": fitted.popularity,
            "trending_score": trending.reindex(ids).fillna(0).to_numpy(dtype=np.float64),
        }
    )
    if fitted.context is not None:  # per-item ranker features, for any item online
        for name, values in fitted.context.item_columns.items():
            frame[name] = values.astype(np.float32)
    frame["popularity_rank"] = (
        frame["n_interactions"].rank(method="min", ascending=False).astype(np.int64)
    )
    if spec.items is not None:
        meta = spec.items.copy()
        meta["item_id"] = meta["item_id"].astype(str)
        keep = [c for c in ("item_id", "title", "year", "genres") if c in meta.columns]
        frame = frame.merge(meta[keep], on="item_id", how="left")
    for column in ("title", "year", "genres"):
        if column not in frame.columns:
            frame[column] = None
    frame["title"] = frame["title"].fillna(frame["item_id"])
    frame["genres"] = pd.Series(
        [[str(x) for x in g] if isinstance(g, list | np.ndarray) else [] for g in frame["genres"]],
        dtype=object,
    )
    return frame[
        [
            "item_id",
            "title",
            "year",
            "genres",
            "n_interactions",
            "popularity_rank",
            "trending_score",
            *(name for name in ITEM_FEATURES if name in frame.columns),
        ]
    ]
