"""A registry bundle's stored lists, scored again at any cut-off and sliced for analysts.

:func:`load_bundle_lists` reads what ``recsys offline evaluate`` reads (the training and
test parts of the bundle's pipeline run, its candidate lists from the candidate store) but
keeps the first ``k_max`` items of every list instead of ``k``, so recall and nDCG can be
drawn as curves of k. Scores come from :mod:`offline.metrics` on the same
:class:`offline.report.Evaluation` the run used: at the run's k they equal its report.

Beyond accuracy, defined here because the run's report does not have them:

* the **long tail** is every item outside the most popular ``head_share`` (20 %) of the
  training catalogue, popularity counted in distinct training users; ties are broken by
  item order;
* **long-tail coverage**: the share of long-tail items shown to at least one user;
  **long-tail share**: the share of shown slots filled by long-tail items;
* **diversity** (intra-list): the mean, over users, of the mean genre distance (1 - Jaccard
  similarity of the genre sets) between every pair of items in the user's list; NaN for a
  bundle whose catalogue has no genres (:func:`item_metadata`).

A bundle trained from an interactions file without ``--items`` has no item metadata: its
catalogue's titles are the item ids, its years empty and its genre lists empty.
:func:`item_metadata` tells which metadata a catalogue has, :func:`metadata_note` the
sentence a notebook prints where it skips or replaces what needs the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from offline.evaluate_bundle import bundle_split
from offline.generators.matrix import IdIndex
from offline.metrics import (
    SliceThresholds,
    catalogue_coverage,
    novelty,
    popularity_bias,
    ranking_metrics,
    slice_metrics,
)
from offline.report import Evaluation
from offline.spec import Fitted, RankedLists
from shared import bundle as layout
from shared.registry import BundleInfo, ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates

IntArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]
HEAD_SHARE = 0.2
METADATA = ("title", "year", "genres")
_PLURAL = {"title": "titles", "year": "years", "genres": "genres"}


@dataclass
class BundleLists:
    """One bundle's final lists of its test users, ``[users, k_max]``, ready to score."""

    info: BundleInfo
    report: dict[str, Any]
    catalogue: pd.DataFrame  # catalogue.parquet, rows in the order of index.items
    index: IdIndex
    train: pd.DataFrame
    test: pd.DataFrame
    evaluation: Evaluation
    popularity: npt.NDArray[np.int64]  # distinct training users per item

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def label(self) -> str:
        """The version and what kind of run made it, for legends."""
        kind = "ranker" if self.info.params.get("ranker") else "no ranker"
        return f"{self.version} ({kind})"

    @property
    def recommended(self) -> IntArray:
        return self.evaluation.recommended


def load_bundle_lists(settings: Settings, version: str, k_max: int = 50) -> BundleLists:
    """The first ``k_max`` stored candidates of each test user of bundle ``version``."""
    registry = ModelRegistry(settings.registry_url)
    info = registry.get(version)
    folder = registry.path(version)
    train, test = bundle_split(settings, version)
    index = IdIndex.from_frames(train)
    matrix = index.matrix(train)
    popularity = np.diff(matrix.tocsc().indptr).astype(np.int64)
    items = np.full((len(index.users), k_max), -1, dtype=np.int32)
    wanted = set(test["user_id"].astype(str))
    store = open_candidates(settings.candidates_url)
    try:
        for row, user in enumerate(index.users):
            if str(user) not in wanted:
                continue
            found = store.get(str(user), version)
            if found is not None:
                codes = index.items.get_indexer(pd.Index(found.items[:k_max]))
                items[row, : len(codes)] = codes
    finally:
        store.close()
    fitted = Fitted(index, matrix, [], popularity, None, None, {}, {})
    lists = RankedLists(items, np.zeros(items.shape, dtype=np.float32), [[] for _ in index.users])
    catalogue = pd.read_parquet(folder / layout.CATALOGUE).set_index("item_id")
    catalogue = catalogue.reindex(pd.Index([str(i) for i in index.items], name="item_id"))
    return BundleLists(
        info=info,
        report=orjson.loads((folder / layout.REPORT_JSON).read_bytes()),
        catalogue=catalogue.reset_index(),
        index=index,
        train=train,
        test=test,
        evaluation=Evaluation(fitted, lists, test, k_max),
        popularity=popularity,
    )


