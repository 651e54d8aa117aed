"""The stepped ramp driven by vegeta: one ``vegeta attack`` per step, at a fixed rate.

Each step attacks for its settle time plus its measured time; the benchmark reads the
server (``/metrics``, CPU) when the measured window opens and when it closes, then keeps the
requests sent within it (vegeta stamps each with the time it was sent). Every answer goes
through the locust visitors' checks, into the same step records (:class:`ramp.StepRecorder`),
so the report and the budget's verdict are shared; ``vegeta report -type json`` of the same
requests is kept beside them, as vegeta counted them.

Files (targets, raw results, reports) go into ``folder/vegeta``; the raw results of a step
are deleted once read (they hold every answer's body).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recsys.bench import cpu, loadgen, prom, ramp, traffic, vegeta

TIMEOUT_S = 10  # as the locust visitors' network timeout


@dataclass(frozen=True)
class Window:
    """Where a step's measured window lies: vegeta's clock (POSIX) and the server's reads."""

    start_wall: float
    start: cpu.Reading
    end: cpu.Reading
    pages: tuple[str, str]


@dataclass
class _Totals:
    """Every request of the ramp, per name (as locust's own totals count them)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, latency_ms: float, failed: bool) -> None:
        self.latencies.setdefault(name, []).append(latency_ms)
        self.failures[name] = self.failures.get(name, 0) + failed

    def figures(self) -> dict[str, Any]:
        by_name = {}
        for name, values in sorted(self.latencies.items()):
            s = ramp.summarise(values)
            by_name[name] = {"requests": s["count"], "failures": self.failures[name],
                             "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}  # fmt: skip
        return {
            "requests": sum(n["requests"] for n in by_name.values()),
            "failures": sum(n["failures"] for n in by_name.values()),
            "by_name": by_name,
        }


def run(
    target: loadgen.Target,
    shape: loadgen.Ramp,
    folder: Path,
    population: Path,
    *,
    binary: Path,
    on_step: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """:func:`recsys.bench.loadgen.run`'s figures, from vegeta."""
    work = folder / "vegeta"
    work.mkdir(parents=True, exist_ok=True)
    people = traffic.Population.from_json(population.read_bytes())
    attacker = _Attacker(binary, target, shape, people)
    rng = random.Random(f"vegeta-{target.name}")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    steps: list[dict[str, Any]] = []
    for step in _open_loop(shape.steps()):
        prefix = work / f"{target.name}-{step.index}"
        requests = vegeta.draw(people, _mix(target), _count(step), rng, shape.k)
        vegeta.write_targets(prefix.with_suffix(".targets"), target.host, requests)
        record = attacker.measure(step, prefix, attacker.attack(step, prefix))
        steps.append(record)
        on_step(record)
        if ramp.should_stop(steps, shape.must_reach):
            break
    return loadgen.result(target, steps=steps, totals=attacker.totals.figures(),
                          started=started, load_before=load_before, generator="vegeta")  # fmt: skip


def _open_loop(steps: list[ramp.Step]) -> list[ramp.Step]:
    """The ramp's steps with no visitors (vegeta keeps the rate whatever the answers do)."""
    return [ramp.Step(s.index, s.rate, 0, s.start_s, s.settle_s, s.hold_s, s.warmup) for s in steps]


def _mix(target: loadgen.Target) -> dict[str, float]:
    return {"constant": 1.0} if target.user_class == "ConstantVisitor" else dict(target.mix)


def _count(step: ramp.Step) -> int:
    """One drawn request per request sent (vegeta goes round its targets file)."""
    return math.ceil(step.rate * (step.settle_s + step.hold_s)) + 1


