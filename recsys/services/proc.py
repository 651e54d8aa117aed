"""Detached server processes tracked by a pid file: start, recognise, stop (POSIX only)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_POLL_S = 0.1
_STACK_FRAME = re.compile(r"(at [\w$.<>/]+\(.*\)|\.\.\. \d+ (more|common frames omitted))$")


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (other processes and threads wait)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None when the file is missing, empty or not a positive integer."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def write_pid(path: Path, pid: int) -> None:
    """Write ``pid`` atomically, so a concurrent reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    os.replace(tmp, path)


def remove_pid(path: Path) -> None:
    path.unlink(missing_ok=True)


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc (``Z`` for a zombie); None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name in parentheses may itself contain spaces or ')'.
    return stat.rpartition(")")[2].split()[0]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (zombies count as dead)."""
    try:
        # Reap it if it is our own child that already exited; else it lingers as a zombie
        # that kill(0) still reports as present.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string ('' when it cannot be read)."""
    if Path("/proc/self").is_dir():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    # No /proc (macOS): ask ps.
    out = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 (the system's ps)
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def is_ours(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` is alive and was started by us: its command line names our state folder.

    The marker guards against a stale pid file whose number the OS has since given to an
    unrelated process, which ``down`` must never signal.
    """
    return pid is not None and is_alive(pid) and marker in cmdline(pid)


def spawn_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``.

    A new session (and so a process group whose id is the pid) keeps the server alive after
    the CLI exits or gets Ctrl-C, and lets ``down`` signal everything it started at once.
    posix_spawn, rather than subprocess.Popen, because the CLI hands the process off for good:
    a Popen object would warn when it is collected while its child still runs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return os.posix_spawn(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group ``pgid``."""
    proc_root = Path("/proc")
    if not (proc_root / "self").is_dir():
        # No /proc (macOS): kill(0) also counts zombies, which only makes us wait longer.
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # After the ")" that closes the command name: state, ppid, pgrp, ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Poll until ``pid`` has exited; False if it is still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def stop_session(pid: int, timeout_s: float, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send ``sig`` (SIGTERM) to the process group led by ``pid``, SIGKILL it after
    ``timeout_s``.

    Returns True when it shut down on ``sig``, False when it had to be killed. The group is
    signalled, not just the pid, so that helpers the server forked go too.
    """
    _signal_group(pid, sig)
    graceful = wait_gone(pid, timeout_s)
    if not graceful:
        _signal_group(pid, signal.SIGKILL)
        wait_gone(pid, 10.0)
    if group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
    return graceful


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 3, max_bytes: int = 64 * 1024) -> str:
    """The last non-blank ``lines`` of a log file joined by ' | ' (for one-line errors)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in data.splitlines() if line.strip()]
    # Java stack frames say where, not what: keep the exception and "Caused by" lines.
    tail = [line for line in kept if not _STACK_FRAME.match(line)][-lines:]
    return " | ".join(tail) if tail else "(empty log)"


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.1`` so each start begins a fresh file."""
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))


def run_logged(
    argv: Sequence[str], log_path: Path, timeout_s: float, env: Mapping[str, str] | None = None
) -> int:
    """Run a one-off command to completion, appending its output to ``log_path``.

    Returns the exit code; raises ``subprocess.TimeoutExpired`` after ``timeout_s``.
    The command line is logged first (its last words: the classpath would drown the log).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(argv[-8:])}\n".encode())
        log.flush()
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            timeout=timeout_s,
            check=False,
        )
    return done.returncode
