"""``recsys demo`` on the embedded defaults, as the README runs it: nothing started, no
MovieLens (synthetic data), a bundle trained, events replayed, the web client served; a
play reaches the user state through the nearline worker; a second start serves the live
bundle without retraining; bad input is one line and an exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.demo_process import RECSYS, DemoProcess, free_port

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_demo_on_embedded_defaults_end_to_end(tmp_path: Path) -> None:
    env = {
        "RECSYS_MOVIELENS_DIR": str(tmp_path / "no-movielens"),
        "RECSYS_DATASETS_DIR": str(tmp_path / "datasets"),
    }
    home = tmp_path / "home"
    with DemoProcess(home, env, "--synthetic-interactions", "20000") as demo:
        demo.start(timeout_s=600)
        # The "demo ready" line comes from a thread that watches uvicorn start up, so it can
        # trail the first answer of /readyz by a moment on a busy machine.
        ready = "demo ready: open " + demo.url
        wait_for(lambda: ready in demo.output(), 30, "the 'demo ready' line")
        out = demo.output()
        assert "on embedded stores" in out and "generating synthetic data" in out, out
        assert "promoted" in out, out
        page = httpx.get(demo.url + "/", timeout=10)
        assert page.status_code == 200 and "tiered" in page.text

        user = demo.get("/v1/users", limit=1)["users"][0]
        # The replayed events (each user's last 5) reach the state through the worker.
        wait_for(lambda: len(demo.get(f"/v1/users/{user}/home")["recent"]) == 5, 30, "replay")
        rows = {r["id"]: r for r in demo.get(f"/v1/users/{user}/home")["rows"]}
        assert rows["top_picks"]["items"] and rows["trending"]["items"]
        assert rows["because_you_watched"]["anchor"] is not None

        item = rows["trending"]["items"][0]["item_id"]
        event = {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": "play"}
        assert httpx.post(demo.url + "/v1/events", json=event, timeout=10).status_code == 202
        wait_for(lambda: demo.get(f"/v1/users/{user}/home")["recent"][0] == item, 10, "the play")
        because = {r["id"]: r for r in demo.get(f"/v1/users/{user}/home")["rows"]}
        assert because["because_you_watched"]["anchor"] == item
        assert demo.stop() == 0
        assert "demo stopped" in demo.output()

    with DemoProcess(home, env) as again:  # same home: the live bundle, nothing retrained
        again.start(timeout_s=300)
        out = again.output()
        assert "serving the live bundle" in out and "✓ pipeline" not in out, out
        assert again.get(f"/v1/users/{user}/home")["recent"][0] == item  # state kept
        assert again.stop() == 0


def test_demo_bad_input_is_one_line_and_an_exit_code(tmp_path: Path) -> None:
    env_home = {"RECSYS_HOME": str(tmp_path)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [RECSYS, "demo", "--port", port], capture_output=True, text=True, timeout=120,
            env={**os.environ, **env_home}, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

    done = subprocess.run(
        [RECSYS, "demo", "--port", str(free_port()), "--dataset", "nope"], capture_output=True,
        text=True, timeout=120, env={**os.environ, **env_home}, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--dataset 'nope'" in done.stderr, done.stderr
