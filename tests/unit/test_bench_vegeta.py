"""``recsys bench online --generator vegeta`` without vegeta: its targets file (requests drawn
by the visitors' Zipf laws), its results and report read back into a step record, and the
API's CPU per answered request read from /proc of a real process that burns a known amount.
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from recsys.bench import cpu, online_report, ramp, traffic, vegeta
from recsys.bench.vegeta_run import StepBuilder


def _people() -> traffic.Population:
    return traffic.Population.synthetic(50, 200, new_share=0.1, user_skew=1.1, item_skew=0.8)


def test_home_requests_follow_the_user_zipf_law() -> None:
    people = _people()
    requests = vegeta.draw(people, traffic.HOME_ONLY, 20_000, random.Random(1), k=10)
    assert {r.method for r in requests} == {"GET"}
    assert requests[0].path.startswith("/v1/users/") and requests[0].path.endswith(
        "/recommendations?k=10"
    )
    users = Counter(r.path.split("/")[3] for r in requests)
    new = sum(n for u, n in users.items() if u.startswith("new-"))
    assert new / len(requests) == pytest.approx(0.1, abs=0.015)
    # a known user's share is (1 - new_share) * rank^-1.1 / sum of rank^-1.1
    norm = sum(r**-1.1 for r in range(1, 51))
    for rank in (1, 2, 5):
        expected = 0.9 * rank**-1.1 / norm
        assert users[f"u{rank - 1}"] / len(requests) == pytest.approx(expected, rel=0.1)
    assert users["u0"] > users["u1"] > users["u9"]


def test_the_mix_keeps_its_proportions_and_events_carry_bodies() -> None:
    requests = vegeta.draw(_people(), traffic.MIX, 10_000, random.Random(2))
    names = Counter(vegeta.classify(r.method, f"http://h{r.path}")[0] for r in requests)
    assert names["home"] / 10_000 == pytest.approx(0.75, abs=0.02)
    assert names["similar"] / 10_000 == pytest.approx(0.10, abs=0.015)
    assert names["event"] / 10_000 == pytest.approx(0.15, abs=0.015)
    event = next(r for r in requests if r.method == "POST")
    assert event.path == "/v1/events"
    assert set(orjson.loads(event.body or b"")) == {"user_id", "item_id", "type", "context"}
    assert (
        vegeta.draw(_people(), {"constant": 1}, 3, random.Random(0))
        == [vegeta.Request("GET", "/constant")] * 3
    )


def test_the_targets_file_is_vegetas_http_format(tmp_path: Path) -> None:
    requests = [
        vegeta.Request("GET", "/v1/users/u1/recommendations?k=10"),
        vegeta.Request("POST", "/v1/events", b'{"user_id": "u1"}'),
    ]
    path = vegeta.write_targets(tmp_path / "s.targets", "http://127.0.0.1:9", requests)
    body = tmp_path / "s.bodies" / "1.json"
    assert path.read_text() == (
        "GET http://127.0.0.1:9/v1/users/u1/recommendations?k=10\n\n"
        f"POST http://127.0.0.1:9/v1/events\nContent-Type: application/json\n@{body}\n\n"
    )
    assert body.read_bytes() == b'{"user_id": "u1"}'
    assert vegeta.rate_argument(50) == "50/1s"
    assert vegeta.rate_argument(12.5) == "12500/1000s"


def test_a_missing_binary_names_the_install_command(tmp_path: Path) -> None:
    command = vegeta.install_command(tmp_path)
    assert command == f"GOBIN={tmp_path / 'bin'} go install github.com/tsenart/vegeta/v12@v12.13.0"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "vegeta").write_text("")
    assert vegeta.binary(tmp_path) == tmp_path / "bin" / "vegeta"


def _line(url: str, sent: float, latency_ms: float, code: int, body: Any, **extra: Any) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent))
    nanos = f"{round((sent % 1) * 1e9):09d}"
    raw = {
        "attack": "", "seq": 0, "code": code, "timestamp": f"{stamp}.{nanos}Z",
        "latency": int(latency_ms * 1e6), "bytes_out": 0, "bytes_in": 0,
        "error": "" if 200 <= code < 300 else f"{code} Error", "method": "GET", "url": url,
        "body": base64.b64encode(orjson.dumps(body) if body is not None else b"").decode(),
        "headers": {}, **extra,
    }  # fmt: skip
    return orjson.dumps(raw)


def _answer(items: list[str]) -> dict[str, Any]:
    return {
        "items": [{"item_id": i, "score": 1.0, "sources": ["als"]} for i in items],
        "degraded": False,
        "failures": [],
        "timings_ms": {},
    }


def test_results_are_parsed_named_and_checked() -> None:
    people = traffic.Population(["u1"], ["i1", "i2", "i3"], seen={"u1": ["i3"]})
    good = vegeta.parse_result(
        _line("http://h/v1/users/u1/recommendations?k=2", 1000.25, 12.5, 200, _answer(["i1", "i2"]))
    )
    assert (good.name, good.subject, good.k, good.code) == ("home", "u1", 2, 200)
    assert good.sent == pytest.approx(1000.25, abs=1e-6)
    assert good.latency_ms == pytest.approx(12.5)
    assert vegeta.check(good, people).problem is None
    seen = vegeta.parse_result(
        _line("http://h/v1/users/u1/recommendations?k=2", 1000, 5, 200, _answer(["i1", "i3"]))
    )
    assert vegeta.check(seen, people).problem == "seen item returned"
    lost = vegeta.parse_result(
        _line("http://h/v1/items/i1/similar?k=2", 1000, 10_000, 0, None, error="timeout")
    )
    assert lost.name == "similar"
    assert vegeta.failure(lost, vegeta.check(lost, people)) == "no answer: timeout"
    assert vegeta.classify("POST", "http://h/v1/events") == ("event", "", 10)
    assert vegeta.classify("GET", "http://h/constant")[0] == "constant"


def test_the_window_of_results_becomes_a_step_record() -> None:
    step = ramp.Step(3, rate=10.0, users=0, start_s=20.0, settle_s=1.0, hold_s=2.0)
    opened = 5000.0  # the measured window opened then (POSIX seconds)
    people = traffic.Population.synthetic(5, 20)
    builder = StepBuilder(step, opened, people)
    url = "http://h/v1/users/u1/recommendations?k=2"
    outcomes = [
        builder.add(vegeta.parse_result(_line(url, opened - 0.5, 90, 200, _answer(["a", "b"])))),
        *(
            builder.add(
                vegeta.parse_result(_line(url, opened + j * 0.1, j + 1.0, 200, _answer(["a", "b"])))
            )
            for j in range(20)
        ),
        builder.add(vegeta.parse_result(_line(url, opened + 1.99, 50, 503, {"detail": "x"}))),
        builder.add(vegeta.parse_result(_line(url, opened + 2.0, 70, 200, _answer(["a"])))),
    ]
    assert outcomes[0] == (False, False)  # sent while settling
    assert outcomes[-2] == (True, True)
    assert outcomes[-1] == (False, True)  # after the window (and one item short)
    record = builder.record("home", budget_ms=80.0)
    home = record["endpoints"]["home"]
    assert home["count"] == 21
    assert home["failures"] == 1
    assert home["failure_reasons"] == {"status 503": 1}
    assert home["p50_ms"] == pytest.approx(11.0)
    assert set(home) >= {"p50_ms", "p90_ms", "p99_ms", "achieved_rate"}
    assert home["achieved_rate"] == pytest.approx(10.5)
    assert record["index"] == 3 and record["users"] == 0
    assert record["passed"] is False  # a failed request fails the step


def test_vegetas_json_report_is_read() -> None:
    report = orjson.dumps(
        {
            "latencies": {"total": 9, "mean": 3_000_000, "50th": 2_000_000, "90th": 7_000_000,
                          "95th": 8_000_000, "99th": 9_500_000, "max": 12_000_000, "min": 1},
            "requests": 150, "rate": 50.3333, "throughput": 49.9, "success": 0.98,
            "status_codes": {"200": 147, "0": 3}, "errors": ["context deadline exceeded"],
        }
    )  # fmt: skip
    assert vegeta.parse_report(report) == {
        "requests": 150,
        "success_ratio": 0.98,
        "rate": 50.33,
        "throughput": 49.9,
        "p50_ms": 2.0,
        "p90_ms": 7.0,
        "p99_ms": 9.5,
        "max_ms": 12.0,
        "status_codes": {"200": 147, "0": 3},
        "errors": ["context deadline exceeded"],
    }


# A parent process whose child, once told to, burns a known amount of CPU and stays alive
# (the CPU of a child that exited is no longer its own: the benchmark's servers live on).
_CHILD = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
t0 = time.process_time()
while time.process_time() - t0 < 0.4:
    pass
print(time.process_time() - t0, flush=True)
sys.stdin.read()
"""
_PARENT = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', sys.argv[1]]))"


