"""A throwaway Spark standalone cluster (one master, one worker) on this machine.

It runs the Spark that the ``pyspark`` package ships (its ``bin/spark-class``), so it
needs nothing but Java: the offline jobs can be proven on a real ``spark://`` master, with
executors in their own JVMs and Python workers in their own processes, without a
Spark install. For tests and demos; a production cluster is started by its operators.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import pyspark

_POLL_S = 0.5
_STOP_GRACE_S = 10.0
_LOG_TAIL_LINES = 30


class ClusterStartError(RuntimeError):
    """The master or worker did not come up; the message carries the log's tail."""


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package."""
    return Path(pyspark.__file__).resolve().parent


def free_port(host: str) -> int:
    """A port nobody listens on now (the OS picks it), so parallel runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def standalone_cluster(
    *,
    host: str = "127.0.0.1",
    worker_cores: int = 1,
    worker_memory: str = "1g",
    work_dir: Path,
    timeout_s: float = 90.0,
) -> Iterator[str]:
    """Start a master and one worker, yield the ``spark://host:port`` URL, stop both after.

    Logs go to ``work_dir/master.log`` and ``work_dir/worker.log``; the worker's
    application folders to ``work_dir/worker``. Returns once the master's JSON status
    lists one ALIVE worker, or raises :class:`ClusterStartError` with the log's tail.
    Executors ask for ``spark.executor.memory`` (1g by default): keep it within
    ``worker_memory`` or applications wait for resources forever.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,  # the executors' Python workers: this interpreter
        "SPARK_LOCAL_IP": host,
    }
    port, ui_port, worker_port, worker_ui_port = (free_port(host) for _ in range(4))
    url = f"spark://{host}:{port}"
    spark_class = str(home / "bin" / "spark-class")
    master_cmd = [
        spark_class,
        "org.apache.spark.deploy.master.Master",
        *("--host", host, "--port", str(port), "--webui-port", str(ui_port)),
    ]
    worker_cmd = [
        spark_class,
        "org.apache.spark.deploy.worker.Worker",
        url,
        *("--host", host, "--port", str(worker_port), "--webui-port", str(worker_ui_port)),
        *("--cores", str(worker_cores), "--memory", worker_memory),
        *("--work-dir", str(work_dir / "worker")),
    ]
    with ExitStack() as stack:
        master_log = work_dir / "master.log"
        worker_log = work_dir / "worker.log"
        master = stack.enter_context(_process(master_cmd, env, master_log))
        worker = stack.enter_context(_process(worker_cmd, env, worker_log))
        _wait_for_worker(
            f"http://{host}:{ui_port}/json/",
            {"master": (master, master_log), "worker": (worker, worker_log)},
            timeout_s,
        )
        yield url
        # ExitStack stops the worker (and its executors) first, then the master.


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in a process group of its own, output to ``log``; the group is ended after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (spark-class, its JVM, executors), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the whole group is gone
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie still counts as a group member
            if not _group_alive(proc.pid):
                return
            time.sleep(0.1)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_worker(
    status_url: str,
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                raise ClusterStartError(
                    f"Spark {name} exited with code {proc.returncode}; {log}:\n{_tail(log)}"
                )
        try:
            # http:// on 127.0.0.1: the master this function started.
            with urllib.request.urlopen(status_url, timeout=2) as reply:  # noqa: S310
                status = json.load(reply)
            alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
            if alive:
                return
            last = f"master is {status.get('status')}, no ALIVE worker"
        except (urllib.error.URLError, OSError, ValueError) as err:
            last = str(err)
        time.sleep(_POLL_S)
    tails = "\n".join(f"--- {log}:\n{_tail(log)}" for _, log in procs.values())
    raise ClusterStartError(
        f"no ALIVE Spark worker at {status_url} after {timeout_s:.0f}s ({last})\n{tails}"
    )


def _tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(log, "rb") as handle:
            text = _read_tail(handle)
    except OSError as err:
        return f"(log unreadable: {err})"
    return "\n".join(text.splitlines()[-lines:])


def _read_tail(handle: IO[bytes], max_bytes: int = 64 * 1024) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - max_bytes))
    return handle.read().decode("utf-8", errors="replace")
