"""What the offline job runs on and what it produces: its specification and parameters
(:class:`JobSpec`, :class:`ModelParams`), what it learns (:class:`Fitted`), the ranked
lists (:class:`RankedLists`, read by :func:`iter_user_lists`), its result
(:class:`JobResult`) and the step timer (:class:`Timer`).

The job's modules depend on this one, never the other way round:
``offline.spec`` <- :mod:`offline.report` <- :mod:`offline.publish` <- :mod:`offline.job`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator
from offline.generators.matrix import IdIndex
from offline.pipeline.clean import CleanParams
from offline.pipeline.ingest import Source
from offline.pipeline.split import SplitParams
from offline.ranker_training import FeatureContext, TrainReport
from shared.drift import Profile
from shared.ranker import Ranker

IntArray = npt.NDArray[np.int32]
StepCallback = Callable[[str, float, str], None]  # step name, seconds, one-line detail


# The generators the job can blend (offline.job.make_members builds them); popularity is
# always there and takes no weight.
GENERATORS = ("ease", "als", "covisit")


@dataclass(frozen=True)
class ModelParams:
    """Generator, blend and ranker parameters. Defaults: tuned on a validation split of
    MovieLens 100K (``offline.experiments.ml100k_baselines``), never on its test part."""

    ease_l2: float = 500.0
    als_factors: int = 16
    als_regularization: float = 0.001
    als_alpha: float = 5.0
    als_iterations: int = 15
    covisit_neighbours: int = 400
    covisit_asymmetry: float = 0.7
    blend_weights: Mapping[str, float] = field(
        default_factory=lambda: {"ease": 1.0, "als": 2.0, "covisit": 0.5}
    )
    item_item_max_items: int = 20_000  # EASE/co-visitation hold items x items in memory
    per_generator: int = 50  # each generator's top-n pooled into the ranker's candidates
    ranker_epochs: int = 10
    ranker_negatives: int = 32
    ranker_max_users: int = 50_000  # users the ranker trains on (sampled above this)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["blend_weights"] = dict(self.blend_weights)
        return out


@dataclass(frozen=True)
class JobSpec:
    """What to run on: the source and how to split and evaluate it."""

    source: Source
    label: str  # what the report calls the data (a dataset name or a path)
    split: SplitParams = field(default_factory=SplitParams)
    clean: CleanParams = field(default_factory=CleanParams)
    items: pd.DataFrame | None = None  # item metadata: item_id, title, year, genres
    holdout: pd.DataFrame | None = None  # canonical frame: evaluate on it, train on all
    k: int = 10
    candidates_per_user: int = 200
    params: ModelParams = field(default_factory=ModelParams)
    params_origin: Mapping[str, Any] | None = (
        None  # where tuned params came from (the bundle keeps it)
    )
    train_ranker: bool = True
    promote: bool = True
    recommendations_out: Path | None = None
    trending_window_s: int = 7 * 86_400


@dataclass
class JobResult:
    version: str
    bundle: Path
    promoted: bool
    metrics: dict[str, float]
    report: dict[str, Any]
    seconds: dict[str, float]


@dataclass
class Fitted:
    """Everything learned, in dense ids of ``index``."""

    index: IdIndex
    train: sp.csr_matrix
    members: list[ScoringGenerator]
    popularity: npt.NDArray[np.int64]  # distinct training users per item
    ranker: Ranker | None
    ranker_report: TrainReport | None
    skipped: dict[str, str]  # generator -> why it did not run
    weights: dict[str, float]  # blend weight per member (the ranker's prior)
    # The training data's drift profile and each item's popularity bucket (shared.drift),
    # stored in the bundle; None until the job computes it.
    drift: tuple[Profile, npt.NDArray[np.int8]] | None = None
    # What the ranker's extra features of the final candidates are computed from (the
    # whole training part); None: a ranker without them, or no ranker.
    context: FeatureContext | None = None


class Timer:
    """Collects step durations and forwards them to the progress callback."""

    def __init__(self, callback: StepCallback | None) -> None:
        self.callback = callback
        self.seconds: dict[str, float] = {}

    def done(self, step: str, started: float, detail: str = "") -> None:
        self.seconds[step] = time.perf_counter() - started
        if self.callback is not None:
            self.callback(step, self.seconds[step], detail)


@dataclass
class RankedLists:
    """Per user (rows of the training matrix): ranked items, scores and sources."""

    items: IntArray  # [users, n], -1 padded
    scores: npt.NDArray[np.float32]
    sources: list[list[str]]  # per user, per kept item: "ease+als", "popularity", ...
    # The ranker's input features of each kept item, [users, n, features]; None when
    # no feature was computed (users without history get the popular list, no features).
    features: npt.NDArray[np.float32] | None = None
    has_features: npt.NDArray[np.bool_] | None = None  # [users]
    # The trained ranker's top k of the same candidates when the bundle serves something
    # else ([users, k], -1 padded): reported beside the served lists, never served.
    unserved: IntArray | None = None

    def top(self, k: int) -> IntArray:
        return self.items[:, :k]


def iter_user_lists(
    index: IdIndex, lists: RankedLists, users: Sequence[int] | None = None
) -> Iterator[tuple[str, list[str], list[float], list[str], npt.NDArray[np.float32] | None]]:
    """(user id, item ids, scores, sources, features or None) per user with any item."""
    item_ids = index.items.to_numpy(dtype=object)
    rows = range(lists.items.shape[0]) if users is None else users
    for row in rows:
        items = lists.items[row]
        keep = items >= 0
        if not keep.any():
            continue
        yield (
            str(index.users[row]),
            [str(i) for i in item_ids[items[keep]]],
            [float(s) for s in lists.scores[row][keep]],
            lists.sources[row],
            lists.features[row][keep]
            if lists.features is not None
            and lists.has_features is not None
            and lists.has_features[row]
            else None,
        )
