"""The evaluation report of an offline run: JSON for machines, Markdown for people.

Protocol (the Microsoft Recommenders one when the split is ``benchmark``): every test row
is relevant; a user's training items are never recommended, so test rows the user already
had in training are removed from the truth (and counted); test items never seen in
training stay relevant but cannot be recommended (counted too: they lower recall, as they
should). Test users without any training history get the popularity list, as the online
tier would serve them, and are reported as the ``new`` slice.

The accuracy metrics of the final lists and of every baseline also get 95 % bootstrap
intervals over the evaluated users, and the final lists a paired difference against the
best single generator: the keys are described in :mod:`offline.intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from offline.intervals import PerUser, comparisons, interval_cell, markdown_lines
from offline.metrics import (
    RankingMetrics,
    catalogue_coverage,
    mean_metrics,
    novelty,
    popularity_bias,
    ranking_metrics,
    slice_metrics,
    user_metrics,
)
from offline.spec import Fitted, JobSpec, RankedLists
from shared.errors import DataError

if TYPE_CHECKING:
    from offline.pipeline.run import PipelineResult

IntArray = npt.NDArray[np.int32]
# The baseline row of the trained ranker when the bundle serves something else.
UNSERVED_RANKER = "ranker (trained, not served)"


class Evaluation:
    """The test part mapped onto the training ids, and the final lists of its users."""

    def __init__(self, fitted: Fitted, lists: RankedLists, test: pd.DataFrame, k: int) -> None:
        index = fitted.index
        n_users, n_items = index.shape
        self.k = k
        test_users = pd.Index(test["user_id"].astype(str))
        test_items = pd.Index(test["item_id"].astype(str))
        user_rows = index.users.get_indexer(test_users)
        item_cols = index.items.get_indexer(test_items)
        self.new_users = sorted(set(test["user_id"].astype(str)[user_rows < 0]))
        unknown_items = pd.Index(pd.unique(test["item_id"].astype(str)[item_cols < 0]))
        # Unknown users and items get rows/columns past the training ones.
        user_rows = np.where(
            user_rows < 0,
            n_users + pd.Index(self.new_users).get_indexer(test_users),
            user_rows,
        )
        item_cols = np.where(
            item_cols < 0,
            n_items + unknown_items.get_indexer(test_items),
            item_cols,
        )
        shape = (n_users + len(self.new_users), n_items + len(unknown_items))
        truth = sp.csr_matrix(
            (np.ones(len(test), dtype=np.float32), (user_rows, item_cols)), shape=shape
        )
        truth.sum_duplicates()
        truth.data[:] = 1.0
        train = sp.csr_matrix(fitted.train, copy=True)
        train.resize(shape)
        train.data[:] = 1.0
        already = truth.multiply(train)
        self.counts = {
            "test_rows": len(test),
            "test_users": len(pd.unique(test["user_id"])),
            "new_users": len(self.new_users),
            "unknown_items": len(unknown_items),
            "rows_of_unknown_items": int((item_cols >= n_items).sum()),
            "pairs_seen_in_training": int(already.nnz),
        }
        truth = (truth - already).tocsr()
        truth.eliminate_zeros()
        self.users = np.nonzero(np.diff(truth.indptr) > 0)[0]
        self.truth = truth[self.users]
        self.history = np.zeros(len(self.users), dtype=np.int64)
        known = self.users < n_users
        self.history[known] = np.diff(fitted.train.indptr)[self.users[known]]
        self.recommended = self._recommended(fitted, lists)
        self.n_train_users = n_users
        self.n_items = n_items

    def _recommended(self, fitted: Fitted, lists: RankedLists) -> IntArray:
        popular = np.argsort(-fitted.popularity, kind="stable")[: self.k].astype(np.int32)
        out = np.full((len(self.users), self.k), -1, dtype=np.int32)
        n_users = fitted.train.shape[0]
        known = self.users < n_users
        width = min(self.k, lists.items.shape[1])
        out[known, :width] = lists.items[self.users[known], :width]
        out[~known, : len(popular)] = popular
        return out

    def lists_of(self, member_items: IntArray) -> IntArray:
        """A generator's ``[train users, k]`` lists, restricted to the evaluated users."""
        out = np.full((len(self.users), self.k), -1, dtype=np.int32)
        known = self.users < self.n_train_users
        out[known] = member_items[self.users[known], : self.k]
        return out


