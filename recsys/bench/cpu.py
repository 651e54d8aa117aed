"""The API's CPU time per answered request, read from ``/proc`` (Linux).

A server's CPU time is the user and system time (``utime`` + ``stime``, which count every
thread) of its process and of all its descendants: ``uvicorn --workers N`` serves from child
processes. It is read at the start and at the end of each measured window; the difference,
divided by the requests answered in that window, is the CPU one request cost the server
(its background work, e.g. sending impressions, included: that is part of serving).
Descendants that exited during the window take their time with them; uvicorn's workers
live as long as the server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (each thread's children are listed apart)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue  # gone since its parent listed it
        for thread in threads:
            try:
                with open(f"/proc/{current}/task/{thread}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                continue
    return out


def own_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; OSError once it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        # the command name (field 2) may hold spaces and parentheses: split after its end
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and its descendants; None when ``pid`` itself is gone."""
    try:
        total = own_seconds(pid)
    except OSError:
        return None
    for child in descendants(pid)[1:]:
        with suppress(OSError):  # exited between listing and reading
            total += own_seconds(child)
    return total


@dataclass(frozen=True)
class Reading:
    """CPU seconds of the server tree at one instant of the load generator's clock."""

    at_s: float
    cpu_s: float | None


def read(pid: int | None, at_s: float) -> Reading:
    return Reading(at_s, None if pid is None else tree_seconds(pid))


def per_request(before: Reading, after: Reading, answered: int, hold_s: float) -> dict[str, Any]:
    """The window's figures: CPU seconds, answered requests and CPU ms per answered request.

    The readings may land a little off the window's edges (the generator's timer lags under
    load), so the CPU is scaled to the window's nominal length ``hold_s`` before dividing by
    the requests answered within it. None where the server was not readable or nothing was
    answered."""
    if before.cpu_s is None or after.cpu_s is None or after.at_s <= before.at_s:
        return {"cpu_s": None, "answered": answered, "cpu_ms_per_request": None}
    cpu_s = (after.cpu_s - before.cpu_s) * hold_s / (after.at_s - before.at_s)
    per = 1000 * cpu_s / answered if answered > 0 else None
    return {
        "cpu_s": round(cpu_s, 4),
        "answered": answered,
        "cpu_ms_per_request": None if per is None else round(per, 4),
    }


def attach(step: MutableMapping[str, Any], before: Reading | None, after: Reading | None) -> None:
    """Add the window's CPU figures to a step record. Answered: requests sent in the window
    with a good answer (a step under budget has no failure, so there it is all of them)."""
    answered = answered_requests(step)
    if before is None or after is None:
        step["cpu"] = per_request(Reading(0, None), Reading(1, None), answered, 1.0)
    else:
        step["cpu"] = per_request(before, after, answered, float(step["hold_s"]))


def answered_requests(step: Mapping[str, Any]) -> int:
    return int(step["all"]["count"]) - int(step["all"]["failures"])
