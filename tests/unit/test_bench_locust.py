"""The pure parts of the locust benchmark: ramp schedule, per-step figures and verdicts,
visitor traffic and answer checks, /metrics histograms, locust's CSV, report and plots.

Locust itself is never imported here (it monkey-patches the process with gevent); one test
loads the locustfile in a locust subprocess.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from recsys.bench import everything, loadgen, online_report, plots, prom, ramp, traffic


def test_doubling_rates_include_the_report_rates() -> None:
    assert ramp.doubling_rates(25, 400, (50, 200)) == [25, 50, 100, 200, 400]
    assert ramp.doubling_rates(30, 100, (50, 200)) == [30, 50, 60]
    with pytest.raises(ValueError, match="start"):
        ramp.doubling_rates(0, 10)


def test_schedule_places_steps_back_to_back_after_a_warm_up() -> None:
    steps = ramp.schedule(
        [25, 50], think_s=2.0, settle_s=1.0, hold_s=4.0, warmup_rate=10, warmup_s=3
    )
    assert [(s.rate, s.users, s.start_s, s.warmup) for s in steps] == [
        (10, 20, 0.0, True),
        (25, 50, 3.0, False),
        (50, 100, 8.0, False),
    ]
    assert steps[1].window == (4.0, 8.0)
    assert ramp.step_at(steps, 7.9) == steps[1]
    assert ramp.step_at(steps, 13.0) is None
    assert ramp.users_for(0.1, 1.0) == 1


def _steps() -> list[ramp.Step]:
    return ramp.schedule([50, 100], think_s=1.0, settle_s=1.0, hold_s=10.0)


def test_recorder_measures_the_window_only_and_by_send_time() -> None:
    steps = _steps()
    recorder = ramp.StepRecorder(steps)
    recorder.request("home", 0.5, 500.0, None)  # visitors starting: not measured
    for i in range(100):
        recorder.request("home", 1.0 + i * 0.1, float(i + 1), None)
    recorder.request("home", 10.99, 3000.0, "status 503")  # sent in the window, answered late
    recorder.request("event", 5.0, 2.0, None)
    recorder.degraded("home", 2.0)

    result = recorder.result(steps[0], "home", budget_ms=80.0)

    home = result["endpoints"]["home"]
    assert home["count"] == 101
    assert home["p50_ms"] == pytest.approx(51.0)
    assert home["max_ms"] == 3000.0
    assert home["failures"] == 1
    assert home["failure_reasons"] == {"status 503": 1}
    assert home["degraded"] == 1
    assert home["achieved_rate"] == pytest.approx(10.1)
    assert result["all"]["count"] == 102
    assert not result["passed"]  # a failed request fails the step whatever the latency


def test_a_step_passes_when_the_judged_p99_is_under_the_budget() -> None:
    steps = _steps()
    recorder = ramp.StepRecorder(steps)
    for i in range(100):
        recorder.request("home", 2.0, 10.0 + i * 0.5, None)  # p99 about 59 ms
        recorder.request("event", 2.0, 200.0, None)  # not judged
    assert recorder.result(steps[0], "home", budget_ms=80.0)["passed"]
    assert not recorder.result(steps[0], "home", budget_ms=50.0)["passed"]
    assert not recorder.result(steps[1], "home", budget_ms=80.0)["passed"]  # nothing measured


def _result(rate: float, ok: bool, warmup: bool = False, index: int = 0) -> dict[str, Any]:
    return {"rate": rate, "passed": ok, "warmup": warmup, "index": index}


def test_highest_passing_rate_is_the_top_of_the_unbroken_run() -> None:
    results = [
        _result(10, False, warmup=True),
        _result(25, True),
        _result(50, True),
        _result(100, False),
        _result(200, True),  # a pass above a failure is noise
    ]
    best = ramp.highest_passing(results)
    assert best is not None
    assert best["rate"] == 50
    assert ramp.highest_passing([_result(25, False)]) is None


def test_the_ramp_stops_after_a_failure_once_the_report_rates_were_measured() -> None:
    assert not ramp.should_stop([_result(25, True), _result(50, False)], must_reach=200)
    assert ramp.should_stop([_result(25, True), _result(200, False)], must_reach=200)
    assert not ramp.should_stop([_result(200, True)], must_reach=200)
    assert not ramp.should_stop([_result(10, False, warmup=True)], must_reach=5)


def test_summarise_an_empty_list() -> None:
    assert ramp.summarise([]) == {
        "count": 0,
        "mean_ms": None,
        "max_ms": None,
        "p50_ms": None,
        "p90_ms": None,
        "p95_ms": None,
        "p99_ms": None,
    }


def test_visitors_are_skewed_and_some_are_new() -> None:
    people = traffic.Population.synthetic(1000, 500, new_share=0.1)
    rng = random.Random(1)
    drawn = Counter(people.user(rng) for _ in range(20_000))
    new = sum(n for user, n in drawn.items() if user.startswith("new-"))
    assert 0.08 < new / 20_000 < 0.12
    known = {u: n for u, n in drawn.items() if not u.startswith("new-")}
    top = sorted(known.values(), reverse=True)
    assert sum(top[:10]) > 0.3 * sum(top)  # a few very active users
    assert len(known) > 300  # and many occasional ones
    items = Counter(people.item(rng) for _ in range(10_000))
    assert items["i0"] > items["i400"]
    views = [people.views(rng) for _ in range(5000)]
    assert min(views) == 1
    assert 4.5 < sum(views) / len(views) < 5.5


def test_population_round_trips_through_json() -> None:
    people = traffic.Population(["u1"], ["i1", "i2"], {"u1": ["i2"]}, new_share=0.0)
    again = traffic.Population.from_json(people.to_json())
    assert again.seen == {"u1": ["i2"]}
    assert again.user(random.Random(0)) == "u1"


def test_the_mix_is_drawn_by_weight() -> None:
    rng = random.Random(3)
    drawn = Counter(traffic.action(traffic.MIX, rng) for _ in range(10_000))
    assert 0.72 < drawn["home"] / 10_000 < 0.78
    assert 0.08 < drawn["similar"] / 10_000 < 0.12
    body = orjson.loads(traffic.event_body("u1", "i2", rng))
    assert body["user_id"] == "u1"
    assert body["type"] in traffic.EVENT_TYPES


def _answer(
    items: list[str], degraded: bool = False, failures: dict[str, str] | None = None
) -> bytes:
    return orjson.dumps(
        {
            "user_id": "u1",
            "items": [
                {"item_id": i, "score": 1.0, "sources": ["fresh"], "reason": ""} for i in items
            ],
            "bundle": "b",
            "arm": "control",
            "degraded": degraded,
            "failures": failures or {},
            "timings_ms": {"total": 1.0},
        }
    )


def test_recommendation_answers_are_checked() -> None:
    check = traffic.check_recommendations
    good = check(200, _answer(["i1", "i2"]), 2, seen=["i9"])
    assert good.problem is None
    assert good.items == ("i1", "i2")
    assert check(503, b"{}", 2).problem == "status 503"
    assert check(200, _answer(["i1", "i1"]), 2).problem == "duplicate items"
    assert check(200, _answer(["i1", "i9"]), 2, seen=["i9"]).problem == "seen item returned"
    assert check(200, _answer(["i1"]), 2).problem == "shape: 1 items, asked for 2"
    assert check(200, b'{"items": 3}', 2).problem.startswith("shape:")  # type: ignore[union-attr]
    assert check(200, b"not json", 2).problem.startswith("shape:")  # type: ignore[union-attr]
    # without the user's state the API cannot know what was seen: degraded, not wrong
    blind = check(200, _answer(["i9"], True, {"user_state": "timeout"}), 2, seen=["i9"])
    assert blind.problem is None
    assert blind.degraded


def test_similar_event_and_constant_answers_are_checked() -> None:
    similar = orjson.dumps({"item_id": "i1", "items": [{"item_id": "i2"}, {"item_id": "i3"}]})
    assert traffic.check_similar(200, similar, "i1", 2).problem is None
    assert traffic.check_similar(200, similar, "i2", 2).problem == "the item is similar to itself"
    assert traffic.check_similar(404, b"", "i1", 2).problem == "status 404"
    assert traffic.check_event(202, b'{"accepted": 1, "event_ids": ["e"]}').problem is None
    assert traffic.check_event(503, b"").problem == "status 503"
    assert traffic.check_constant(200, b'{"items": []}').problem is None


def _metrics(observations: dict[str, list[float]]) -> str:
    registry = CollectorRegistry()
    stage = Histogram(
        prom.STAGE_METRIC.removesuffix("_seconds"),
        "stage",
        ["stage"],
        unit="seconds",
        buckets=(0.001, 0.01, 0.1),
        registry=registry,
    )
    handler = Histogram(
        prom.REQUEST_METRIC.removesuffix("_seconds"),
        "handler",
        ["arm"],
        unit="seconds",
        buckets=(0.001, 0.01, 0.1),
        registry=registry,
    )
    for name, values in observations.items():
        for v in values:
            (handler.labels("control") if name == "handler" else stage.labels(name)).observe(v)
    return generate_latest(registry).decode()


def test_stage_latency_is_the_difference_between_two_scrapes() -> None:
    before = _metrics({"rank": [0.5] * 10})  # slow requests before the step
    after = _metrics({"rank": [0.5] * 10 + [0.005] * 100, "handler": [0.02] * 4})

    stages = prom.stage_latency(before, after)

    assert stages["rank"]["count"] == 100
    assert stages["rank"]["mean_ms"] == pytest.approx(5.0)
    assert 1.0 < stages["rank"]["p50_ms"] <= 10.0  # inside the (1, 10] ms bucket
    assert stages["handler"]["count"] == 4
    assert stages["handler"]["p99_ms"] == pytest.approx(99.1)
    assert prom.stage_latency(after, after) == {}


def test_quantile_in_the_open_bucket_is_the_largest_bound() -> None:
    assert prom.quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1
    assert prom.quantile(0.5, {}) is None
    assert prom.quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_locust_totals_and_steps_are_read_back(tmp_path: Path) -> None:
    stats = tmp_path / "x_stats.csv"
    stats.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,50%,99%\n"
        "GET,home,90,1,12,12,80\n"
        "POST,event,10,0,3,3,N/A\n"
        ",Aggregated,100,1,11,11,79\n"
    )
    totals = loadgen.read_totals(stats)
    assert totals["requests"] == 100
    assert totals["failures"] == 1
    assert totals["by_name"]["home"] == {
        "requests": 90,
        "failures": 1,
        "p50_ms": 12.0,
        "p99_ms": 80.0,
    }
    assert totals["by_name"]["event"]["p99_ms"] is None
    assert loadgen.read_totals(tmp_path / "missing.csv")["requests"] == 0

    lines = tmp_path / "steps.jsonl"
    lines.write_bytes(b'{"index": 0}\n{"index": 1}\n{"index": 2, "tr')  # a line being written
    assert [s["index"] for s in loadgen.read_steps(lines)] == [0, 1]


def test_the_plan_carries_the_ramp(tmp_path: Path) -> None:
    shape = loadgen.Ramp(rates=[25, 50], think_s=2.0)
    goal = loadgen.Target("mix", "http://h", mix=traffic.MIX, metrics_url="http://h/metrics")
    plan = loadgen.plan(goal, shape, tmp_path / "p.json", tmp_path / "out.jsonl")
    assert [s["users"] for s in plan["steps"]] == [40, 50, 100]  # warm-up, then 25 and 50 req/s
    assert plan["mix"] == traffic.MIX
    assert plan["verdict"] == "home"


def _target(name: str, verdict: str, rates: list[tuple[float, float, bool]]) -> dict[str, Any]:
    steps = []
    for index, (rate, p99, ok) in enumerate(rates):
        figures = {
            "count": 100, "mean_ms": p99 / 3, "p50_ms": p99 / 4, "p95_ms": p99 / 2,
            "p99_ms": p99, "max_ms": p99, "achieved_rate": rate * 0.95, "failures": 0,
            "failure_reasons": {}, "degraded": 0,
        }  # fmt: skip
        stages = {"rank": {"count": 10, "mean_ms": 1.0, "p50_ms": 1.0, "p99_ms": 2.0}}
        steps.append(
            {
                "index": index, "rate": rate, "users": int(rate), "warmup": False,
                "endpoints": {verdict: figures}, "all": figures, "passed": ok,
                "stages": stages if verdict == "home" else {},
                "cpu": {"cpu_s": rate * 8 * p99 / 1000, "answered": rate * 8,
                        "cpu_ms_per_request": p99},
            }
        )  # fmt: skip
    best = ramp.highest_passing(steps)
    return {
        "name": name,
        "label": name,
        "mix": {verdict: 1.0},
        "verdict": verdict,
        "steps": steps,
        "max_rate": best["rate"] if best else None,
        "max_rate_step": best["index"] if best else None,
        "totals": {"requests": 300, "failures": 0, "by_name": {}},
        "loadavg_1m": [1.0, 1.5],
        "cpu_measured": True,
        "impressions": "on" if verdict == "home" else None,
    }


def test_report_tables_csv_and_plots(tmp_path: Path) -> None:
    targets = {
        "bare": _target("bare", "constant", [(50, 5, True), (200, 9, True), (400, 30, True)]),
        "full": _target("full", "home", [(50, 20, True), (200, 900, False)]),
    }
    figures = {
        "date": "2026-11-29 16:00 UTC",
        "machine": {"cpus": 2, "platform": "Linux", "loadavg": [1.0, 2.0, 3.0]},
        "loadavg_end": [2.0, 2.0, 2.0],
        "params": {
            "users": 10,
            "items": 20,
            "candidates": 5,
            "stores": "embedded",
            "workers": 1,
            "think_s": 1.0,
            "hold_s": 8.0,
            "settle_s": 2.0,
            "budget_ms": 80.0,
        },
        "targets": targets,
        "headline": {name: online_report.headline(t) for name, t in targets.items()},
        "plots": ["latency.png"],
    }
    figures["capacity_ratio"] = online_report.capacity_ratio(figures["headline"])
    assert figures["capacity_ratio"] == 0.125  # 50 / 400 req/s
    full = figures["headline"]["full"]
    assert full["cpu_ms_per_request"] == 20  # the one step under budget, not the 900 one
    assert figures["headline"]["bare"]["cpu_ms_per_request"] == 9  # median of 5, 9, 30
    assert full["at_50"]["p99_ms"] == 20
    assert full["at_200"]["passed"] is False
    assert full["max_rate"] == 50
    assert full["server_stages_at_50"]["rank"]["mean_ms"] == 1.0
    assert figures["headline"]["bare"]["max_rate"] == 400

    text = online_report.markdown(figures)
    assert (
        "| bare (bare) | 1.2 / 2.5 / 5.0 | 2.2 / 4.5 / 9.0 | 400 req/s | 30.0 | 0 | 1.00 / 1.50 |"
        in text
    )
    assert "| full | 200 | 200 | 190 | 225.0 | 450.0 | 900.0 | 0 | 0 | no | 900.00 |" in text
    assert "| 0 | 1.00 / 1.50 | 20.00 | on |" in text
    assert "| 0 | 1.00 / 1.50 | 9.00 | n/a |" in text
    assert "Capacity ratio (full path's highest rate under budget over the bare" in text
    assert "load average 1.00 / 2.00 / 3.00" in text

    steps_csv, stages_csv = online_report.write_csv(tmp_path, targets)
    assert steps_csv.read_text().splitlines()[0].startswith("target,rate,users,warmup,endpoint")
    assert len(steps_csv.read_text().splitlines()) == 1 + 2 * 5  # each step: endpoint + all
    assert steps_csv.read_text().splitlines()[0].endswith(",cpu_s,answered,cpu_ms_per_request")
    assert ",True,2.0,400,5" in steps_csv.read_text()  # bare at 50 req/s, its all row
    assert "full,50,rank,10,1.0,1.0,2.0" in stages_csv.read_text()

    for path in (
        plots.latency(tmp_path / "latency.png", targets, 80.0),
        plots.throughput(tmp_path / "throughput.png", targets),
        plots.stages(tmp_path / "stages.png", targets),
        plots.stages(tmp_path / "none.png", {"bare": targets["bare"]}),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_all_reads_each_tier_json() -> None:
    assert everything.parse_output(b'{\n  "a": 1\n}\n') == {"a": 1}
    assert everything.parse_output(b'progress\n{"a": 2}\n') == {"a": 2}
    assert everything.parse_output(b"nothing") is None
    assert everything.summarise("online", None) == {"ok": False}
    online = everything.summarise("online", {"headline": {}, "failed_requests": 1})
    assert online["ok"] is False
    assert online["capacity_ratio"] is None
    both = {"headline": {}, "failed_requests": 0, "capacity_ratio": 0.2}
    assert everything.summarise("online", both)["capacity_ratio"] == 0.2


def test_the_locustfile_loads_in_locust() -> None:
    locust = Path(sys.executable).with_name("locust")
    done = subprocess.run(
        [str(locust), "-f", str(loadgen.LOCUSTFILE), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {"Visitor", "ConstantVisitor"} <= set(done.stdout.split())


def test_bench_all_summary_reads_like_the_tiers() -> None:
    online = _target("mix", "home", [(50, 20, True), (200, 900, False)])
    figures = {
        "date": "2026-11-29 16:00 UTC",
        "machine": {"cpus": 2, "loadavg": [1.5, 1.0, 0.5]},
        "offline": {"ok": True, "seconds": 100.0, "results_dir": "a", "sizes": [
            {"interactions": 50_000, "ok": True, "total_seconds": 90.0, "peak_rss_mb": 1800.0}
        ]},
        "nearline": everything.summarise("nearline", {
            "results_dir": "b",
            "throughput": {"events_per_second": 900.0},
            "freshness": [{"target_rate": 250.0, "achieved_rate": 250.0,
                           "freshness_ms_p50": 30.0, "freshness_ms_p99": 120.0}],
            "fresh_candidates": {"online_ms_p99": 2.0},
        }) | {"seconds": 40.0},
        "online": everything.summarise("online", {
            "results_dir": "c", "failed_requests": 0,
            "headline": {"mix": online_report.headline(online)},
        }) | {"seconds": 300.0},
    }  # fmt: skip
    text = everything.markdown(figures)
    assert "load average 1.5 / 1.0 / 0.5" in text
    assert "- 50,000 interactions: 90 s, peak 1,800 MB, ok" in text
    assert "- one worker: 900 events/s" in text
    assert "| mix | 20.0 ms | 900.0 ms | 50 req/s |" in text
    assert "- online: results in c (300 s)" in text


def test_no_answer_is_named_as_such() -> None:
    missing = traffic.check_recommendations(0, None, 10).problem
    assert missing == "no answer (timeout or connection error)"