def metrics_of(
    recommended: IntArray,
    evaluation: Evaluation,
    popularity: npt.NDArray[np.int64],
    n_train_users: int,
) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of one set of lists, keys like ``ndcg@10``."""
    return _scored(recommended, evaluation, popularity, n_train_users)[0]


def _scored(
    recommended: IntArray,
    evaluation: Evaluation,
    popularity: npt.NDArray[np.int64],
    n_train_users: int,
) -> tuple[dict[str, float], PerUser]:
    """:func:`metrics_of`, and the per-user accuracy values its means come from."""
    k = evaluation.k
    per_user = user_metrics(recommended, evaluation.truth, k)
    metrics = {
        **_named(mean_metrics(per_user), k),
        f"coverage@{k}": catalogue_coverage(recommended, len(popularity)),
        f"novelty@{k}": novelty(recommended, popularity, n_train_users),
        f"popularity_bias@{k}": popularity_bias(recommended, popularity),
    }
    return metrics, per_user


def _named(m: RankingMetrics, k: int) -> dict[str, float]:
    return {
        f"map@{k}": m.map,
        f"ndcg@{k}": m.ndcg,
        f"precision@{k}": m.precision,
        f"recall@{k}": m.recall,
        "users": float(m.users),
    }


def evaluation_report(
    fitted: Fitted,
    lists: RankedLists,
    test: pd.DataFrame | None,
    spec: JobSpec,
    pipeline: PipelineResult,
) -> dict[str, Any]:
    """Everything the run learned about itself, JSON-able."""
    report: dict[str, Any] = {
        "data": {
            "source": spec.label,
            "split": spec.split.relevant() if spec.holdout is None else {"kind": "holdout"},
            "rows": pipeline.rows,
            "drops": pipeline.drops,
            "train_users": int(fitted.train.shape[0]),
            "train_items": int(fitted.train.shape[1]),
            "train_rows": int(fitted.train.nnz),
        },
        "generators": {m.name: "fitted" for m in fitted.members} | fitted.skipped,
        "metrics": {},
    }
    if fitted.ranker_report is not None:
        r = fitted.ranker_report
        report["ranker"] = {
            "examples": r.examples,
            "positives": r.positives,
            "best_epoch": r.best_epoch,
            "epochs_run": r.epochs_run,
            "stop_ndcg": r.best_stop_ndcg,
            "seconds": r.seconds,
            "note": "epoch 0 is the blend prior alone" if r.best_epoch == 0 else "",
            # What the bundle serves, chosen on validation users the ranker never trained
            # on, and every contender's figures there (the served one's margin over each).
            "served": r.served,
            "default": r.default,
            "compare_users": r.compare_users,
            "compared": r.compared,
            "versus_default": r.versus,
            "margins": _margins(r.compared, r.served, spec.k),
        }
    if test is None:
        return report
    evaluation = Evaluation(fitted, lists, test, spec.k)
    if len(evaluation.users) == 0:
        raise DataError(
            f"{spec.label}: no test user has a test item outside their training history; "
            "nothing to evaluate"
        )
    n_users = fitted.train.shape[0]
    report["data"]["test"] = evaluation.counts
    final, final_per_user = _scored(evaluation.recommended, evaluation, fitted.popularity, n_users)
    report["metrics"] = final
    slices = slice_metrics(evaluation.recommended, evaluation.truth, evaluation.history, spec.k)
    report["slices"] = {name: _named(m, spec.k) for name, m in slices.items() if name != "all"}
    new = evaluation.users >= n_users
    if new.any():
        m = ranking_metrics(evaluation.recommended[new], evaluation.truth[new], spec.k)
        report["slices"]["new"] = _named(m, spec.k)
    report["baselines"], per_user = _baselines(fitted, evaluation)
    if lists.unserved is not None:  # the trained ranker the comparison did not choose
        recommended = evaluation.lists_of(lists.unserved)
        new = evaluation.users >= n_users
        recommended[new] = evaluation.recommended[new]
        name = UNSERVED_RANKER
        report["baselines"][name], per_user[name] = _scored(
            recommended, evaluation, fitted.popularity, n_users
        )
    singles = [m.name for m in fitted.members]
    report |= comparisons({"final": final_per_user, **per_user}, singles, spec.k)
    return report


def _margins(compared: Mapping[str, Mapping[str, float]], served: str, k: int) -> dict[str, float]:
    """The served contender's nDCG@k minus each other contender's, on the comparison
    users."""
    key = f"ndcg@{k}"
    if served not in compared:
        return {}
    mine = compared[served][key]
    return {name: mine - values[key] for name, values in compared.items() if name != served}


def _baselines(
    fitted: Fitted, evaluation: Evaluation
) -> tuple[dict[str, dict[str, float]], dict[str, PerUser]]:
    """Each generator alone, their blend, and popularity, on the same users: their metrics
    and their per-user accuracy."""
    from offline.generators.blend import BlendGenerator
    from offline.generators.popularity import PopularityGenerator

    k = evaluation.k
    known = evaluation.users[evaluation.users < evaluation.n_train_users].astype(np.int64)
    out: dict[str, dict[str, float]] = {}
    per_user: dict[str, PerUser] = {}
    models: list[Any] = [*fitted.members]
    if len(fitted.members) > 1:
        weights = [fitted.weights[m.name] for m in fitted.members]
        models.append(BlendGenerator(fitted.members, weights).use_fitted(fitted.train))
    models.append(PopularityGenerator().fit(fitted.train))
    for model in models:
        items = np.full((evaluation.n_train_users, k), -1, dtype=np.int32)
        items[known] = model.recommend(known, k, exclude_seen=True)[0]
        recommended = evaluation.lists_of(items)
        new = evaluation.users >= evaluation.n_train_users
        recommended[new] = evaluation.recommended[new]  # same cold-start list for all
        out[model.name], per_user[model.name] = _scored(
            recommended, evaluation, fitted.popularity, fitted.train.shape[0]
        )
    return out, per_user


def recommendations_frame(
    fitted: Fitted, lists: RankedLists, test: pd.DataFrame, k: int
) -> pd.DataFrame:
    """The final top-k of every evaluated user: user_id, item_id, rank (1-based), score."""
    evaluation = Evaluation(fitted, lists, test, k)
    n_users = fitted.train.shape[0]
    user_ids = [
        str(fitted.index.users[int(u)]) if u < n_users else evaluation.new_users[u - n_users]
        for u in evaluation.users
    ]
    item_ids = fitted.index.items.to_numpy(dtype=object)
    rows: list[tuple[str, str, int, float]] = []
    for i, user in enumerate(user_ids):
        row = evaluation.users[i]
        for rank, item in enumerate(evaluation.recommended[i], start=1):
            if item < 0:
                break
            score = float(lists.scores[row, rank - 1]) if row < n_users else float(-rank + 1)
            rows.append((user, str(item_ids[item]), rank, score))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


def write_recommendations(frame: pd.DataFrame, path: Path) -> Path:
    """CSV, or Parquet when the name ends in .parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def render_markdown(report: Mapping[str, Any], version: str) -> str:
    """The report for people: data, headline metrics, slices, baselines, generators."""
    data = report["data"]
    lines = [
        f"# Offline run {version}",
        "",
        f"Source: `{data['source']}`, split {data['split']}.",
        "",
    ]
    lines.append("| step | " + " | ".join(data["rows"]) + " |")
    lines.append("| --- |" + " --- |" * len(data["rows"]))
    lines.append(
        "| rows | "
        + " | ".join(
            ", ".join(f"{t} {n:,}" for t, n in tables.items()) for tables in data["rows"].values()
        )
        + " |"
    )
    drops = {k: v for k, v in data["drops"].items() if v}
    lines += [
        "",
        "Dropped by clean: "
        + (", ".join(f"{k} {v:,}" for k, v in drops.items()) or "nothing")
        + ".",
    ]
    lines.append(
        f"Training: {data['train_users']:,} users, {data['train_items']:,} items, "
        f"{data['train_rows']:,} interactions."
    )
    if "test" in data:
        t = data["test"]
        lines.append(
            f"Test: {t['test_rows']:,} rows of {t['test_users']:,} users; {t['new_users']:,} users "
            f"without training history; {t['unknown_items']:,} items unseen in training "
            f"({t['rows_of_unknown_items']:,} rows); {t['pairs_seen_in_training']:,} pairs already "
            "in training removed."
        )
    generators = report["generators"]
    lines += ["", "Generators: " + ", ".join(f"{k} ({v})" for k, v in generators.items()) + "."]
    if "ranker" in report:
        r = report["ranker"]
        lines.append(
            f"Ranker: {r['examples']:,} training candidates, {r['positives']:,} positives, best "
            f"epoch {r['best_epoch']}/{r['epochs_run']} (stopping users nDCG {r['stop_ndcg']:.4f})"
            + (f"; {r['note']}" if r["note"] else "")
            + "."
        )
        lines += _served_lines(r)
    metrics = report.get("metrics") or {}
    if not metrics:
        lines += ["", "No evaluation: the run trained on everything (split none)."]
        return "\n".join(lines) + "\n"
    keys = [k for k in metrics if k != "users"]
    lines += ["", "## Final lists", "", "| | " + " | ".join(keys) + " | users |"]
    lines.append("| --- |" + " --- |" * (len(keys) + 1))
    intervals = report.get("intervals", {})
    lines.append(_row("final (ranked)", metrics, keys, intervals.get("final")))
    for name, values in report.get("baselines", {}).items():
        lines.append(_row(name, values, keys, intervals.get(name)))
    lines += markdown_lines(report)
    slice_keys = [k for k in keys if not k.startswith(("coverage", "novelty", "popularity"))]
    lines += [
        "",
        "## User slices (final lists)",
        "",
        "| slice | " + " | ".join(slice_keys) + " | users |",
    ]
    lines.append("| --- |" + " --- |" * (len(slice_keys) + 1))
    for name, values in report.get("slices", {}).items():
        lines.append(_row(name, values, slice_keys))
    if "index" in report:
        ix = report["index"]
        lines += [
            "",
            f"FAISS index: {ix['kind']}, {ix['items']:,} items, dim {ix['dim']}, "
            f"recall@{ix['k']} against exact search {ix['recall']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def _served_lines(r: Mapping[str, Any]) -> list[str]:
    """The served choice and the comparison behind it (reports before it had none)."""
    compared: Mapping[str, Mapping[str, float]] = r.get("compared") or {}
    if not compared:
        return []
    served = r.get("served", "ranker")
    default = r.get("default") or served
    versus: Mapping[str, Mapping[str, float]] = r.get("versus_default") or {}
    keys = list(next(iter(compared.values())))
    out = [
        "",
        f"Served: **{served}**. On {r.get('compare_users', 0):,} validation users the ranker "
        f"did not train on, {default} is served unless another list beats it with a paired "
        "95 % interval of the nDCG difference above zero:",
        "",
        "| contender | " + " | ".join(keys) + f" | nDCG minus {default}'s, paired (95 % CI) |",
        "| --- |" + " --- |" * (len(keys) + 1),
    ]
    for name, values in compared.items():
        cells = " | ".join(f"{values[k]:.4f}" for k in keys)
        v = versus.get(name)
        paired = (
            "" if v is None else f"{v['difference']:+.4f} ({v['low']:+.4f} to {v['high']:+.4f})"
        )
        out.append(f"| {name}{' (served)' if name == served else ''} | {cells} | {paired} |")
    return out


def _row(
    name: str,
    values: Mapping[str, float],
    keys: list[str],
    intervals: Mapping[str, list[float]] | None = None,
) -> str:
    bounds = intervals or {}
    cells = " | ".join(interval_cell(values.get(k, float("nan")), bounds.get(k)) for k in keys)
    return f"| {name} | {cells} | {int(values.get('users', 0)):,} |"