@dataclass
class _Attacker:
    binary: Path
    target: loadgen.Target
    shape: loadgen.Ramp
    people: traffic.Population
    totals: _Totals = field(default_factory=_Totals)

    def attack(self, step: ramp.Step, prefix: Path) -> Window:
        """Run the step's attack; read the server as its measured window opens and closes."""
        argv = [
            str(self.binary), "attack", "-rate", vegeta.rate_argument(step.rate),
            "-duration", f"{round((step.settle_s + step.hold_s) * 1000)}ms",
            "-targets", str(prefix.with_suffix(".targets")), "-format", "http",
            "-timeout", f"{TIMEOUT_S}s", "-output", str(prefix.with_suffix(".bin")),
        ]  # fmt: skip
        pid = self.target.server_pid
        with prefix.with_suffix(".log").open("wb") as log:
            began = time.monotonic()
            child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(step.settle_s)
                first = self._page()  # before the CPU reading: its cost stays outside
                start_wall, start = time.time(), cpu.read(pid, time.monotonic())
                time.sleep(max(0.0, began + step.settle_s + step.hold_s - time.monotonic()))
                end = cpu.read(pid, time.monotonic())
                last = self._page()
                code = child.wait(timeout=TIMEOUT_S + 30)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        shutil.rmtree(prefix.with_suffix(".bodies"), ignore_errors=True)
        if code != 0:
            tail = prefix.with_suffix(".log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"vegeta attack exited with {code} on {self.target.name}: {tail}")
        return Window(start_wall, start, end, (first, last))

    def _page(self) -> str:
        url = self.target.metrics_url
        return prom.scrape(url) if url else ""

    def measure(self, step: ramp.Step, prefix: Path, window: Window) -> dict[str, Any]:
        """The step's record from vegeta's results: the window's requests, checked."""
        builder = StepBuilder(step, window.start_wall, self.people)
        kept = prefix.with_suffix(".window.jsonl")  # the window's results, for vegeta's report
        with kept.open("wb") as out:
            for line, result in _results(self.binary, prefix.with_suffix(".bin")):
                in_window, failed = builder.add(result)
                if in_window:
                    out.write(line)
                self.totals.add(result.name, result.latency_ms, failed)
        prefix.with_suffix(".bin").unlink(missing_ok=True)
        record = builder.record(self.target.verdict, self.shape.budget_ms)
        record["target"] = self.target.name
        record["stages"] = prom.stage_latency(*window.pages) if all(window.pages) else {}
        cpu.attach(record, window.start, window.end)
        record["vegeta"] = _report(self.binary, kept)
        return record


class StepBuilder:
    """A step's record from vegeta's results, as the locust path records its requests."""

    def __init__(self, step: ramp.Step, start_wall: float, people: traffic.Population) -> None:
        self.step = step
        self.start_wall = start_wall  # when the measured window opened (POSIX seconds)
        self.people = people
        self.recorder = ramp.StepRecorder([step])

    def add(self, result: vegeta.Result) -> tuple[bool, bool]:
        """Check one result and record it if it was sent within the window: (whether it was,
        whether it failed). Results outside are checked all the same, for the totals."""
        checked = vegeta.check(result, self.people)
        problem = vegeta.failure(result, checked)
        # on the step's own clock: its window opens settle_s after the step starts
        sent_s = self.step.window[0] + (result.sent - self.start_wall)
        if not self.step.window[0] <= sent_s < self.step.window[1]:
            return False, problem is not None
        self.recorder.request(result.name, sent_s, result.latency_ms, problem)
        if checked.degraded:
            self.recorder.degraded(result.name, sent_s)
        return True, problem is not None

    def record(self, verdict: str, budget_ms: float) -> dict[str, Any]:
        return self.recorder.result(self.step, verdict, budget_ms)


def _results(binary: Path, raw: Path) -> Iterator[tuple[bytes, vegeta.Result]]:
    """Each result, and its JSON line without the body (bodies are checked, not kept)."""
    argv = [str(binary), "encode", "--to", "json", str(raw)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as child:
        for line in child.stdout or ():
            if line.strip():
                raw_result = orjson.loads(line)
                result = vegeta.result_from(raw_result)
                yield orjson.dumps({**raw_result, "body": ""}) + b"\n", result
    if child.returncode != 0:
        raise RuntimeError(f"vegeta encode exited with {child.returncode} on {raw}")


def _report(binary: Path, kept: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "report", "-type", "json", str(kept)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return vegeta.parse_report(done.stdout)
