"""Run the locustfile headless on a stepped ramp against one target, as a subprocess.

Locust is never imported here (it patches the process with gevent): ``locust`` runs as a
child with a plan file, writes a JSON line per measured step (read back while it runs, for
progress) and its own CSV statistics, which give an independent count of failed requests.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recsys.bench import ramp

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class Target:
    """One thing to load: where it answers, which visitors, what is judged."""

    name: str
    host: str
    user_class: str = "Visitor"  # or ConstantVisitor
    mix: Mapping[str, float] = field(default_factory=lambda: {"home": 100.0})
    verdict: str = "home"  # the endpoint whose p99 is held to the budget
    metrics_url: str | None = None
    label: str = ""
    server_pid: int | None = None  # whose CPU per request is measured (None: not measured)


@dataclass(frozen=True)
class Ramp:
    rates: Sequence[float]
    think_s: float = 1.0
    settle_s: float = 2.0
    hold_s: float = 8.0
    warmup_rate: float = 20.0
    warmup_s: float = 4.0
    budget_ms: float = 80.0
    must_reach: float = 200.0  # keep going past failed steps until this rate was measured
    k: int = 10
    grace_s: float = 2.0

    def steps(self) -> list[ramp.Step]:
        return ramp.schedule(
            self.rates,
            think_s=self.think_s,
            settle_s=self.settle_s,
            hold_s=self.hold_s,
            warmup_rate=self.warmup_rate,
            warmup_s=self.warmup_s,
        )


def plan(target: Target, shape: Ramp, population: Path | None, out: Path) -> dict[str, Any]:
    return {
        "target": target.name,
        "verdict": target.verdict,
        "mix": dict(target.mix),
        "metrics_url": target.metrics_url,
        "server_pid": target.server_pid,
        "budget_ms": shape.budget_ms,
        "must_reach": shape.must_reach,
        "think_s": shape.think_s,
        "grace_s": shape.grace_s,
        "k": shape.k,
        "steps": [s.to_json() for s in shape.steps()],
        "population": str(population) if population else None,
        "out": str(out),
    }


def run(
    target: Target,
    shape: Ramp,
    folder: Path,
    population: Path | None,
    on_step: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """The ramp against ``target``: every measured step, the highest passing one, and locust's
    own totals (requests, failures). Locust's CSV files and log go into ``folder/locust``."""
    work = folder / "locust"
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{target.name}.steps.jsonl"
    out.unlink(missing_ok=True)
    plan_path = work / f"{target.name}.plan.json"
    plan_path.write_bytes(
        orjson.dumps(plan(target, shape, population, out), option=orjson.OPT_INDENT_2)
    )
    locust = Path(sys.executable).with_name("locust")
    argv = [
        str(locust if locust.exists() else "locust"),
        "-f", str(LOCUSTFILE), "--headless", "--host", target.host,
        "--plan", str(plan_path), "--csv", str(work / target.name),
        "--only-summary", "--loglevel", "WARNING", "--logfile", str(work / f"{target.name}.log"),
        "--exit-code-on-error", "0", target.user_class,
    ]  # fmt: skip
    started = time.monotonic()
    load_before = os.getloadavg()[0]  # other work on a shared machine moves the figures
    seen = 0
    steps: list[dict[str, Any]] = []
    with (work / f"{target.name}.out").open("wb") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        while True:
            done = child.poll() is not None
            steps = read_steps(out)
            for step in steps[seen:]:
                on_step(step)
            seen = len(steps)
            if done:
                break
            time.sleep(0.5)
    if child.returncode not in (0, 1):  # 1: locust saw failed requests, counted below
        tail = (work / f"{target.name}.out").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited with {child.returncode} on {target.name}: {tail}")
    totals = read_totals(work / f"{target.name}_stats.csv")
    return result(
        target,
        steps=steps,
        totals=totals,
        started=started,
        load_before=load_before,
        generator="locust",
    )


def result(
    target: Target,
    *,
    steps: list[dict[str, Any]],
    totals: dict[str, Any],
    started: float,
    load_before: float,
    generator: str,
) -> dict[str, Any]:
    """One target's figures, whichever generator measured its steps."""
    best = ramp.highest_passing(steps)
    return {
        "name": target.name,
        "label": target.label or target.name,
        "host": target.host,
        "mix": dict(target.mix),
        "verdict": target.verdict,
        "steps": steps,
        "max_rate": None if best is None else best["rate"],
        "max_rate_step": None if best is None else best["index"],
        "totals": totals,
        "seconds": round(time.monotonic() - started, 1),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "generator": generator,
        "cpu_measured": target.server_pid is not None,
    }


def read_steps(path: Path) -> list[dict[str, Any]]:
    """The steps the locustfile has written so far (a partial last line is left for later)."""
    if not path.exists():
        return []
    steps = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            steps.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            break
    return steps


def read_totals(stats_csv: Path) -> dict[str, Any]:
    """Locust's own totals from ``<prefix>_stats.csv``: per request name and aggregated."""
    if not stats_csv.exists():
        return {"requests": 0, "failures": 0, "by_name": {}}
    by_name: dict[str, dict[str, Any]] = {}
    with stats_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            by_name[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "p50_ms": _number(row.get("50%")),
                "p99_ms": _number(row.get("99%")),
            }
    total = by_name.pop("Aggregated", {"requests": 0, "failures": 0})
    return {"requests": total["requests"], "failures": total["failures"], "by_name": by_name}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None