def test_cpu_per_request_counts_a_childs_cpu_from_proc() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        assert parent.stdout.readline().strip() == "ready"
        tree = cpu.descendants(parent.pid)
        assert len(tree) == 2 and tree[0] == parent.pid
        before = cpu.read(parent.pid, at_s=10.0)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        burned = float(parent.stdout.readline())
        after = cpu.read(parent.pid, at_s=12.0)
    finally:
        parent.stdin.close()
        parent.wait(30)
    assert before.cpu_s is not None and after.cpu_s is not None
    # /proc counts in clock ticks (10 ms): two readings of two processes
    assert after.cpu_s - before.cpu_s == pytest.approx(burned, abs=0.05)
    figures = cpu.per_request(before, after, answered=200, hold_s=2.0)
    assert figures["answered"] == 200
    assert figures["cpu_ms_per_request"] == pytest.approx(1000 * burned / 200, abs=0.25)
    # readings 4 s apart around a 2 s window: the CPU is scaled to the window
    late = cpu.per_request(before, cpu.Reading(14.0, after.cpu_s), answered=200, hold_s=2.0)
    assert late["cpu_ms_per_request"] == pytest.approx(figures["cpu_ms_per_request"] / 2, rel=0.01)
    assert cpu.read(parent.pid, at_s=0.0).cpu_s is None  # the server is gone


