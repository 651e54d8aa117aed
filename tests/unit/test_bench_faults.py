"""How ``recsys bench faults`` counts: lost and doubled events, per user and type."""

from __future__ import annotations

from collections import Counter

from recsys.bench.faults import _event, _tally


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
