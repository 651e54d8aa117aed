"""``recsys bench all``: offline (small size), nearline and online in sequence, one summary.

Each benchmark runs as its own ``recsys bench <tier> --json`` process (their progress goes to
the terminal; their figures come back on stdout), so one that fails leaves the others' figures
standing. The summary folder ``<home>/bench/<time>-all`` holds results.json (every tier's
headline figures and where its own results folder is) and results.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from recsys.bench.results import finish, machine, results_dir
from recsys.console import err_console
from shared.settings import Settings


def command(
    *,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke sizes: online --quick, nearline 2,000 events.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every tier's benchmark on this machine, one after the other, and one summary."""
    runs = {
        "offline": ["offline", "--quick"],
        "nearline": (
            ["nearline", "--events", "2000", "--rates", "250", "--seconds", "5"]
            if quick
            else ["nearline"]
        ),
        "online": ["online", "--quick"] if quick else ["online"],
    }
    folder = results_dir(Settings(), "all")
    figures: dict[str, Any] = {
        "benchmark": "all",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "quick": quick,
    }
    for tier, argv in runs.items():
        err_console.print(f"[bold]recsys bench {' '.join(argv)}[/]")
        started = time.monotonic()
        figures[tier] = summarise(tier, _run(argv)) | {
            "seconds": round(time.monotonic() - started, 1)
        }
    figures["ok"] = all(figures[t]["ok"] for t in runs)
    finish(folder, figures, markdown(figures), json)
    if not figures["ok"]:
        raise typer.Exit(1)


def _run(argv: list[str]) -> dict[str, Any] | None:
    recsys = Path(sys.executable).with_name("recsys")
    done = subprocess.run(
        [str(recsys), "bench", *argv, "--json"], stdout=subprocess.PIPE, check=False
    )
    if done.returncode != 0:
        return None
    return parse_output(done.stdout)


def parse_output(stdout: bytes) -> dict[str, Any] | None:
    """The JSON object a ``--json`` run printed (all of stdout, or its last line)."""
    for candidate in (stdout, *reversed(stdout.strip().splitlines())):
        try:
            value = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def summarise(tier: str, figures: Mapping[str, Any] | None) -> dict[str, Any]:
    """The few figures of one tier the summary shows."""
    if figures is None:
        return {"ok": False}
    out: dict[str, Any] = {"ok": True, "results_dir": figures.get("results_dir")}
    if tier == "offline":
        out["sizes"] = [
            {k: s.get(k) for k in ("interactions", "ok", "total_seconds", "peak_rss_mb")}
            for s in figures.get("sizes", [])
        ]
        out["ok"] = all(s["ok"] for s in out["sizes"])
    elif tier == "nearline":
        out["events_per_second"] = figures["throughput"]["events_per_second"]
        out["freshness"] = [
            {
                k: r[k]
                for k in ("target_rate", "achieved_rate", "freshness_ms_p50", "freshness_ms_p99")
            }
            for r in figures["freshness"]
        ]
        out["fresh_candidates_ms_p99"] = figures["fresh_candidates"]["online_ms_p99"]
    else:
        out["headline"] = figures["headline"]
        out["capacity_ratio"] = figures.get("capacity_ratio")
        out["failed_requests"] = figures["failed_requests"]
        out["ok"] = figures["failed_requests"] == 0
    return out


def markdown(figures: Mapping[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        "# recsys bench all",
        "",
        f"{figures['date']}, {m['cpus']} CPUs, load average"
        f" {' / '.join(str(x) for x in m.get('loadavg', []))} at the start.",
        "",
    ]
    off = figures["offline"]
    lines += ["## Offline", ""]
    for s in off.get("sizes", []):
        lines.append(
            f"- {s['interactions']:,} interactions: {s['total_seconds']:.0f} s,"
            f" peak {s['peak_rss_mb']:,.0f} MB, {'ok' if s['ok'] else 'FAILED'}"
        )
    lines += ["", "## Nearline", ""]
    near = figures["nearline"]
    if near["ok"]:
        lines.append(f"- one worker: {near['events_per_second']:,.0f} events/s")
        for r in near["freshness"]:
            lines.append(
                f"- freshness at {r['target_rate']:g} events/s: p50 {r['freshness_ms_p50']} ms,"
                f" p99 {r['freshness_ms_p99']} ms"
            )
    lines += ["", "## Online", ""]
    online = figures["online"]
    if online.get("headline"):
        lines += [
            "| target | p99 at 50 req/s | p99 at 200 req/s | highest rate under budget |",
            "| --- | --- | --- | --- |",
        ]
        for name, h in online["headline"].items():
            p50 = h["at_50"]["p99_ms"] if h["at_50"] else None
            p200 = h["at_200"]["p99_ms"] if h["at_200"] else None
            best = "none" if h["max_rate"] is None else f"{h['max_rate']:g} req/s"
            lines.append(f"| {name} | {_ms(p50)} | {_ms(p200)} | {best} |")
        if online.get("capacity_ratio") is not None:
            lines.append(f"\nCapacity ratio (full over bare): {online['capacity_ratio']:.3f}")
        lines.append(f"\nFailed requests: {online['failed_requests']}")
    lines += ["", "## Runs", ""]
    for tier in ("offline", "nearline", "online"):
        t = figures[tier]
        state = f"results in {t.get('results_dir')}" if t["ok"] else "FAILED"
        lines.append(f"- {tier}: {state} ({t['seconds']:.0f} s)")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} ms"
