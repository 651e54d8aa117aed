"""The drift profile of a bundle's training data (:mod:`shared.drift`), from the job's frames.

The nearline worker and the API compare live traffic with it; the bins are fixed here: the
items' popularity deciles (from the training popularity), log2 buckets of events per user,
and the deciles of the ranker's scores on what it would serve its validation users.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from offline.pipeline.ingest import EventLake, Source
from offline.spec import Fitted
from shared.drift import DEFAULT_WINDOW, Profile, popularity_buckets, training_profile


def bundle_profile(
    fitted: Fitted,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    source: Source,
    window: int = DEFAULT_WINDOW,
) -> tuple[Profile, npt.NDArray[np.int8]]:
    """The profile and each item's popularity bucket (in the row order of the bundle's items).

    The popularity, user and unseen figures count the last ``window`` training rows by time,
    as a live window of that length sees the traffic; unseen items are the test part's rows
    on items the bundle was not trained on (0 without a test part).
    """
    buckets = popularity_buckets(fitted.popularity)
    recent = train.iloc[np.argsort(train["timestamp"].to_numpy(), kind="stable")[-window:]]
    items = fitted.index.items.get_indexer(pd.Index(recent["item_id"]))
    users = fitted.index.users.get_indexer(pd.Index(recent["user_id"]))
    known = None
    if test is not None and len(test):
        known = fitted.index.items.get_indexer(pd.Index(test["item_id"])) >= 0
    report = fitted.ranker_report
    scores = report.validation_scores if report is not None else None
    profile = training_profile(
        items,
        users,
        buckets,
        test_known=known,
        event_types=event_type_counts(source),
        scores=scores if scores is not None and len(scores) else None,
        window=window,
    )
    return profile, buckets


def event_type_counts(source: Source) -> dict[str, int] | None:
    """Events per type in an event lake (impressions included: the live window sees them);
    None for other sources, which carry no event type."""
    if not isinstance(source, EventLake):
        return None
    path = Path(source.path)
    try:
        types = pd.read_parquet(path, columns=["type"])["type"]
    except (KeyError, ValueError, OSError):  # a lake of canonical columns only
        return None
    counts = types.dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.sort_index().items()}
