"""``recsys bench offline``: wall time and peak memory of the offline job at growing sizes.

For each size a seeded synthetic dataset is generated once into ``--data-dir`` (reruns
reuse it; generation is timed apart from the job), then ``recsys offline run`` runs in a
subprocess with a fresh ``RECSYS_HOME`` and embedded SQLite stores, so every size has its
own peak. The job reads the Parquet as its event lake (``--dataset lake``), as a
production run reads what the nearline tier appended, and splits by time (``temporal``):
production trains on the past and is judged on the future, and the per-user random
``benchmark`` split exists to compare with published numbers, not to size a run.

Every ~200 ms the RSS of the whole process tree (the Python driver, the Spark JVM and its
Python workers) is read from ``/proc``; the job prints one ``✓ <step> <seconds>s`` line on
stderr per finished step, and each step gets the peak seen since the previous one ended.
RSS of forked workers counts shared pages twice, so the sum is an upper bound.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from recsys.bench import results
from recsys.console import console, err_console
from shared.settings import Settings

DEFAULT_SIZES = "1000000,5000000,20000000"
QUICK_SIZE = 50_000
TARGET = (20_000_000, 900.0)  # issue 3: 20M interactions end to end in 15 minutes
SAMPLE_S = 0.2
STEP_LINE = re.compile(r"^\s*✓\s+(\S+)\s+([\d.]+)s\s*(.*)$")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")
_MB = 1024 * 1024


@dataclass
class Sample:
    at: float  # seconds since the job started
    rss: int  # bytes, whole tree
    by_name: dict[str, int]  # bytes per process name (java, python ...)
    cpu: float  # CPU seconds (user + system) the tree has used so far, ended processes included


@dataclass
class Run:
    """What one subprocess run of the job produced."""

    wall: float
    returncode: int
    steps: list[tuple[str, float, float, str]] = field(default_factory=list)  # name, s, end, detail
    samples: list[Sample] = field(default_factory=list)
    stdout: str = ""
    stderr_tail: list[str] = field(default_factory=list)


def tree_rss(root: int, cpu: dict[int, float]) -> tuple[int, dict[str, int]]:
    """RSS of ``root`` and all its descendants, in bytes, total and per process name;
    updates ``cpu`` (pid -> CPU seconds) for the processes of the tree."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    used: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:  # the process ended between listing and reading
            continue
        close = stat.rfind(")")
        pid = int(entry.name)
        names[pid] = stat[stat.find("(") + 1 : close]
        fields = stat[close + 2 :].split()
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, frontier = {root}, [root]
    while frontier:
        current = frontier.pop()
        for pid, ppid in parent.items():
            if ppid == current and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total, by_name = 0, dict[str, int]()
    for pid in tree:
        cpu[pid] = used.get(pid, cpu.get(pid, 0.0))
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                rss = int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError):
            continue
        total += rss
        name = "python" if names.get(pid, "").startswith("python") else names.get(pid, "?")
        if rss:  # zombies hold nothing
            by_name[name] = by_name.get(name, 0) + rss
    return total, by_name


