"""The pure side of ``--generator vegeta``: where the binary is, its targets file, its results.

vegeta (https://github.com/tsenart/vegeta) is a compiled Go load generator: it sends requests
at a fixed rate whatever the answers do (open loop), so its figures do not bend when the
generator itself is short of CPU the way a Python generator's do. It sends the targets of
its targets file in turn, so each step gets a file of its own with one freshly drawn request
per request it will send.

Requests are drawn one by one from the law the locust visitors follow
(:class:`recsys.bench.traffic.Population`): a known user by a Zipf law over their rank or a
new one, an action from the mix, items by a Zipf law over popularity. Locust draws a user
per session of several views; as the number of views does not depend on the user, a user's
share of the requests is the same either way (only consecutive requests are less often the
same user's here).
"""

from __future__ import annotations

import base64
import random
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson

from recsys.bench import traffic

VERSION = "v12.13.0"
MODULE = f"github.com/tsenart/vegeta/v12@{VERSION}"


def binary(cache_dir: Path) -> Path | None:
    """``<cache>/bin/vegeta`` (where ``make test`` installs it), else ``vegeta`` on PATH."""
    cached = cache_dir / "bin" / "vegeta"
    if cached.is_file():
        return cached
    found = shutil.which("vegeta")
    return Path(found) if found else None


def install_command(cache_dir: Path) -> str:
    return f"GOBIN={cache_dir / 'bin'} go install {MODULE}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query
    body: bytes | None = None


def draw(
    population: traffic.Population,
    mix: Mapping[str, float],
    n: int,
    rng: random.Random,
    k: int = 10,
) -> list[Request]:
    """``n`` requests of the mix (``{"constant": ...}`` for the bare endpoint)."""
    if set(mix) == {"constant"}:
        return [Request("GET", "/constant")] * n
    out = []
    for _ in range(n):
        action = traffic.action(mix, rng)
        if action == "home":
            user = quote(population.user(rng), safe="")
            out.append(Request("GET", f"/v1/users/{user}/recommendations?k={k}"))
        elif action == "similar":
            item = quote(population.item(rng), safe="")
            out.append(Request("GET", f"/v1/items/{item}/similar?k={k}"))
        else:
            body = traffic.event_body(population.user(rng), population.item(rng), rng)
            out.append(Request("POST", "/v1/events", body))
    return out


def write_targets(path: Path, host: str, requests: Iterable[Request]) -> Path:
    """vegeta's ``http`` targets format; a body goes in a file of its own beside ``path``
    (``@file``: that format has no inline bodies)."""
    bodies = path.with_suffix(".bodies")
    bodies.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for j, request in enumerate(requests):
            out.write(f"{request.method} {host}{request.path}\n")
            if request.body is not None:
                body = bodies / f"{j}.json"
                body.write_bytes(request.body)
                out.write(f"Content-Type: application/json\n@{body}\n")
            out.write("\n")
    return path


def rate_argument(rate: float) -> str:
    """``-rate``: an integer count per duration (``12.5`` req/s is ``25/2s``)."""
    if float(rate).is_integer():
        return f"{int(rate)}/1s"
    return f"{round(rate * 1000)}/1000s"


@dataclass(frozen=True)
class Result:
    """One request as ``vegeta encode --to json`` writes it."""

    name: str  # home, similar, event, constant, or the path
    subject: str  # the user (home) or item (similar); "" otherwise
    k: int
    sent: float  # POSIX seconds
    latency_ms: float
    code: int  # 0: no answer
    body: bytes
    error: str


def classify(method: str, url: str) -> tuple[str, str, int]:
    """The request's name as the locust visitors name it, its user or item, its ``k``."""
    parts = urlsplit(url)
    path = [unquote(p) for p in parts.path.split("/")]
    k = int(parse_qs(parts.query).get("k", ["10"])[0])
    if method == "GET" and len(path) == 5 and path[1:3] == ["v1", "users"]:
        return "home", path[3], k
    if method == "GET" and len(path) == 5 and path[1:3] == ["v1", "items"]:
        return "similar", path[3], k
    if method == "POST" and parts.path == "/v1/events":
        return "event", "", k
    if parts.path == "/constant":
        return "constant", "", k
    return parts.path, "", k


def parse_result(line: bytes) -> Result:
    return result_from(orjson.loads(line))


def result_from(raw: Mapping[str, Any]) -> Result:
    name, subject, k = classify(raw["method"], raw["url"])
    return Result(
        name=name,
        subject=subject,
        k=k,
        sent=datetime.fromisoformat(raw["timestamp"]).timestamp(),
        latency_ms=raw["latency"] / 1e6,
        code=int(raw["code"]),
        body=base64.b64decode(raw.get("body") or b""),
        error=raw.get("error") or "",
    )


def parse_results(lines: Iterable[bytes]) -> Iterator[Result]:
    for line in lines:
        if line.strip():
            yield parse_result(line)


def check(result: Result, population: traffic.Population) -> traffic.Checked:
    """The locust visitors' checks of the answer (vegeta itself only looks at the status)."""
    if result.name == "home":
        seen = population.seen.get(result.subject, [])
        return traffic.check_recommendations(result.code, result.body, result.k, seen)
    if result.name == "similar":
        return traffic.check_similar(result.code, result.body, result.subject, result.k)
    if result.name == "event":
        return traffic.check_event(result.code, result.body)
    if result.name == "constant":
        return traffic.check_constant(result.code, result.body)
    return traffic.Checked(None if 200 <= result.code < 300 else f"status {result.code}")


def failure(result: Result, checked: traffic.Checked) -> str | None:
    """Why the request failed, vegeta's own error first (a timeout has no status)."""
    if checked.problem is None:
        return None
    if result.code == 0 and result.error:
        return f"no answer: {result.error}"
    return checked.problem


def parse_report(data: bytes) -> dict[str, Any]:
    """``vegeta report -type json``: counts, success ratio, latency percentiles in ms."""
    raw = orjson.loads(data)
    latencies = raw.get("latencies", {})

    def ms(key: str) -> float | None:
        value = latencies.get(key)
        return None if value is None else round(value / 1e6, 3)

    return {
        "requests": int(raw.get("requests", 0)),
        "success_ratio": float(raw.get("success", 0.0)),
        "rate": round(float(raw.get("rate", 0.0)), 2),
        "throughput": round(float(raw.get("throughput", 0.0)), 2),
        "p50_ms": ms("50th"),
        "p90_ms": ms("90th"),
        "p99_ms": ms("99th"),
        "max_ms": ms("max"),
        "status_codes": {str(c): int(n) for c, n in (raw.get("status_codes") or {}).items()},
        "errors": list(raw.get("errors") or []),
    }
