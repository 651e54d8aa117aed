"""The promotion gate: a new bundle goes live only if it is not worse than the live one.

Both bundles' stored candidate lists are scored on the same holdout: the new bundle's test
part, which for a temporal split is the latest stretch of the data (for the event lake, the
latest events), less the (user, item) pairs the live bundle was trained on, so that neither
is scored on what it learned from (a live bundle whose pipeline output is gone keeps them,
and the reason says so). The new bundle passes when ``new >= live - tolerance`` on the
chosen metric.

Every decision, passed or refused, forced or not, is recorded in the registry's history
(:meth:`shared.registry.ModelRegistry.record`) with both figures and the reason, and
``recsys models history`` shows it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from shared.errors import DataError, RecsysError
from shared.registry import ModelRegistry
from shared.settings import Settings

DEFAULT_METRIC = "ndcg@10"
DEFAULT_TOLERANCE = 0.002  # absolute, on the metric


class GateRefused(RecsysError):
    """The gate kept the live bundle; the message says why (exit 1: nothing was wrong
    with the command, the bundle did not pass)."""

    exit_code = 1


@dataclass(frozen=True)
class Verdict:
    version: str
    live: str | None
    passed: bool
    reason: str
    metric: str
    tolerance: float
    new_value: float | None = None
    live_value: float | None = None
    users: int = 0

    def as_decision(self, action: str) -> dict[str, Any]:
        return {"action": action, **asdict(self)}


def judge(
    settings: Settings,
    version: str,
    *,
    metric: str = DEFAULT_METRIC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verdict:
    """Compare bundle ``version`` with the live one on ``version``'s holdout."""
    from offline.evaluate_bundle import bundle_split, score_lists

    registry = ModelRegistry(settings.registry_url)
    registry.get(version)  # unknown: UnknownBundle before anything else
    live = registry.live()

    def verdict(live: str | None, passed: bool, reason: str, **figures: Any) -> Verdict:
        return Verdict(version, live, passed, reason, metric, tolerance, **figures)

    if live is None:
        return verdict(None, True, "no bundle is live")
    if live.version == version:
        return verdict(version, True, "already live")
    try:
        train, test = bundle_split(settings, version)
    except DataError as err:
        return verdict(live.version, False, f"no holdout to compare on: {err}")
    test, note = _unseen_by(settings, live.version, test)
    if test.empty:
        return verdict(
            live.version, False, f"every holdout row was in the live bundle's training part{note}"
        )
    k = _k_of(metric)
    new = score_lists(settings, version, train, test, k)
    old = score_lists(settings, live.version, train, test, k)
    if metric not in new["metrics"]:
        raise DataError(
            f"unknown metric {metric!r}: use one of {', '.join(sorted(new['metrics']))}"
        )
    if not old["users_with_lists"]:
        return verdict(
            live.version,
            False,
            f"the candidate store holds no lists of the live bundle {live.version}: "
            "nothing to compare with",
        )
    a, b = float(new["metrics"][metric]), float(old["metrics"][metric])
    passed = a >= b - tolerance
    relation = "not worse than" if passed else "worse than"
    reason = (
        f"{metric} {a:.4f} against the live bundle's {b:.4f} on {new['users']:,} holdout users"
        f"{note}: {relation} it beyond the tolerance {tolerance:g}"
    )
    return verdict(live.version, passed, reason, new_value=a, live_value=b, users=int(new["users"]))


def promote_gated(
    settings: Settings,
    version: str,
    *,
    force: bool = False,
    metric: str = DEFAULT_METRIC,
    tolerance: float = DEFAULT_TOLERANCE,
    by: str = "recsys models promote",
) -> Verdict:
    """Judge ``version``; promote it if it passed (or ``force``), record the decision either
    way, and raise :class:`GateRefused` when it stays out."""
    from offline.publish import promote

    registry = ModelRegistry(settings.registry_url)
    verdict = judge(settings, version, metric=metric, tolerance=tolerance)
    if verdict.passed or force:
        promote(settings, version)
        action = "promote" if verdict.passed else "promote-forced"
        registry.record({**verdict.as_decision(action), "by": by})
        return verdict
    registry.record({**verdict.as_decision("refuse"), "by": by})
    raise GateRefused(f"bundle {version} not promoted: {verdict.reason}")


def _unseen_by(settings: Settings, live: str, test: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``test`` without the (user, item) pairs the live bundle was trained on, so that
    neither bundle is scored on what it learned from; and a note for the reason."""
    from offline.evaluate_bundle import bundle_train

    try:
        seen = bundle_train(settings, live)
    except DataError:
        return test, " (the live bundle's training part is gone: not excluded)"
    pairs = pd.MultiIndex.from_frame(seen[["user_id", "item_id"]].astype(str))
    keys = pd.MultiIndex.from_frame(test[["user_id", "item_id"]].astype(str))
    kept = test[~keys.isin(pairs)]
    dropped = len(test) - len(kept)
    return (
        kept,
        f" ({dropped:,} holdout rows the live bundle trained on left out)" if dropped else "",
    )


def _k_of(metric: str) -> int:
    _, at, k = metric.partition("@")
    if not at or not k.isdigit():
        raise DataError(f"metric {metric!r}: give it with its cut-off, like ndcg@10")
    return int(k)
