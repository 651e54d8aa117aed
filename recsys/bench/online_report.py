"""Figures, Markdown and CSV of ``recsys bench online`` from the targets' ramps (pure)."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPORT_RATES = (50.0, 200.0)  # the rates of the targets, always measured
STAGE_ORDER = ("user_state", "candidates", "fresh", "merge", "features", "rank", "select")


def at_rate(target: Mapping[str, Any], rate: float) -> dict[str, Any] | None:
    """The judged endpoint's figures at ``rate`` (None when the ramp stopped before it)."""
    for step in target["steps"]:
        if not step["warmup"] and step["rate"] == rate:
            judged = step["endpoints"].get(target["verdict"], {})
            return {
                "rate": rate,
                "users": step["users"],
                "achieved_rate": step["all"]["achieved_rate"],
                "p50_ms": judged.get("p50_ms"),
                "p95_ms": judged.get("p95_ms"),
                "p99_ms": judged.get("p99_ms"),
                "failures": step["all"]["failures"],
                "degraded": step["all"]["degraded"],
                "passed": step["passed"],
            }
    return None


def headline(target: Mapping[str, Any]) -> dict[str, Any]:
    """What the README and ``--json`` report of one target."""
    best = next((s for s in target["steps"] if s["index"] == target["max_rate_step"]), None)
    judged = best["endpoints"].get(target["verdict"], {}) if best else {}
    return {
        "label": target["label"],
        **{f"at_{r:g}": at_rate(target, r) for r in REPORT_RATES},
        "max_rate": target["max_rate"],
        "max_rate_p99_ms": judged.get("p99_ms"),
        "server_stages_at_50": _stages_at(target, 50.0),
        "loadavg_1m": target.get("loadavg_1m"),
        "requests": target["totals"]["requests"],
        "failed_requests": target["totals"]["failures"],
        **cpu_per_request(target),
        "impressions": target.get("impressions"),
        "generator": target.get("generator", "locust"),
    }


def cpu_per_request(target: Mapping[str, Any]) -> dict[str, Any]:
    """The API's CPU ms per answered request of one target: the median over the steps under
    the budget (a saturated server's figure is no cost of a request, its queue adds to it);
    when no step kept the budget, the median over every measured step, and ``cpu_basis``
    says which. None where the server's process was not known (a running API without
    ``--server-pid``)."""
    if not target.get("cpu_measured", False):
        return {"cpu_ms_per_request": None, "cpu_basis": "not measured (no server process)"}
    measured = [s for s in target["steps"] if not s["warmup"] and _cpu_ms(s) is not None]
    passing = [s for s in measured if s["passed"]]
    chosen, basis = (passing, "steps under budget") if passing else (measured, "all steps")
    if not chosen:
        return {"cpu_ms_per_request": None, "cpu_basis": "no step answered"}
    value = statistics.median(_cpu_ms(s) or 0.0 for s in chosen)
    return {"cpu_ms_per_request": round(value, 3), "cpu_basis": basis}


def _cpu_ms(step: Mapping[str, Any]) -> float | None:
    value: float | None = step.get("cpu", {}).get("cpu_ms_per_request")
    return value


