"""PNG plots of ``recsys bench online``: latency and throughput against offered load, and
the server's time per stage. Matplotlib on its file-only backend, imported when called."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys.bench.online_report import STAGE_ORDER


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _measured(target: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in target["steps"] if not s["warmup"]]


def latency(path: Path, targets: Mapping[str, Mapping[str, Any]], budget_ms: float) -> Path:
    """p50, p95 and p99 of each target's judged endpoint against offered load (log-log)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, q in zip(axes, (50, 95, 99), strict=True):
        for name, target in targets.items():
            steps = _measured(target)
            xs = [s["rate"] for s in steps]
            ys = [s["endpoints"].get(target["verdict"], {}).get(f"p{q}_ms") for s in steps]
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.axhline(budget_ms, color="grey", linestyle="--", linewidth=1)
        _rate_axis(ax, targets)
        _plain_log_y(ax)
        ax.set_title(f"p{q}")
        ax.set_xlabel("offered load (req/s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"Latency against offered load (dashed: the {budget_ms:g} ms budget)")
    return _save(plt, fig, path)


def throughput(path: Path, targets: Mapping[str, Mapping[str, Any]]) -> Path:
    """Answers per second against offered load; the diagonal is 'kept up'."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    top, low = 1.0, float("inf")
    for name, target in targets.items():
        steps = _measured(target)
        xs = [s["rate"] for s in steps]
        ys = [s["all"]["achieved_rate"] for s in steps]
        if xs:
            ax.plot(xs, ys, marker="o", label=name)
            top, low = max(top, *xs, *ys), min(low, *xs, *ys)
    low = min(low, top) / 1.5
    ax.plot([low, top], [low, top], color="grey", linestyle="--", linewidth=1)
    _rate_axis(ax, targets)
    _plain_log_y(ax)
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("answers per second")
    ax.set_title("Throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def stages(path: Path, targets: Mapping[str, Mapping[str, Any]], rate: float = 50.0) -> Path:
    """Mean server time per stage of the request path at ``rate``, one bar group per stage."""
    plt = _pyplot()
    rows: dict[str, Mapping[str, Any]] = {
        name: next((s.get("stages", {}) for s in _measured(t) if s["rate"] == rate), {})
        for name, t in targets.items()
    }
    rows = {name: per for name, per in rows.items() if per}
    names = (*STAGE_ORDER, "handler")
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(rows), 1)
    for i, (name, per) in enumerate(rows.items()):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [per.get(s, {}).get("mean_ms", 0.0) for s in names], width, label=name)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(names))], names)
    ax.set_ylabel("mean ms per request (server)")
    ax.set_title(f"Server time per stage at {rate:g} req/s (the API's /metrics)")
    ax.grid(True, axis="y", alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no /metrics figures", ha="center", transform=ax.transAxes)
    return _save(plt, fig, path)


def _rate_axis(ax: Any, targets: Mapping[str, Mapping[str, Any]]) -> None:
    """A log axis labelled at the offered rates themselves (25, 50, 100 ...)."""
    from matplotlib.ticker import NullFormatter

    rates = sorted({s["rate"] for t in targets.values() for s in _measured(t)})
    ax.set_xscale("log")
    if rates:
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _plain_log_y(ax: Any) -> None:
    """A log y axis with plain numbers (20, 100, 1000) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
