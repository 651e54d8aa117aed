"""A fix to kafka-python 3.0.12's group membership, applied once when Kafka is used.

**A join that finished outside ``poll`` was thrown away.** A consumer's JoinGroup and
SyncGroup run as one task on the client's IO thread; ``KafkaConsumer.poll`` waits for it
at most its own timeout and, if the task is still running, leaves it to a later ``poll``.
When that later ``poll`` finds the task *finished*, 3.0.12 does not take its result: it
sends a new JoinGroup. From the group's leader a JoinGroup in a stable group starts a new
rebalance, the other members rejoin in turn, and the same can happen to their joins. A
group whose members spend their time between polls (a worker applying a batch, a test
polling two members in turn on a loaded machine) then rebalances again and again: with
polls that return at once it never settles (tests/contract/test_event_log.py), and the
project's CI run of 2026-12-07 saw a two-member group still rebalancing after 40 s.

The fix takes the finished task's assignment exactly as ``join_group_async`` does when it
is waiting for the task: the member is stable, its heartbeats resume, and the assignment
and rebalance listener are applied. Anything else (no task, a task still running or
failed, a generation the heartbeat has since reset) goes to the library's own code.

It is applied only to the kafka-python versions it was written against, and only if the
coordinator still has the members it relies on; otherwise the library is left as it is
and a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kafka
from kafka.coordinator.base import BaseCoordinator
from kafka.structs import MemberState

log = logging.getLogger(__name__)

PATCHED_VERSIONS = frozenset({"3.0.12"})
_NEEDS = ("join_group_async", "_on_join_complete_async", "_enable_heartbeat")


def _finishing_a_finished_join(
    join_group_async: Callable[..., Awaitable[bool]],
) -> Callable[..., Awaitable[bool]]:
    async def patched(self: Any, timeout_ms: float | None = None) -> bool:
        task = self._join_task
        generation = self._generation
        if (
            task is not None
            and task.succeeded()
            and self.rejoining
            and not generation.is_lost()  # a heartbeat reset it since: join again
        ):
            self._join_task = None
            with self._lock:
                self.rejoining = False
                self.rejoin_needed = False
                self.state = MemberState.STABLE
                self._enable_heartbeat()
            await self._on_join_complete_async(
                generation.generation_id, generation.member_id, generation.protocol, task.value
            )
            return True
        return await join_group_async(self, timeout_ms)

    patched.__doc__ = join_group_async.__doc__
    patched.__wrapped__ = join_group_async  # type: ignore[attr-defined]
    patched.recsys_fix = True  # type: ignore[attr-defined]
    return patched


def apply() -> bool:
    """Patch kafka-python's group coordinator once; ``True`` when the fix is in place."""
    if getattr(BaseCoordinator.join_group_async, "recsys_fix", False):
        return True
    version = getattr(kafka, "__version__", "?")
    if version not in PATCHED_VERSIONS or not all(hasattr(BaseCoordinator, n) for n in _NEEDS):
        log.warning(
            "kafka-python %s: the fix for joins finished outside poll is written for %s and "
            "was not applied; check shared/storage/kafka_compat.py against this version",
            version,
            ", ".join(sorted(PATCHED_VERSIONS)),
        )
        return False
    BaseCoordinator.join_group_async = _finishing_a_finished_join(BaseCoordinator.join_group_async)
    return True