def run_job(
    args: list[str], env: dict[str, str], on_step: Callable[[str, float, str], None]
) -> Run:
    """Run ``recsys <args>`` in a subprocess, sampling its tree and reading its step lines."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from recsys.cli import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    run = Run(wall=0.0, returncode=-1)
    out: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            match = STEP_LINE.match(line)
            if match is None:
                run.stderr_tail = [*run.stderr_tail[-19:], line.rstrip()]
                continue
            name, seconds, detail = match[1], float(match[2]), match[3].strip()
            run.steps.append((name, seconds, time.perf_counter() - started, detail))
            on_step(name, seconds, detail)

    def read_stdout() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stderr, read_stdout)]
    for reader in readers:
        reader.start()
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        total, by_name = tree_rss(proc.pid, cpu)
        at = time.perf_counter() - started
        run.samples.append(Sample(at, total, by_name, sum(cpu.values())))
        time.sleep(SAMPLE_S)
    run.wall = time.perf_counter() - started
    run.returncode = proc.returncode
    for reader in readers:
        reader.join()
    run.stdout = "".join(out)
    return run


def step_figures(run: Run) -> dict[str, dict[str, Any]]:
    """Per step: seconds, and the peak RSS seen in its window (previous end, own end]."""
    windows: list[tuple[str, float, float, float]] = []  # name, seconds, start, end
    previous = 0.0
    for name, seconds, end, _ in run.steps:
        start = end - seconds if name == "pipeline" else previous
        if name == "pipeline" and start > 0:  # interpreter start, imports, reading settings
            windows.append(("startup", start, 0.0, start))
        windows.append((name, seconds, start, end))
        previous = end
    if run.steps:
        windows.append(("exit", run.wall - previous, previous, run.wall))
    out: dict[str, dict[str, Any]] = {}
    for name, seconds, start, end in windows:
        peak = _peak(run.samples, start, end)
        out[name] = {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(_cpu_at(run.samples, end) - _cpu_at(run.samples, start), 1),
            "peak_rss_mb": round(peak.rss / _MB, 1) if peak else 0.0,
            "peak_by_process_mb": {k: round(v / _MB, 1) for k, v in peak.by_name.items()}
            if peak
            else {},
        }
    return out


def _peak(samples: list[Sample], start: float, end: float) -> Sample | None:
    inside = [s for s in samples if start < s.at <= end]
    if not inside:  # a step shorter than the sampling period: the reading just before it
        before = [s for s in samples if s.at <= end]
        inside = before[-1:] or samples[:1]
    return max(inside, key=lambda s: s.rss, default=None)


def _cpu_at(samples: list[Sample], at: float) -> float:
    """CPU seconds of the tree at the last sample up to ``at``."""
    before = [s.cpu for s in samples if s.at <= at]
    return before[-1] if before else 0.0


def ensure_dataset(data_dir: Path, n: int, seed: int) -> tuple[Path, float, bool]:
    """The synthetic dataset of ``n`` interactions: (folder, seconds to generate, generated)."""
    from shared.data.synthetic_io import MARKER, is_synthetic_dir, write_synthetic

    folder = data_dir / f"synthetic-{n}-seed{seed}"
    if is_synthetic_dir(folder):
        meta = orjson.loads((folder / MARKER).read_bytes())
        if meta.get("n_interactions") == n and meta.get("seed") == seed:
            return folder, 0.0, False
    started = time.perf_counter()
    write_synthetic(folder, n, seed=seed)
    return folder, time.perf_counter() - started, True


def job_env(home: Path, dataset: Path) -> dict[str, str]:
    """The subprocess's environment: its own home, embedded stores, the dataset as lake."""
    env = dict(os.environ)
    env.update(
        {
            "RECSYS_HOME": str(home),
            "RECSYS_EVENT_LOG_URL": f"sqlite:///{home}/event-log.db",
            "RECSYS_USER_STATE_URL": f"sqlite:///{home}/user-state.db",
            "RECSYS_CANDIDATES_URL": f"sqlite:///{home}/candidates.db",
            "RECSYS_HISTORY_URL": f"sqlite:///{home}/history.db",
            "RECSYS_REGISTRY_URL": f"file://{home}/models",
            "RECSYS_EVENT_LAKE_DIR": str(dataset / "interactions"),
            "COLUMNS": "200",  # rich wraps nothing at this width: one progress line per step
        }
    )
    return env


def measure_size(
    n: int, dataset: Path, home: Path, split: str, on_step: Callable[[str, float, str], None]
) -> dict[str, Any]:
    """Run the job on one dataset and return its figures."""
    home.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]  # other work on a shared machine slows the run down
    args = ["offline", "run", "--dataset", "lake", "--items", str(dataset / "items.parquet")]
    run = run_job([*args, "--split", split, "--json"], job_env(home, dataset), on_step)
    meta = orjson.loads((dataset / "synthetic.json").read_bytes())
    steps = step_figures(run)
    figures: dict[str, Any] = {
        "interactions": n,
        "users": meta["n_users"],
        "items": meta["n_items"],
        "ok": run.returncode == 0,
        "steps": steps,
        "total_seconds": round(run.wall, 3),
        "peak_rss_mb": round(max((s.rss for s in run.samples), default=0) / _MB, 1),
        "cpu_seconds": round(run.samples[-1].cpu, 1) if run.samples else 0.0,
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "interactions_per_s": round(n / run.wall, 1) if run.returncode == 0 else None,
        "samples": len(run.samples),
    }
    if run.returncode != 0:
        figures["error"] = {"returncode": run.returncode, "stderr_tail": run.stderr_tail}
        return figures
    job = orjson.loads(run.stdout)
    figures["job_seconds"] = job["seconds"]
    figures["metrics"] = job["metrics"]
    figures["pipeline_steps"] = {
        k.removeprefix("pipeline."): round(v, 3)
        for k, v in job["seconds"].items()
        if k.startswith("pipeline.")
    }
    return figures


