"""``recsys monitor``: the headline figures of the three tiers, live in the terminal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from recsys.console import console
from shared.errors import RecsysError
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx
    from rich.table import Table

    from recsys.monitor import Report, Scrape


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# (field, label, format) in the order the table shows them.
ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("requests_per_s", "online requests/s", lambda v: f"{v:,.1f}"),
    ("requests_total", "online requests (total)", lambda v: f"{v:,.0f}"),
    ("p99_latency_ms", "online p99 latency (budget 80 ms)", lambda v: f"{v:,.1f} ms"),
    ("degraded_ratio", "degraded answers", lambda v: f"{v:.2%}"),
    ("error_ratio", "errors per request", lambda v: f"{v:.2%}"),
    ("impressions_dropped_per_s", "impressions dropped/s", lambda v: f"{v:,.2f}"),
    ("nearline_lag_records", "nearline lag (records)", lambda v: f"{v:,.0f}"),
    ("freshness_p99_ms", "nearline freshness p99", lambda v: f"{v:,.1f} ms"),
    ("events_per_s", "nearline events/s", lambda v: f"{v:,.1f}"),
    ("bundle_age_s", "bundle age", _age),
]


def metrics_url(option: str, value: str) -> str:
    """host:port, http://host:port or a full URL -> the URL of its /metrics."""
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as err:
        raise RecsysError(f"{option} {value!r}: {err}") from err
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise RecsysError(f"{option} {value!r}: expected host:port or an http(s):// URL")
    return url if parts.path not in {"", "/"} else f"{url.rstrip('/')}/metrics"


def prometheus_base(value: str) -> str:
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise RecsysError(f"--prometheus {value!r}: expected host:port or an http(s):// URL")
    return url.rstrip("/")


def render(report: Report) -> Table:
    from rich.table import Table

    source = (
        f"{report.window_s:.1f} s between two scrapes of /metrics"
        if report.source == "metrics"
        else "Prometheus (5 min rates)"
    )
    table = Table(title=f"recsys monitor: {source}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    figures = report.figures
    table.add_row("bundle version", figures.bundle_version or "-")
    for name, label, fmt in ROWS:
        value = getattr(figures, name)
        table.add_row(label, "-" if value is None else fmt(value))
    table.add_section()
    for target in report.targets:
        state = "[green]up[/]" if target.up else f"[red]down[/]: {target.reason}"
        table.add_row(f"{target.tier} {target.address}", state)
    if report.note:
        table.caption = report.note
        table.caption_justify = "left"
    return table


class Monitor:
    """Where the figures come from; :meth:`report` waits one interval when scraping."""

    def __init__(
        self, client: httpx.Client, urls: dict[str, str], prometheus: str | None, interval: float
    ) -> None:
        self.client = client
        self.urls = urls
        self.prometheus = prometheus
        self.interval = interval
        self._last: tuple[float, dict[str, Scrape | str]] | None = None

    def report(self) -> Report:
        from recsys.monitor import PrometheusUnavailable, from_prometheus

        note = None
        if self.prometheus is not None:
            try:
                return from_prometheus(self.client, self.prometheus)
            except PrometheusUnavailable as err:
                note = f"Prometheus at {self.prometheus} did not answer ({err}): read /metrics"
        report = self._from_metrics()
        report.note = note
        return report

    def _from_metrics(self) -> Report:
        from recsys.monitor import from_scrapes, scrape_all

        if self._last is None:
            self._last = (time.monotonic(), scrape_all(self.client, self.urls))
            time.sleep(self.interval)
        started, before = self._last
        after = scrape_all(self.client, self.urls)
        now = time.monotonic()
        self._last = (now, after)
        return from_scrapes(self.urls, before, after, now - started)


def monitor(
    prometheus: Annotated[
        str | None,
        typer.Option(
            help="Prometheus base URL (e.g. http://127.0.0.1:9095): its recording rules. "
            "Without it, or when it does not answer, the services' /metrics."
        ),
    ] = None,
    api: Annotated[
        list[str] | None,
        typer.Option(
            help="An API's host:port or /metrics URL (repeat; default: the settings' "
            "scrape_api_targets)."
        ),
    ] = None,
    nearline: Annotated[
        list[str] | None,
        typer.Option(
            help="A nearline worker's metrics host:port or URL (repeat; default: the "
            "settings' scrape_nearline_targets)."
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option(min=0.1, max=3600, help="Seconds between two scrapes, and between refreshes."),
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one table and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object and exit.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds to wait for each answer.")
    ] = 2.0,
) -> None:
    """Requests/s, p99 latency, degraded and error ratios, impressions dropped, nearline lag,
    freshness and events/s, the bundle's version and age; every target up or down."""
    import httpx

    settings = Settings()
    urls = {metrics_url("--api", a): "online" for a in api or settings.scrape_api_targets}
    targets = nearline if nearline is not None else settings.scrape_nearline_targets
    urls.update({metrics_url("--nearline", n): "nearline" for n in targets})
    base = prometheus_base(prometheus) if prometheus is not None else None
    with httpx.Client(timeout=timeout) as client:
        source = Monitor(client, urls, base, interval)
        if as_json:
            print(json.dumps(source.report().as_dict()))
        elif once:
            console.print(render(source.report()))
        else:
            _live(source)


def _live(source: Monitor) -> None:
    from rich.live import Live

    try:
        with Live(render(source.report()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(source.interval)  # /metrics: the next scrape ends the next window
                live.update(render(source.report()), refresh=True)
    except KeyboardInterrupt:
        pass
