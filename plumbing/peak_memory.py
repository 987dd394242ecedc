"""Peak resident memory of a process itself, not of whoever started it.

Linux carries a process's largest resident set across exec, and `subprocess` starts a child with
vfork then exec, so a child started by a large process (a pytest worker, the studio) reports that
parent's size as its own `ru_maxrss`. `own_peak_rss_mb` reads VmHWM, the high-water mark of the
current address space, which starts afresh at exec; `run_with_peak` starts a command through a small
launcher that forks it, so the rusage that wait4 returns is the command's own.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

# argv: figure file, command...; writes "<exit code> <peak RSS in KiB>" (exit code as Popen reports
# it: negative for a signal) and exits like the command
LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as figure:
    figure.write(f"{code} {usage.ru_maxrss}")
sys.exit(code if code >= 0 else 128 - code)
"""


def resident_kib(pid: int | str = "self") -> dict[str, int]:
    """A process's resident memory now (`VmRSS`) and at its peak (`VmHWM`), in KiB, from
    /proc/PID/status (Linux); OSError where there is none."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def reset_own_peak() -> None:
    """Start this process's VmHWM afresh from its resident size now (Linux 4.0+; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        pass


def own_peak_rss_mb() -> float:
    """The most memory this process has held resident since it started (since its exec)."""
    try:
        return round(resident_kib()["VmHWM"] / 1024, 1)
    except (OSError, KeyError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_with_peak(argv: list[str], **popen_kwargs) -> tuple[int, float]:
    """Run `argv` to its end (`popen_kwargs` as for subprocess.Popen: cwd, env, stdout, ...); its exit
    code as Popen reports it and its own peak RSS in MB."""
    with tempfile.TemporaryDirectory(prefix="peak-") as folder:
        figure = Path(folder) / "figure"
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(figure), *argv], **popen_kwargs)
        launcher_code = proc.wait()
        if not figure.exists():
            raise RuntimeError(f"{argv[0]} could not be started (launcher exit {launcher_code})")
        code, kib = figure.read_text().split()
    return int(code), int(kib) / 1024