def capacity_ratio(headlines: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The full path's highest rate under budget over the bare endpoint's, in one run: the
    share of a bare Python service's capacity the request path keeps. None unless both were
    run and both kept the budget at some rate."""
    full, bare = headlines.get("full"), headlines.get("bare")
    if not full or not bare or not full["max_rate"] or not bare["max_rate"]:
        return None
    return round(float(full["max_rate"]) / float(bare["max_rate"]), 4)


def floor_ratio(headlines: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The full path's CPU per answered request over the floor's (its external calls only),
    in one run: how many times the unavoidable work the path costs. None unless both were
    run and both CPU figures were measured."""
    full, floor = headlines.get("full"), headlines.get("floor")
    if not full or not floor:
        return None
    over, under = full.get("cpu_ms_per_request"), floor.get("cpu_ms_per_request")
    if not over or not under:
        return None
    return round(float(over) / float(under), 4)


def _stages_at(target: Mapping[str, Any], rate: float) -> dict[str, Any]:
    for step in target["steps"]:
        if not step["warmup"] and step["rate"] == rate:
            return dict(step.get("stages", {}))
    return {}


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _at(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "not reached"
    return f"{_ms(cell['p50_ms'])} / {_ms(cell['p95_ms'])} / {_ms(cell['p99_ms'])}"


def markdown(figures: Mapping[str, Any]) -> str:
    p, m = figures["params"], figures["machine"]
    budget = p["budget_ms"]
    lines = [
        "# recsys bench online",
        "",
        f"{figures['date']}, {m['cpus']} CPUs ({m['platform']}), load average"
        f" {_load(m.get('loadavg'))} at the start and {_load(figures.get('loadavg_end'))} at"
        f" the end. {p['users']:,} users, {p['items']:,} items, {p['candidates']} precomputed"
        f" candidates per user, stores: {p['stores']}, {p['workers']} API worker(s);"
        f" {_generator(p)}, {p['hold_s']:g} s measured per step after {p['settle_s']:g} s of"
        f" start-up; budget p99 < {budget:g} ms. The load generator shares the machine with"
        " the servers.",
        "",
        "## Headline",
        "",
        "p50 / p95 / p99 in ms of the judged endpoint; highest offered rate whose p99 stayed"
        " under the budget with no failed request; the API's CPU time (its process and"
        " workers, user + system) per answered request, median over the steps under budget;"
        " whether the API logged an impression event per answer.",
        "",
        "| target | at 50 req/s | at 200 req/s | highest rate | p99 there | failed requests |"
        " load (1 min) before / after | CPU ms / request | impressions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, h in figures["headline"].items():
        lines.append(
            f"| {h['label']} ({name}) | {_at(h['at_50'])} | {_at(h['at_200'])} |"
            f" {_rate(h['max_rate'])} | {_ms(h['max_rate_p99_ms'])} | {h['failed_requests']} |"
            f" {_load(h.get('loadavg_1m'))} | {_cpu(h)} | {h.get('impressions') or 'n/a'} |"
        )
    lines += _ratio(figures)
    lines += _stage_table(figures)
    lines += _step_table(figures)
    lines += ["", f"Plots: {', '.join(figures.get('plots', []))}.", ""]
    return "\n".join(lines)


def _generator(params: Mapping[str, Any]) -> str:
    if params.get("generator") == "vegeta":
        return "vegeta at a fixed rate per step (open loop), requests drawn as locust's visitors'"
    return f"locust visitors with a mean think time of {params['think_s']:g} s"


def _cpu(headline: Mapping[str, Any]) -> str:
    value = headline.get("cpu_ms_per_request")
    if value is None:
        return headline.get("cpu_basis") or "not measured"
    basis = headline.get("cpu_basis")
    return f"{value:.2f}" + ("" if basis == "steps under budget" else f" ({basis})")


def _ratio(figures: Mapping[str, Any]) -> list[str]:
    lines = []
    ratio = figures.get("capacity_ratio")
    if ratio is not None:
        lines += [
            "",
            f"Capacity ratio (full path's highest rate under budget over the bare endpoint's):"
            f" {ratio:.3f}.",
        ]
    floor = figures.get("floor_ratio")
    if floor is not None:
        lines += [
            "",
            f"Floor ratio (full path's CPU per request over the floor's, the external calls"
            f" only): {floor:.2f}.",
        ]
    return lines


def _stage_table(figures: Mapping[str, Any]) -> list[str]:
    stages = figures["headline"]
    if not any(h["server_stages_at_50"] for h in stages.values()):
        return []
    lines = [
        "",
        "## Server time per stage at 50 req/s",
        "",
        "Mean ms per request from the API's /metrics histograms (p99 interpolated in its"
        " buckets after the slash); 'handler' is the whole recommendation handler.",
        "",
        "| target | " + " | ".join((*STAGE_ORDER, "handler")) + " |",
        "| --- |" + " --- |" * (len(STAGE_ORDER) + 1),
    ]
    for name, h in stages.items():
        per = h["server_stages_at_50"]
        if not per:
            continue
        cells = [
            f"{per[s]['mean_ms']:.2f} / {_ms(per[s]['p99_ms'])}" if s in per else ""
            for s in (*STAGE_ORDER, "handler")
        ]
        lines.append(f"| {h['label']} ({name}) | " + " | ".join(cells) + " |")
    return lines


def _step_table(figures: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Every step",
        "",
        "Offered = visitors / think time (vegeta: the fixed rate, no visitors); achieved ="
        " answers per measured second (all endpoints); latencies of the judged endpoint; the"
        " API's CPU ms per answered request over the measured window.",
        "",
        "| target | offered req/s | visitors | achieved | p50 ms | p95 ms | p99 ms | failed |"
        " degraded | within budget | CPU ms / request |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, target in figures["targets"].items():
        for s in target["steps"]:
            if s["warmup"]:
                continue
            j = s["endpoints"].get(target["verdict"], {})
            lines.append(
                f"| {name} | {s['rate']:g} | {s['users'] or '-'} |"
                f" {s['all']['achieved_rate']:.0f} |"
                f" {_ms(j.get('p50_ms'))} | {_ms(j.get('p95_ms'))} | {_ms(j.get('p99_ms'))} |"
                f" {s['all']['failures']} | {s['all']['degraded']} |"
                f" {'yes' if s['passed'] else 'no'} | {_cpu_cell(_cpu_ms(s))} |"
            )
    mixed = [t for t in figures["targets"].values() if len(t["mix"]) > 1]
    for target in mixed:
        lines += [
            "",
            f"## Per endpoint, realistic mix ({target['name']})",
            "",
            "| offered req/s | endpoint | answers/s | p50 ms | p99 ms | failed |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for s in target["steps"]:
            if s["warmup"]:
                continue
            for endpoint, e in s["endpoints"].items():
                lines.append(
                    f"| {s['rate']:g} | {endpoint} | {e['achieved_rate']:.1f} |"
                    f" {_ms(e['p50_ms'])} | {_ms(e['p99_ms'])} | {e['failures']} |"
                )
    return lines


def _cpu_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _rate(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:g} req/s"


def _load(load: Sequence[float] | None) -> str:
    return "unknown" if not load else " / ".join(f"{x:.2f}" for x in load)


STEP_FIELDS = (
    "target", "rate", "users", "warmup", "endpoint", "count", "achieved_rate", "mean_ms",
    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "failures", "degraded", "passed",
    "cpu_s", "answered", "cpu_ms_per_request",
)  # fmt: skip


def write_csv(folder: Path, targets: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """``steps.csv``: one row per target, step and endpoint (and ``all``, which carries the
    step's CPU figures); ``stages.csv``: the server's time per stage and step."""
    steps_path, stages_path = folder / "steps.csv", folder / "stages.csv"
    with steps_path.open("w", newline="") as f:
        out = csv.DictWriter(f, STEP_FIELDS, extrasaction="ignore")
        out.writeheader()
        for name, target in targets.items():
            for s in target["steps"]:
                whole = {**s["all"], **s.get("cpu", {})}
                for endpoint, e in {**s["endpoints"], "all": whole}.items():
                    out.writerow(
                        {**e, "target": name, "rate": s["rate"], "users": s["users"],
                         "warmup": s["warmup"], "endpoint": endpoint, "passed": s["passed"]}
                    )  # fmt: skip
    with stages_path.open("w", newline="") as f:
        out = csv.DictWriter(f, ("target", "rate", "stage", "count", "mean_ms", "p50_ms", "p99_ms"))
        out.writeheader()
        for name, target in targets.items():
            for s in target["steps"]:
                for stage, e in s.get("stages", {}).items():
                    out.writerow({**e, "target": name, "rate": s["rate"], "stage": stage})
    return [steps_path, stages_path]
