"""The online API keeps its published contract: schemathesis generates requests for every
operation of ``/openapi.json`` (the admin token supplied) and checks each answer: no 5xx,
no schema-valid request refused, every response matching its documented schema.

The app runs as ``recsys online serve`` builds it (the nearline events router included,
the events guard installed), served by uvicorn on a port of its own, on the embedded
SQLite stores and a hand-made bundle.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from nearline.api import protect
from nearline.api import router as events_router
from online.app import create_app
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates

ADMIN = "contract-admin"
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
EVENTS = "POST /v1/events"
OPERATIONS = {
    "GET /v1/users/{user_id}/recommendations",
    "GET /v1/users/{user_id}/home",
    "GET /v1/users",
    "GET /v1/items/{item_id}",
    "GET /v1/items/{item_id}/similar",
    "POST /v1/events",
    "POST /v1/admin/reload",
    "GET /healthz",
    "GET /readyz",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("contract")
    config = Settings(
        home=home,
        registry_url=f"file://{home}/models",
        admin_token=ADMIN,
        device="cpu",
        reload_interval_s=3600,
    )
    registry = ModelRegistry(config.registry_url)
    version = make_bundle(registry)
    registry.promote(version)
    store = open_candidates(config.candidates_url)
    store.init_schema()
    publish_candidates(store, version, candidate_rows())
    store.close()
    app = create_app(config, routers=[events_router])
    protect(app, config)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _schemathesis(served: str, report: Path, *options: str) -> set[str]:
    """Run schemathesis's own CLI with every check and a fixed seed, and no database of
    examples from earlier runs (so every run, in CI or in a checkout that ran it before,
    tests the same requests); fail with its report unless it passed. Returns the
    operations it tested."""
    done = subprocess.run(
        [SCHEMATHESIS, "run", f"{served}/openapi.json", "--checks", "all",
         "--header", f"Authorization: Bearer {ADMIN}", "--max-examples", "25",
         "--seed", "20261206", "--report", "junit", "--report-junit-path", str(report),
         "--generation-database", "none", "--no-color", *options],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return set(re.findall(r'<testcase name="([A-Z]+ [^"]+)"', report.read_text()))


def test_api_keeps_its_contract(served: str, tmp_path: Path) -> None:
    tested = _schemathesis(served, tmp_path / "all.xml", "--exclude-path", "/v1/events")
    assert tested == OPERATIONS - {EVENTS}, tested ^ (OPERATIONS - {EVENTS})


def test_events_keep_their_contract(served: str, tmp_path: Path) -> None:
    """Every check but "schema-valid request accepted": two rules of an impression's shown
    list (its first item is the event's item_id, its positions increase) are cross-field,
    which JSON Schema cannot state, so a generated body may break them and get its 422.
    test_api_limits.py checks that the schema and the server agree on every other body."""
    tested = _schemathesis(
        served, tmp_path / "events.xml", "--include-path", "/v1/events",
        "--exclude-checks", "positive_data_acceptance",
    )  # fmt: skip
    assert tested == {EVENTS}