def test_cpu_per_request_is_attached_to_steps_and_summed_up_per_target() -> None:
    step: dict[str, Any] = {"hold_s": 10.0, "all": {"count": 500, "failures": 0}}
    cpu.attach(step, cpu.Reading(0.0, 1.0), cpu.Reading(10.0, 3.0))
    assert step["cpu"] == {"cpu_s": 2.0, "answered": 500, "cpu_ms_per_request": 4.0}
    cpu.attach(step, None, None)
    assert step["cpu"]["cpu_ms_per_request"] is None

    def target(values: list[tuple[float, bool]], measured: bool = True) -> dict[str, Any]:
        steps = [
            {"warmup": False, "passed": ok, "cpu": {"cpu_ms_per_request": v}} for v, ok in values
        ]
        return {"steps": steps, "cpu_measured": measured}

    median = online_report.cpu_per_request(target([(3.0, True), (5.0, True), (9.0, False)]))
    assert median == {"cpu_ms_per_request": 4.0, "cpu_basis": "steps under budget"}
    over = online_report.cpu_per_request(target([(7.0, False), (9.0, False)]))
    assert over == {"cpu_ms_per_request": 8.0, "cpu_basis": "all steps"}
    unknown = online_report.cpu_per_request(target([(1.0, True)], measured=False))
    assert unknown["cpu_ms_per_request"] is None


def test_capacity_ratio_is_full_over_bare_from_the_same_run() -> None:
    bare, full = {"max_rate": 800.0}, {"max_rate": 200.0}
    assert online_report.capacity_ratio({"bare": bare, "full": full}) == 0.25
    assert online_report.capacity_ratio({"bare": bare, "mix": full}) is None
    assert online_report.capacity_ratio({"bare": bare, "full": {"max_rate": None}}) is None
