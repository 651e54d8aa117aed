"""The locust test of ``recsys bench online``: visitors of the online API on a stepped ramp.

Run by the benchmark as a subprocess (importing locust monkey-patches the process with
gevent, so no other recsys code imports this module)::

    locust -f recsys/bench/locustfile.py --headless --host http://127.0.0.1:8000 \
        --plan plan.json Visitor

``plan.json`` (written by :mod:`recsys.bench.loadgen`) holds the steps, the mix of actions,
the think time, the latency budget, the population file and where to write each step's
figures (one JSON line per step, as soon as it is measured), with the API's time per stage
(``/metrics`` scraped at the window's edges) and its CPU per answered request (``/proc`` of
the plan's ``server_pid``, read at the same edges; :mod:`recsys.bench.cpu`). A ``Visitor``
runs sessions of page views (:mod:`recsys.bench.traffic`), checks every answer (status,
shape, no duplicates, no seen items) and waits an exponential think time between views;
``ConstantVisitor`` asks the bare endpoint. ``SteppedRamp`` sets the number of visitors per
step and ends the test once a step broke the budget after every rate the report needs was
measured.

It can also be run by hand against any address, with a plan of one's own.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment

from recsys.bench import cpu, prom, ramp, traffic

JSON_HEADERS = {"Content-Type": "application/json"}
_EDGE_PATIENCE_S = 10.0  # how long a step waits past its grace for its end edge to be read


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
        self.server_pid: int | None = plan.get("server_pid")
        # step index -> (/metrics page, server CPU) at the start and at the end of its window
        self.starts: dict[int, tuple[str, cpu.Reading]] = {}
        self.ends: dict[int, tuple[str, cpu.Reading]] = {}
        self.watcher: threading.Thread | None = None
        self.stopped = False

    def clock(self) -> float:
        if self.started is None:
            self.started = time.perf_counter()
        return time.perf_counter() - self.started

    def scrape(self) -> str:
        url = self.plan.get("metrics_url")
        return prom.scrape(url) if url else ""

    def watch_edges(self) -> None:
        """Read the server at each window's edges, on time: locust ticks the shape once a
        second only. The start's scrape comes before its CPU reading and the end's after,
        so that the scrapes' own cost stays out of the window."""
        for step in self.steps:
            low, high = step.window
            self._sleep_until(low)
            if self.stopped:
                return
            page = self.scrape()
            self.starts[step.index] = (page, cpu.read(self.server_pid, self.clock()))
            self._sleep_until(high)
            reading = cpu.read(self.server_pid, self.clock())
            self.ends[step.index] = (self.scrape(), reading)

    def _sleep_until(self, t: float) -> None:
        # under locust, threads are greenlets and sleeping yields to the visitors
        time.sleep(max(0.0, t - self.clock()))

    def tick(self) -> ramp.Step | None:
        """Close the steps whose answers are in, the step to run."""
        t = self.clock()
        if self.watcher is None:
            self.watcher = threading.Thread(target=self.watch_edges, daemon=True)
            self.watcher.start()
        grace = float(self.plan.get("grace_s", 2.0))
        late = grace + _EDGE_PATIENCE_S
        done = {r["index"] for r in self.results}
        for step in self.steps:
            edge = step.index in self.ends or t >= step.end_s + late  # never wait for ever
            if t >= step.end_s + grace and edge and step.index not in done:
                self.close(step)
                done.add(step.index)
        if self.stopped:
            return None
        current = ramp.step_at(self.steps, t)
        last = self.steps[-1].end_s
        if current is None and (
            t < last + grace or (len(done) < len(self.steps) and t < last + late)
        ):
            return self.steps[-1]  # the last step's answers (or its edge) are still coming in
        return current

    def close(self, step: ramp.Step) -> None:
        result = self.recorder.result(step, self.plan["verdict"], float(self.plan["budget_ms"]))
        result["target"] = self.plan["target"]
        start, end = self.starts.get(step.index), self.ends.get(step.index)
        pages = (start[0] if start else "", end[0] if end else "")
        result["stages"] = prom.stage_latency(*pages) if all(pages) else {}
        cpu.attach(result, start[1] if start else None, end[1] if end else None)
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
