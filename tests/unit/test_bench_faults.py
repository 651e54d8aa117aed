"""How ``recsys bench faults`` counts: lost and doubled events, per user and type."""

from __future__ import annotations

from collections import Counter

from recsys.bench.faults import _event, _java_hash, _tally


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
