"""``recsys demo`` as a user runs it: a subprocess on a port of its own, its output in a
file, stopped with SIGTERM. Used by the demo and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

RECSYS = str(Path(sys.executable).with_name("recsys"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoProcess:
    """``recsys demo ARGS`` with ``env`` added to this environment."""

    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"demo-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "RECSYS_HOME": str(home),
            "RECSYS_SPARK_MASTER": "local[2]",
            **env,
        }
        self.args = [RECSYS, "demo", "--port", str(self.port), *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> DemoProcess:
        """Start and wait until the API answers ``/readyz`` (or fail with the output)."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"recsys demo exited with {self.process.returncode}:\n{self.output()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(
            f"recsys demo not ready after {timeout_s:.0f} s:\n{self.output()[-4000:]}"
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> DemoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.stop()
