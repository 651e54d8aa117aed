"""Where benchmark results go and how they are written: one folder per run.

``<home>/bench/<UTC timestamp>-<name>/`` holds ``results.json`` (the figures, as
``--json`` prints them), ``results.md`` (a summary for people) and whatever else the
benchmark adds (CSV, PNG plots).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import orjson

from shared.settings import Settings


def results_dir(settings: Settings, name: str, now: float | None = None) -> Path:
    """A new, empty folder for one run of benchmark ``name``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    folder = settings.home / "bench" / f"{stamp}-{name}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    import os

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        # 1, 5 and 15 minute load averages at the start: the machine may be shared
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(folder: Path, figures: dict[str, Any]) -> Path:
    path = folder / "results.json"
    path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def write_markdown(folder: Path, text: str) -> Path:
    path = folder / "results.md"
    path.write_text(text, encoding="utf-8")
    return path


def finish(
    folder: Path,
    figures: dict[str, Any],
    markdown: str,
    as_json: bool,
    printed: dict[str, Any] | None = None,
) -> None:
    """Write results.json and results.md, then print the JSON (``--json``: ``printed``, by
    default the figures) or the summary."""
    import sys

    from recsys.console import console

    write_json(folder, figures)
    write_markdown(folder, markdown)
    if as_json:
        shown = figures if printed is None else printed
        sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        console.print(markdown)
        console.print(f"results in {folder}")
