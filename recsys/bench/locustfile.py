"""The locust test of ``recsys bench online``: visitors of the online API on a stepped ramp.

Run by the benchmark as a subprocess (importing locust monkey-patches the process with
gevent, so no other recsys code imports this module)::

    locust -f recsys/bench/locustfile.py --headless --host http://127.0.0.1:8000 \
        --plan plan.json Visitor

``plan.json`` (written by :mod:`recsys.bench.loadgen`) holds the steps, the mix of actions,
the think time, the latency budget, the population file and where to write each step's
figures (one JSON line per step, as soon as it is measured). A ``Visitor`` runs sessions of
page views (:mod:`recsys.bench.traffic`), checks every answer (status, shape, no duplicates,
no seen items) and waits an exponential think time between views; ``ConstantVisitor`` asks
the bare endpoint. ``SteppedRamp`` sets the number of visitors per step and ends the test
once a step broke the budget after every rate the report needs was measured.

It can also be run by hand against any address, with a plan of one's own.
"""

from __future__ import annotations

import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment

from recsys.bench import prom, ramp, traffic

JSON_HEADERS = {"Content-Type": "application/json"}


class _Run:
    """The plan and what has been measured so far, for the whole locust process."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.steps = [ramp.Step(**s) for s in plan["steps"]]
        self.recorder = ramp.StepRecorder(self.steps)
        population = plan.get("population")
        self.population = (
            traffic.Population.from_json(Path(population).read_bytes())
            if population
            else traffic.Population.synthetic(plan.get("users", 1000), plan.get("items", 1000))
        )
        self.mix: dict[str, float] = plan["mix"]
        self.think_s = float(plan["think_s"])
        self.k = int(plan.get("k", 10))
        self.out = Path(plan["out"])
        self.rng = random.Random(plan.get("seed", 0))
        self.started: float | None = None
        self.results: list[dict[str, Any]] = []
        self.scrapes: dict[int, str] = {}
        self.stopped = False

    def clock(self) -> float:
        if self.started is None:
            self.started = time.perf_counter()
        return time.perf_counter() - self.started

    def scrape(self) -> str:
        url = self.plan.get("metrics_url")
        if not url:
            return ""
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    def tick(self) -> ramp.Step | None:
        """Close the steps whose answers are in, scrape at window edges, the step to run."""
        t = self.clock()
        grace = float(self.plan.get("grace_s", 2.0))
        for step in self.steps:
            low, high = step.window
            if step.index not in self.scrapes and t >= low:
                self.scrapes[step.index] = self.scrape()
            if step.index in self.scrapes and -step.index - 1 not in self.scrapes and t >= high:
                self.scrapes[-step.index - 1] = self.scrape()
            if t >= high + grace and step.index not in {r["index"] for r in self.results}:
                self.close(step)
        if self.stopped:
            return None
        current = ramp.step_at(self.steps, t)
        if current is None and t < self.steps[-1].end_s + grace:
            return self.steps[-1]  # the last step's answers are still coming in
        return current

    def close(self, step: ramp.Step) -> None:
        result = self.recorder.result(step, self.plan["verdict"], float(self.plan["budget_ms"]))
        result["target"] = self.plan["target"]
        before, after = self.scrapes.get(step.index, ""), self.scrapes.get(-step.index - 1, "")
        result["stages"] = prom.stage_latency(before, after) if before and after else {}
        self.results.append(result)
        with self.out.open("ab") as out:
            out.write(orjson.dumps(result) + b"\n")
        if ramp.should_stop(self.results, float(self.plan["must_reach"])):
            self.stopped = True


RUN: _Run | None = None


def _run() -> _Run:
    if RUN is None:
        raise RuntimeError("no --plan was loaded")
    return RUN


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--plan", type=str, default="", help="The ramp plan (JSON file).")


@events.init.add_listener  # type: ignore[untyped-decorator]
def _init(environment: Environment, **_: Any) -> None:
    global RUN  # noqa: PLW0603 (one plan per locust process)
    path = getattr(environment.parsed_options, "plan", "")
    if not path:
        raise SystemExit("locustfile: --plan PLAN.json is required")
    RUN = _Run(orjson.loads(Path(path).read_bytes()))


@events.request.add_listener  # type: ignore[untyped-decorator]
def _record(
    name: str, response_time: float, exception: BaseException | None = None, **_: Any
) -> None:
    run = _run()
    sent = run.clock() - response_time / 1000
    run.recorder.request(name, sent, response_time, None if exception is None else str(exception))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _quitting(**_: Any) -> None:
    """Steps cut short by the end of the test (stopped by hand) are still written."""
    if RUN is None:
        return
    done = {r["index"] for r in RUN.results}
    t = RUN.clock()
    for step in RUN.steps:
        if step.index not in done and step.window[0] < t and not RUN.stopped:
            RUN.close(step)


class SteppedRamp(LoadTestShape):
    """The plan's steps: visitors per step, started within about a second."""

    def tick(self) -> tuple[int, float] | None:
        run = _run()
        step = run.tick()
        if step is None:
            return None
        return step.users, float(run.plan.get("spawn_rate", max(step.users, 50)))


