"""Experiment arms: every user lands in one arm, the same one in every process.

The arm comes from a hash of the salt and the user id (SHA-256, not Python's ``hash``,
which is salted per process), mapped onto the cumulative arm weights in sorted arm order.
Changing the salt reshuffles users for a new experiment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import ARM_NAMES


@dataclass(frozen=True)
class Arm:
    """How an arm answers: re-rank every candidate with the ranker, or keep stored order."""

    name: str
    rerank: bool


_RERANK = {
    "control": True,
    "blend": False,
    # Re-ranks like control, meant to be bound to another bundle (a challenger model)
    # through the experiment_bundles setting.
    "challenger": True,
}
# One per name in shared.settings.ARM_NAMES (the names the settings accept).
ARMS: dict[str, Arm] = {name: Arm(name, rerank=_RERANK[name]) for name in ARM_NAMES}


def bucket(user_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the user and salt."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(user_id: str, salt: str, weights: Mapping[str, float]) -> Arm:
    """The user's arm under ``weights`` (arm name -> relative weight)."""
    names = sorted(n for n, w in weights.items() if w > 0)
    total = sum(weights[n] for n in names)
    point = bucket(user_id, salt) * total
    upto = 0.0
    for name in names:
        upto += weights[name]
        if point < upto:
            return ARMS[name]
    return ARMS[names[-1]]