def metric_curves(lists: BundleLists, ks: list[int]) -> pd.DataFrame:
    """Precision, recall, nDCG and MAP at each k (rows), as :func:`ranking_metrics` scores them."""
    ev = lists.evaluation
    rows = []
    for k in ks:
        if k > ev.k:
            raise ValueError(f"k={k} beyond the {ev.k} items loaded per user")
        m = ranking_metrics(ev.recommended[:, :k], ev.truth, k)
        rows.append(
            {"k": k, "precision": m.precision, "recall": m.recall, "ndcg": m.ndcg, "map": m.map}
        )
    return pd.DataFrame(rows)


def slice_table(
    lists: BundleLists, k: int, thresholds: SliceThresholds | None = None
) -> pd.DataFrame:
    """Accuracy at ``k`` of the cold, warm and heavy users (:func:`slice_metrics`, the run's
    thresholds unless given) and of the users without training history (``new``, when there
    are any), one row per slice."""
    ev = lists.evaluation
    recommended = ev.recommended[:, :k]
    slices = slice_metrics(recommended, ev.truth, ev.history, k, thresholds or SliceThresholds())
    new = ev.users >= ev.n_train_users
    if new.any():
        slices["new"] = ranking_metrics(recommended[new], ev.truth[new], k)
    frame = pd.DataFrame({name: m.as_dict() for name, m in slices.items()}).T
    frame["users"] = frame["users"].astype(int)
    return frame.rename_axis("slice")


def tercile_thresholds(lists: BundleLists) -> SliceThresholds:
    """Cold, warm and heavy as the lower, middle and upper third of the evaluated users'
    training-history sizes (for data where the fixed thresholds leave a slice empty)."""
    low, high = np.quantile(lists.evaluation.history, [1 / 3, 2 / 3])
    return SliceThresholds(cold_below=int(np.ceil(low)), heavy_from=int(np.ceil(high)))


def long_tail_mask(popularity: npt.NDArray[np.int64], head_share: float = HEAD_SHARE) -> BoolArray:
    """True for items outside the ``ceil(head_share * items)`` most popular ones."""
    order = np.argsort(-popularity, kind="stable")
    tail = np.ones(len(popularity), dtype=bool)
    tail[order[: math.ceil(head_share * len(popularity))]] = False
    return tail


def long_tail_coverage(recommended: IntArray, tail: BoolArray) -> float:
    """Share of the long-tail items that appear in at least one list."""
    shown = np.unique(recommended[recommended >= 0])
    n_tail = int(tail.sum())
    return float(tail[shown].sum() / n_tail) if n_tail else 0.0


def long_tail_share(recommended: IntArray, tail: BoolArray) -> float:
    """Share of the filled slots that hold a long-tail item."""
    shown = recommended[recommended >= 0]
    return float(tail[shown].mean()) if shown.size else 0.0


def item_metadata(catalogue: pd.DataFrame) -> list[str]:
    """Which of ``title``, ``year`` and ``genres`` the catalogue knows for at least one item
    (a title counts when it is not just the item id, as publish writes when none is known)."""
    known = []
    if "title" in catalogue:
        titles = catalogue["title"]
        if (titles.notna() & (titles.astype(str) != catalogue["item_id"].astype(str))).any():
            known.append("title")
    if "year" in catalogue and catalogue["year"].notna().any():
        known.append("year")
    if "genres" in catalogue and genre_matrix(catalogue).any():
        known.append("genres")
    return known


def metadata_note(
    catalogue: pd.DataFrame, consequences: dict[str, str], bundle: str = "this bundle"
) -> str | None:
    """The sentence a notebook prints where it skips or replaces what needs item metadata:
    ``consequences`` maps each field it uses (of :data:`METADATA`) to what happens without
    it; None when the catalogue has them all."""
    known = item_metadata(catalogue)
    missing = [field for field in consequences if field not in known]
    if not missing:
        return None
    what = ", and ".join(consequences[field] for field in missing)
    if known:
        fields = " or ".join(_PLURAL[field] for field in missing)
        return f"No item {fields} in the item metadata of {bundle}: {what}."
    source = "trained from an interactions file without --items"
    return f"No item metadata in {bundle} ({source}): {what}."