def growth(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Time ratio against size ratio between consecutive sizes (exponent 1 is linear)."""
    done = [s for s in sizes if s["ok"]]
    out = []
    for a, b in itertools.pairwise(done):
        size_ratio = b["interactions"] / a["interactions"]
        time_ratio = b["total_seconds"] / a["total_seconds"]
        per_step = {
            name: round(
                math.log(b["steps"][name]["seconds"] / v["seconds"]) / math.log(size_ratio), 2
            )
            for name, v in a["steps"].items()
            if name in b["steps"] and v["seconds"] > 0 and b["steps"][name]["seconds"] > 0
        }
        exponent = math.log(time_ratio) / math.log(size_ratio)
        out.append(
            {
                "from": a["interactions"],
                "to": b["interactions"],
                "size_ratio": round(size_ratio, 3),
                "time_ratio": round(time_ratio, 3),
                "exponent": round(exponent, 3),
                "linear_or_better": exponent <= 1.05,  # 5% slack for a shared machine's noise
                "step_exponents": per_step,
            }
        )
    return out


STEP_ORDER = (
    "startup", "pipeline", "ranker", "generators", "candidates", "evaluate", "index", "bundle",
    "promote", "exit",
)  # fmt: skip


def markdown(figures: dict[str, Any]) -> str:
    """results.md: one table of seconds / peak MB per step, one column per size."""
    sizes = figures["sizes"]
    lines = [
        f"# recsys bench offline ({figures['date']})",
        "",
        f"Machine: {figures['machine']['processor']}, {figures['machine']['cpus']} CPUs "
        f"({figures['machine']['platform']}). Input: synthetic data read as the event lake, "
        f"split `{figures['split']}`, ranker on. Cells: wall seconds / CPU seconds / peak RSS "
        "MB of the process tree (driver + Spark JVM + workers).",
        "",
        "| step | " + " | ".join(f"{s['interactions']:,}" for s in sizes) + " |",
        "| --- |" + " --- |" * len(sizes),
    ]
    for step in STEP_ORDER:
        cells = [
            "{seconds:.1f} / {cpu_seconds:.1f} / {peak_rss_mb:,.0f}".format(**s["steps"][step])
            if step in s["steps"]
            else "-"
            for s in sizes
        ]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(
            "**{total_seconds:.1f} / {cpu_seconds:.1f} / {peak_rss_mb:,.0f}**".format(**s)
            for s in sizes
        )
        + " |"
    )
    lines.append(
        "| interactions/s | "
        + " | ".join(
            f"{s['interactions_per_s']:,.0f}" if s["ok"] else "failed (partial figures)"
            for s in sizes
        )
        + " |"
    )
    lines.append(
        "| load average (1 min, before / after) | "
        + " | ".join("{:.1f} / {:.1f}".format(*s["load_average_1m"]) for s in sizes)
        + " |"
    )
    lines.append("")
    for g in figures["growth"]:
        lines.append(
            f"- {g['from']:,} -> {g['to']:,}: size x{g['size_ratio']:g}, time "
            f"x{g['time_ratio']:g} (exponent {g['exponent']:.2f}; "
            f"{'linear or better' if g['linear_or_better'] else 'worse than linear'})"
        )
    target = figures["target"]
    if target["met"] is not None:
        lines.append(
            f"- target {target['interactions']:,} in {target['seconds']:.0f}s: "
            + ("met" if target["met"] else "missed")
        )
    return "\n".join(lines) + "\n"


def write_csv(folder: Path, sizes: list[dict[str, Any]]) -> Path:
    path = folder / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["interactions", "step", "seconds", "peak_rss_mb"])
        for s in sizes:
            for step, v in s["steps"].items():
                writer.writerow([s["interactions"], step, v["seconds"], v["peak_rss_mb"]])
            writer.writerow([s["interactions"], "total", s["total_seconds"], s["peak_rss_mb"]])
    return path


def parse_sizes(text: str) -> list[int]:
    """``1000000,5M,20m`` -> [1000000, 5000000, 20000000]."""
    scale = {"k": 1_000, "m": 1_000_000}
    out = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        try:
            out.append(int(float(part[:-1]) * scale[part[-1]]) if part[-1] in scale else int(part))
        except ValueError as err:
            raise typer.BadParameter(f"--sizes: {part!r} is not a number") from err
    if not out or min(out) < 1_000:
        raise typer.BadParameter("--sizes: give sizes of at least 1000 interactions")
    return sorted(out)


def command(
    *,
    sizes: Annotated[
        str, typer.Option(help="Interactions per run, comma-separated (1000000 or 1M).")
    ] = DEFAULT_SIZES,
    quick: Annotated[
        bool, typer.Option("--quick", help=f"One run of {QUICK_SIZE:,} (CI smoke test).")
    ] = False,
    split: Annotated[str, typer.Option(help="temporal (production-like) or benchmark.")] = (
        "temporal"
    ),
    seed: Annotated[int, typer.Option(min=0, help="Seed of the synthetic data.")] = 0,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where datasets are generated and reused [default: <cache_dir>/bench-data]."
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep each run's home (bundles, Spark outputs, stores).")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Offline job at growing sizes: wall time and peak memory per step, growth with size."""
    if split not in ("temporal", "benchmark"):
        raise typer.BadParameter(f"--split {split!r}: use temporal or benchmark")
    settings = Settings()
    counts = [QUICK_SIZE] if quick else parse_sizes(sizes)
    data = data_dir if data_dir is not None else settings.cache_dir / "bench-data"
    folder = results.results_dir(settings, "offline")
    measured: list[dict[str, Any]] = []
    for n in counts:  # results are rewritten after each size: a long run can be stopped
        home = folder / "runs" / str(n)
        measured.append(_one_size(n, data=data, home=home, split=split, seed=seed, keep=keep))
        figures = summary(measured, split=split, seed=seed, folder=folder)
        results.write_json(folder, figures)
        results.write_markdown(folder, markdown(figures))
        write_csv(folder, measured)
    if not keep:
        shutil.rmtree(folder / "runs", ignore_errors=True)
    if json:
        console.print_json(orjson.dumps(figures).decode())
    else:
        console.print(markdown(figures), markup=False, soft_wrap=True)
        console.print(f"results: {folder}")
    if not all(s["ok"] for s in measured):
        raise typer.Exit(1)


def summary(
    measured: list[dict[str, Any]], *, split: str, seed: int, folder: Path
) -> dict[str, Any]:
    """The figures of the sizes measured so far, with growth and the issue's target."""
    largest = next((s for s in measured if s["interactions"] == TARGET[0] and s["ok"]), None)
    return {
        "benchmark": "offline",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": results.machine(),
        "input": f"synthetic (seed {seed}) read as the event lake",
        "split": split,
        "ranker": True,
        "sizes": measured,
        "growth": growth(measured),
        "target": {
            "interactions": TARGET[0],
            "seconds": TARGET[1],
            "met": None if largest is None else largest["total_seconds"] <= TARGET[1],
        },
        "results_dir": str(folder),
    }


def _one_size(
    n: int, *, data: Path, home: Path, split: str, seed: int, keep: bool
) -> dict[str, Any]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console
    ) as progress:
        task = progress.add_task(f"{n:,}: dataset", total=None)
        dataset, generation, generated = ensure_dataset(data, n, seed)
        progress.update(task, description=f"{n:,}: offline job (pipeline)")

        progress_file = home.parent.parent / "progress.jsonl"

        def on_step(step: str, seconds: float, detail: str) -> None:
            # One line per finished step, as it finishes: a run stopped mid-size (20M takes
            # long) still leaves the steps it measured; results.* are written per size.
            entry = {"interactions": n, "step": step, "seconds": seconds, "detail": detail}
            entry["load_average_1m"] = round(os.getloadavg()[0], 2)
            entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with progress_file.open("ab") as f:
                f.write(orjson.dumps(entry) + b"\n")
            line = f"  {n:,} ✓ {step:<11} {seconds:7.1f}s  {detail}"
            progress.console.print(line, markup=False, soft_wrap=True)
            progress.update(task, description=f"{n:,}: offline job ({step} done)")

        figures = measure_size(n, dataset, home, split, on_step)
    figures["generation_seconds"] = round(generation, 3)
    figures["generated"] = generated
    figures["dataset"] = str(dataset)
    status = "ok" if figures["ok"] else f"FAILED ({figures['error']['stderr_tail'][-1:]})"
    err_console.print(
        f"{n:,} interactions: {figures['total_seconds']:.1f}s, peak "
        f"{figures['peak_rss_mb']:,.0f} MB, {status}",
        markup=False,
    )
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return figures