class _Visitor(FastHttpUser):
    abstract = True
    network_timeout = 10.0
    connection_timeout = 5.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        run = _run()
        self.rng = random.Random(run.rng.getrandbits(64))

    def wait_time(self) -> float:
        return self.rng.expovariate(1.0 / _run().think_s)

    def on_start(self) -> None:  # visitors arrive spread out, not all at once
        time.sleep(self.wait_time())


class Visitor(_Visitor):
    """Sessions of page views on the online API: home page, similar items, events."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.user = ""
        self.seen: list[str] = []
        self.views_left = 0
        self.shown: tuple[str, ...] = ()

    @task
    def view(self) -> None:
        run = _run()
        if self.views_left <= 0:
            self.user = run.population.user(self.rng)
            self.seen = run.population.seen.get(self.user, [])
            self.views_left = run.population.views(self.rng)
            self.shown = ()
        self.views_left -= 1
        chosen = traffic.action(run.mix, self.rng)
        if chosen == "home":
            self.home(run.k)
        elif chosen == "similar":
            self.similar(run.population.item(self.rng), run.k)
        else:
            item = self.rng.choice(self.shown) if self.shown else run.population.item(self.rng)
            self.event(item)

    def home(self, k: int) -> None:
        url = f"/v1/users/{self.user}/recommendations?k={k}"
        with self.client.get(url, name="home", catch_response=True) as answer:
            checked = traffic.check_recommendations(
                answer.status_code, answer.content, k, self.seen
            )
            _verdict(answer, checked, "home")
        self.shown = checked.items or self.shown

    def similar(self, item: str, k: int) -> None:
        url = f"/v1/items/{item}/similar?k={k}"
        with self.client.get(url, name="similar", catch_response=True) as answer:
            _verdict(answer, traffic.check_similar(answer.status_code, answer.content, item, k))

    def event(self, item: str) -> None:
        body = traffic.event_body(self.user, item, self.rng)
        with self.client.post(
            "/v1/events",
            data=body.decode(),
            headers=JSON_HEADERS,
            name="event",
            catch_response=True,
        ) as answer:
            _verdict(answer, traffic.check_event(answer.status_code, answer.content))


class ConstantVisitor(_Visitor):
    """The bare FastAPI endpoint: what HTTP, JSON and uvicorn cost on their own."""

    @task
    def constant(self) -> None:
        with self.client.get("/constant", name="constant", catch_response=True) as answer:
            _verdict(answer, traffic.check_constant(answer.status_code, answer.content))


def _verdict(answer: Any, checked: traffic.Checked, name: str = "") -> None:
    if checked.problem is not None:
        answer.failure(checked.problem)
        return
    answer.success()
    if checked.degraded:
        run = _run()
        run.recorder.degraded(name, run.clock() - answer.request_meta["response_time"] / 1000)
