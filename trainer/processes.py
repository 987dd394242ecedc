"""Process control for everything the studio launches in the background (trainers, exports).

A launch runs detached: in a session and process group of its own, stdin closed, output appended
to a log file, from the repository root. Liveness is judged on a (pid, create_time) pair, so a
reused pid never passes for the process we started. A job's launch also carries a token in its
environment (ERNIE_STUDIO_LAUNCH): every process of the launch inherits it, which is how ranks that
`paddle.distributed.launch` puts in sessions of their own (os.setsid) are found and killed.

Functions taking `status` read a job's status.json fields: `launcher_pid` (or `pid`),
`launcher_create_time` and `launch_token`. Never imports paddle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any, Mapping, Sequence

import psutil

from plumbing.paths import REPO_ROOT

# Set in the trainer's environment; every process of a launch inherits it, whatever its session.
LAUNCH_ENV = "ERNIE_STUDIO_LAUNCH"
_POLL_S = 0.05
_SCAN_POLL_S = 0.2


def spawn_detached(argv: Sequence[str], log_path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                   append: bool = True) -> subprocess.Popen:
    """Start `argv` in a new session (its own process group), writing stdout and stderr to
    `log_path` after a `[studio] <time> launching: ...` line. `env` is added to this environment."""
    argv = [str(a) for a in argv]
    with open(log_path, "ab" if append else "wb") as log:
        log.write(f"[studio] {time.strftime('%Y-%m-%d %H:%M:%S')} launching: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True,
        )


def create_time(pid: int) -> float | None:
    """When `pid` started, to tell it from a later process that reuses the pid; None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def process_alive(pid: Any, created: Any = None) -> bool:
    """The process exists, is not a zombie, and (given when it started) is not a reused pid."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(created, (int, float)) and abs(proc.create_time() - created) > 0.5:
            return False
    except psutil.Error:
        return False
    return True


def signal_name(code: int) -> str:
    """SIGKILL for an exit code of -9."""
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _launcher(status: dict) -> tuple[Any, float | None]:
    # launcher_pid is what was spawned; `pid` may be rewritten by the trainer (rank 0).
    return status.get("launcher_pid", status.get("pid")), status.get("launcher_create_time")


def launcher_alive(status: dict) -> bool:
    return process_alive(*_launcher(status))


def _owned_pgid(status: dict) -> int | None:
    """The launcher's process group if it is still this launch's (never the caller's own group)."""
    pgid, created = _launcher(status)
    if not isinstance(pgid, int) or pgid <= 1 or pgid == os.getpgrp():
        return None
    try:
        leader_created = psutil.Process(pgid).create_time()
    except psutil.NoSuchProcess:
        # Linux does not reuse a process-group id while any member of the group remains.
        return pgid
    return pgid if created is None or abs(leader_created - created) <= 0.5 else None


def launch_processes(status: dict) -> list[psutil.Process]:
    """Live processes of this launch: the launcher's process group, and every process that inherited
    its launch token, which finds ranks in sessions of their own and children orphaned by a dead
    launcher."""
    pgid = _owned_pgid(status)
    token = status.get("launch_token")
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (pgid is not None and os.getpgid(proc.pid) == pgid) or (
                token and proc.environ().get(LAUNCH_ENV) == token
            ):
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def terminate(status: dict) -> None:
    """Cooperative stop: SIGTERM the launcher's group (paddle.distributed.launch passes it on to
    its ranks; the STOP file reaches them too)."""
    pgid = _owned_pgid(status)
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def kill_all(status: dict) -> bool:
    """SIGKILL every process of the launch; True if there was any."""
    pgid = _owned_pgid(status)
    sent = False
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
            sent = True
        except ProcessLookupError:
            pass
    for proc in launch_processes(status):
        try:
            proc.kill()
            sent = True
        except psutil.NoSuchProcess:
            pass
    return sent


def all_gone(status: dict) -> bool:
    return not launcher_alive(status) and not launch_processes(status)


def wait_gone(status: dict, timeout_s: float) -> bool:
    """Wait until no process of the launch is left; False if some remain after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    # Polling the launcher is cheap; the scan for stragglers reads every process's environment.
    while launcher_alive(status):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    while launch_processes(status):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_SCAN_POLL_S)
    return True

