"""How ``recsys bench faults`` counts: lost and doubled events, per user and type."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nearline.lake import LakeWriter
from recsys.bench.faults import _event, _in_lake, _java_hash, _tally


def test_tally_counts_lost_and_doubled_events() -> None:
    events = [_event(i) for i in range(6)]
    answers = [(e, 202, 0.01 * (i + 1), "before") for i, e in enumerate(events[:4])]
    answers += [(events[4], 503, 5.0, "down"), (events[5], 202, 0.02, "after")]
    accepted = [e for e, status, _, _ in answers if status == 202]
    counted = Counter((e.user_id, e.type.value) for e in accepted)
    exact = _tally(answers, accepted, counted, recovered=1.5)
    assert (exact["sent"], exact["accepted"], exact["refused"]) == (6, 5, 1)
    assert (exact["applied"], exact["lost"], exact["duplicated"]) == (5, 0, 0)
    assert exact["answers_while_down"] == {"503": 1} and exact["accepted_while_down"] == 0
    assert exact["longest_answer_ms"] == 5000.0 and exact["longest_refusal_ms"] == 5000.0

    first = (accepted[0].user_id, accepted[0].type.value)
    lossy = counted.copy()
    lossy[first] -= 1  # one accepted event never reached the state
    lossy[(accepted[1].user_id, accepted[1].type.value)] += 1  # another counted twice
    figures = _tally(answers, accepted, lossy, recovered=None)
    assert (figures["applied"], figures["lost"], figures["duplicated"]) == (4, 1, 1)
    assert figures["recover_s"] is None


def test_the_coordinator_partition_is_kafkas() -> None:
    """Java's String.hashCode, as Kafka maps a group to its ``__consumer_offsets``
    partition (values Java gives; the second is Integer.MIN_VALUE, which Kafka's
    ``Utils.abs`` maps to 0)."""
    assert _java_hash("hello") == 99162322
    assert _java_hash("fault-7532e6") == _java_hash_by_hand("fault-7532e6")
    assert _java_hash("polygenelubricants") == -(2**31)
    assert _java_hash("") == 0


def _java_hash_by_hand(text: str) -> int:
    h = 0
    for ch in text:  # ASCII: one UTF-16 unit a character
        h = (h * 31 + ord(ch)) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_a_refused_event_the_log_holds_is_applied_once_not_counted_doubled() -> None:
    """A 503 after the producer timed out may have landed (a leader moving): such an event
    is one to apply once (``refused_but_logged``), neither a duplicate nor lost; a refused
    event the log does not hold must not be applied."""
    from recsys.bench.fault_load import Answer, Load, figures

    events = [_event(i) for i in range(4)]
    load = Load("http://unused", rate=1.0)
    load.posted = [
        (events[0], Answer("before", 202, 0.01)),
        (events[1], Answer("down", 202, 3.5)),
        (events[2], Answer("down", 503, 10.0)),  # timed out, landed all the same
        (events[3], Answer("after", 503, 0.01)),  # refused at once, never written
    ]
    logged = {e.event_id for e in events[:3]}
    counted = Counter((e.user_id, e.type.value) for e in events[:3])
    fair = figures(load, counted, budget_ms=80.0, recovered=1.0, logged_ids=logged)
    assert (fair["accepted"], fair["refused"], fair["refused_but_logged"]) == (2, 2, 1)
    assert (fair["applied"], fair["lost"], fair["duplicated"]) == (3, 0, 0)
    assert fair["accepted_by_phase"] == {"before": 1, "down": 1, "after": 0}

    # Without the log's ids the landed refusal reads as a duplicate (the CI failure).
    blind = figures(load, counted, budget_ms=80.0, recovered=1.0)
    assert blind["duplicated"] == 1 and blind["refused_but_logged"] == 0

    # The refusal that never landed, applied anyway, is a duplicate.
    wrong = counted + Counter({(events[3].user_id, events[3].type.value): 1})
    assert figures(load, wrong, 80.0, 1.0, logged)["duplicated"] == 1


def test_in_lake_finds_the_event_ids_the_workers_files_hold(tmp_path: Path) -> None:
    lake = LakeWriter(tmp_path / "lake", "events")
    for offset, event in enumerate([_event(i) for i in range(3)]):
        lake.add(0, offset, event)
    assert lake.flush()
    wanted = {_event(1).event_id, _event(7).event_id}
    assert _in_lake(tmp_path / "lake", wanted) == {_event(1).event_id}
    assert _in_lake(tmp_path / "nowhere", wanted) == set()