def genre_matrix(catalogue: pd.DataFrame) -> BoolArray:
    """``[items, genres]`` flags from the catalogue's ``genres`` lists, rows in its order."""
    lists = [list(g) if isinstance(g, list | np.ndarray) else [] for g in catalogue["genres"]]
    names = sorted({g for genres in lists for g in genres})
    column = {g: i for i, g in enumerate(names)}
    flags = np.zeros((len(lists), len(names)), dtype=bool)
    for row, genres in enumerate(lists):
        flags[row, [column[g] for g in genres]] = True
    return flags


def intra_list_diversity(recommended: IntArray, features: BoolArray) -> float:
    """Mean over users of the mean pairwise ``1 - Jaccard`` distance of their items' features.

    Pairs with an empty slot are left out; two items without any feature count as alike
    (distance 0). Users with fewer than two items are left out.
    """
    filled = recommended >= 0
    f = features[np.where(filled, recommended, 0)].astype(np.float64)  # [users, k, features]
    f[~filled] = 0.0
    inter = f @ f.transpose(0, 2, 1)
    sizes = f.sum(axis=2)
    union = sizes[:, :, None] + sizes[:, None, :] - inter
    similarity = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    pair = filled[:, :, None] & filled[:, None, :]
    k = recommended.shape[1]
    pair &= ~np.eye(k, dtype=bool)[None, :, :]
    n_pairs = pair.sum(axis=(1, 2))
    users = n_pairs > 0
    if not users.any():
        return 0.0
    distance = ((1.0 - similarity) * pair).sum(axis=(1, 2))
    return float((distance[users] / n_pairs[users]).mean())


def beyond_accuracy(lists: BundleLists, k: int, head_share: float = HEAD_SHARE) -> dict[str, float]:
    """Coverage, novelty and popularity bias (:mod:`offline.metrics`), long tail, diversity
    (NaN when no item of the catalogue has a genre: every list would score 0)."""
    recommended = lists.recommended[:, :k]
    popularity = lists.popularity
    tail = long_tail_mask(popularity, head_share)
    genres = genre_matrix(lists.catalogue)
    return {
        "coverage": catalogue_coverage(recommended, len(popularity)),
        "novelty": novelty(recommended, popularity, lists.evaluation.n_train_users),
        "popularity_bias": popularity_bias(recommended, popularity),
        "long_tail_coverage": long_tail_coverage(recommended, tail),
        "long_tail_share": long_tail_share(recommended, tail),
        "diversity": intra_list_diversity(recommended, genres) if genres.any() else math.nan,
    }


def compare(bundles: list[BundleLists], k: int) -> pd.DataFrame:
    """One row per bundle: accuracy at ``k`` and every beyond-accuracy figure."""
    rows: dict[str, dict[str, float]] = {}
    for lists in bundles:
        at_k = metric_curves(lists, [k]).drop(columns="k").iloc[0]
        accuracy = {str(name): float(value) for name, value in at_k.items()}
        rows[lists.label] = {**accuracy, **beyond_accuracy(lists, k)}
    return pd.DataFrame(rows).T.rename_axis("bundle")


def exposure_by_popularity(lists: BundleLists, k: int) -> pd.DataFrame:
    """Per training item, most popular first: its popularity and how many lists show it
    (the long-tail picture: where in the popularity order the recommendations land)."""
    recommended = lists.recommended[:, :k]
    shown = np.bincount(recommended[recommended >= 0], minlength=len(lists.popularity))
    order = np.argsort(-lists.popularity, kind="stable")
    return pd.DataFrame(
        {
            "popularity_rank": np.arange(1, len(order) + 1),
            "item_id": [str(lists.index.items[i]) for i in order],
            "popularity": lists.popularity[order],
            "times_recommended": shown[order],
            "long_tail": long_tail_mask(lists.popularity)[order],
        }
    )
