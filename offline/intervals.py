"""Paired bootstrap intervals of an evaluation report's lists.

Every list of the report (``final``, and each of ``baselines``) is scored on the same
evaluated users, so its accuracy metrics get intervals over those users, and the final
lists a paired difference against the best single generator. The keys added to the report
(at k = 10)::

    "interval_method": {"kind": "percentile bootstrap over users", "level": 0.95,
                        "resamples": 1000, "seed": 42},
    "intervals": {"final": {"map@10": [low, high], "ndcg@10": [low, high],
                            "precision@10": [low, high], "recall@10": [low, high]},
                  "<each baseline's name>": {...the same four}},
    "versus_best_single": {"generator": "ease", "by": "ndcg@10",
                           "map@10": {"difference": 0.0031, "interval": [low, high]},
                           ...ndcg@10, precision@10 and recall@10 alike},

``difference`` is the final lists' mean minus the generator's, exactly the difference of
the two numbers in ``metrics`` and ``baselines``. One set of resampled users serves every
list and every difference (:func:`offline.metrics.bootstrap_intervals`), so a difference's
interval is paired. The best single generator is the fitted generator alone (not the blend,
not popularity) with the highest nDCG@k, the first on a tie; with no generator fitted,
``versus_best_single`` is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from offline.metrics import ACCURACY, bootstrap_intervals

PerUser = dict[str, npt.NDArray[np.float64]]  # accuracy metric -> one value per user

INTERVAL_METHOD: dict[str, Any] = {
    "kind": "percentile bootstrap over users",
    "level": 0.95,
    "resamples": 1000,
    "seed": 42,
}


def comparisons(per_user: Mapping[str, PerUser], singles: list[str], k: int) -> dict[str, Any]:
    """The three keys above, from each list's per-user accuracy (``final`` and the
    baselines; ``singles`` names the baselines that are one generator alone)."""
    keys = {m: f"{m}@{k}" for m in ACCURACY}
    columns = {(name, keys[m]): values[m] for name, values in per_user.items() for m in ACCURACY}
    best = max(singles, key=lambda name: float(np.mean(per_user[name]["ndcg"])), default=None)
    if best is not None:
        final, single = per_user["final"], per_user[best]
        columns |= {("versus", keys[m]): final[m] - single[m] for m in ACCURACY}
    bounds = bootstrap_intervals(
        columns,
        n_resamples=INTERVAL_METHOD["resamples"],
        seed=INTERVAL_METHOD["seed"],
        level=INTERVAL_METHOD["level"],
    )
    out: dict[str, Any] = {
        "interval_method": dict(INTERVAL_METHOD),
        "intervals": {
            name: {key: list(bounds[(name, key)]) for key in keys.values()} for name in per_user
        },
    }
    if best is not None:
        out["versus_best_single"] = {"generator": best, "by": keys["ndcg"]} | {
            keys[m]: {
                "difference": float(np.mean(final[m]) - np.mean(single[m])),
                "interval": list(bounds[("versus", keys[m])]),
            }
            for m in ACCURACY
        }
    return out


def interval_cell(value: float, bounds: list[float] | None) -> str:
    """A table cell: the mean, and its interval in brackets when there is one."""
    return f"{value:.4f}" + (f" ({bounds[0]:.3f}-{bounds[1]:.3f})" if bounds else "")


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """The paragraphs under the final-lists table: how the intervals in brackets were
    made, and the final lists minus the best single generator. None for older reports."""
    method = report.get("interval_method")
    if not method:
        return []
    level = f"{method['level'] * 100:g} %"
    lines = [
        "",
        f"In brackets: {level} intervals, a {method['kind']} ({int(report['metrics']['users']):,} "
        f"evaluated users, {method['resamples']:,} resamples, seed {method['seed']}; the same "
        "resampled users for every list).",
    ]
    versus = report.get("versus_best_single")
    if versus:
        by = versus["by"]
        keys = [by, *(key for key, d in versus.items() if isinstance(d, Mapping) and key != by)]
        parts = [
            f"{key} {versus[key]['difference']:+.4f} ({level} CI "
            f"{versus[key]['interval'][0]:+.4f} to {versus[key]['interval'][1]:+.4f})"
            for key in keys
        ]
        lines += [
            "",
            f"Final lists minus the best single generator ({versus['generator']}, by {by}), "
            "paired over the same users: " + "; ".join(parts) + ".",
        ]
    return lines
