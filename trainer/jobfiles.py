"""The job directory contract, shared by the trainer process and the UI.

Everything a job is lives in WORKDIR/jobs/<id>/ (see DESIGN.md, "Contracts between UI and trainer"):
config.yaml, status.json, metrics.jsonl, train.log, checkpoints/checkpoint-<step>/ and output/, and
the optional launch_logs/, base_model/, expert_load.jsonl, export/, export.json and export.log.
This module names those files, writes them atomically, tails them by byte offset, and carries the
cooperative stop request (a STOP file beside SIGTERM). It must stay importable without paddle.

status.json keys (times are Unix seconds): state, step, total_steps, started, ended, error, updated
(set on every write); from the launcher (trainer/jobs.py): launched, pid, pgid, launcher_pid,
launcher_create_time, launch_token, resumed, exit_code, stop_requested, stop_deadline, stop_grace_s.

Trainer side of the protocol:
- install the SIGTERM handler first thing, and if `stop_requested()` is already true at start-up,
  write `stopped` without writing `running`;
- `write_status(state=RUNNING, started=..., total_steps=...)` once training begins, then `step=` updates;
- `append_metrics()` once per logging step;
- after a checkpoint is fully saved, `mark_checkpoint_complete(dir)` (writes the COMPLETE marker last),
  and only then `prune_checkpoints()`, so a complete checkpoint exists at every moment;
- on SIGTERM or `stop_requested()`: finish the step, save a checkpoint, write `stopped`, exit 0;
- at the end `completed` (or `failed` with the error), with `ended`.
Only one process (rank 0) writes status.json and metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from plumbing.files import append_json_line, atomic_write_json, atomic_write_text, fsync_tree
from plumbing.locking import exclusive

QUEUED = "queued"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
COMPLETED = "completed"
FAILED = "failed"
STATES = (QUEUED, RUNNING, STOPPING, STOPPED, COMPLETED, FAILED)
TERMINAL_STATES = frozenset({STOPPED, COMPLETED, FAILED})
# A queued job whose status has `launched` set also has a live process; see jobs.JobStore.
ACTIVE_STATES = frozenset({RUNNING, STOPPING})

CHECKPOINT_COMPLETE_MARKER = "COMPLETE"
STOP_FILE = "STOP"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_STATUS_LOCK = ".status.lock"


class JobFileError(Exception):
    """A job file exists but cannot be used (for example status.json is not valid JSON)."""


class JobPaths:
    """Names of the files in one job directory."""

    def __init__(self, job_dir: str | os.PathLike[str]):
        self.dir = Path(job_dir)

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.dir / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def output(self) -> Path:
        return self.dir / "output"

    @property
    def expert_load(self) -> Path:
        """One line per logging step of an MoE run: tokens per expert in each MoE layer."""
        return self.dir / "expert_load.jsonl"

    @property
    def stop_file(self) -> Path:
        return self.dir / STOP_FILE

    @property
    def launch_logs(self) -> Path:
        """Per-rank logs of a multi-process run (paddle.distributed.launch --log_dir)."""
        return self.dir / "launch_logs"

    def node_launch_logs(self, node_rank: int) -> Path:
        """The launcher's log directory on node `node_rank` of a multi-node job: launch_logs/ on the
        first node, launch_logs/node-<rank>/ on the others, so nodes sharing the job directory (a
        shared filesystem, or two launches on one machine) never write the same workerlog.N."""
        return self.launch_logs if node_rank == 0 else self.launch_logs / f"node-{node_rank}"

    @property
    def base_model(self) -> Path:
        """A LoRA adapter the job starts from, merged into its base so the job stands on its own."""
        return self.dir / "base_model"

    @property
    def export(self) -> Path:
        """Where `trainer export` writes when no other directory is given."""
        return self.dir / "export"

    @property
    def export_state(self) -> Path:
        """The UI's export runner: output directory, pid and exit code of the last export."""
        return self.dir / "export.json"

    @property
    def export_log(self) -> Path:
        return self.dir / "export.log"

    def read_config(self) -> dict:
        """config.yaml as a mapping ({} when empty); OSError or yaml.YAMLError when unreadable."""
        config = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        return config if isinstance(config, dict) else {}

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"checkpoint-{int(step)}"

    def last_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest step, or None; half-written ones are ignored."""
        best: tuple[int, Path] | None = None
        try:
            entries = list(self.checkpoints.iterdir())
        except FileNotFoundError:
            return None
        for entry in entries:
            step = checkpoint_step(entry)
            if step is None or not (entry / CHECKPOINT_COMPLETE_MARKER).is_file():
                continue
            if best is None or step > best[0]:
                best = (step, entry)
        return best[1] if best else None

    def __repr__(self) -> str:
        return f"JobPaths({str(self.dir)!r})"


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The step of a `checkpoint-<step>` directory name, or None for any other name."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def mark_checkpoint_complete(checkpoint_dir: str | os.PathLike[str]) -> None:
    """Written by the trainer after everything else in the checkpoint is saved."""
    fsync_tree(checkpoint_dir)
    atomic_write_text(Path(checkpoint_dir) / CHECKPOINT_COMPLETE_MARKER, f"{time.time()}\n")


def prune_checkpoints(job_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the `keep` newest complete checkpoints, and incomplete ones older than the
    newest complete one (left by a crash); returns the deleted directories."""
    paths = JobPaths(job_dir)
    found = sorted((step, entry) for entry in paths.checkpoints.iterdir()
                   if (step := checkpoint_step(entry)) is not None)
    whole = sorted(step for step, entry in found if (entry / CHECKPOINT_COMPLETE_MARKER).is_file())
    if not whole:
        return []
    kept = whole[-keep:]
    doomed = [entry for step, entry in found if step not in kept and (step in whole or step < whole[-1])]
    for entry in doomed:
        # The marker goes first: a deletion cut short must not leave a checkpoint that looks whole.
        (entry / CHECKPOINT_COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(entry, ignore_errors=True)
    return doomed


def read_status(job_dir: str | os.PathLike[str]) -> dict:
    """status.json as a dict; {} when it does not exist yet. Raises JobFileError if it is not JSON."""
    path = JobPaths(job_dir).status
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise JobFileError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise JobFileError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data


def update_status(
    job_dir: str | os.PathLike[str], change: Callable[[dict], Mapping[str, Any] | None]
) -> dict:
    """Merge `change(current)` into status.json under the status lock and return the result.

    `change` returns the fields to set, or None to leave the file untouched; because it runs under
    the lock it can decide from the current state (for example, only mark failed if still running).
    """
    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise JobFileError(f"job directory {job_dir} does not exist")
    # The launcher (pid, pgid) and the trainer (state, step) both merge into status.json;
    # the lock keeps one read-modify-write from undoing the other.
    with exclusive(job_dir / _STATUS_LOCK):
        current = read_status(job_dir)
        fields = change(dict(current))
        if fields is None:
            return current
        state = fields.get("state", current.get("state"))
        if state is not None and state not in STATES:
            raise ValueError(f"unknown job state {state!r}; expected one of {', '.join(STATES)}")
        merged = {**current, **fields, "updated": time.time()}
        atomic_write_json(JobPaths(job_dir).status, merged)
        return merged


def write_status(job_dir: str | os.PathLike[str], **fields: Any) -> dict:
    """Merge `fields` into status.json atomically (and set `updated`); returns the new status."""
    return update_status(job_dir, lambda _current: fields)


def append_metrics(job_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    append_json_line(JobPaths(job_dir).metrics, record)


class _LineTail:
    """Reads only what was appended since the last call, by byte offset; a partial last line waits."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0):
        self.path = Path(path)
        self.offset = offset

    def _read_lines(self) -> list[bytes]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < self.offset:
                # The file was truncated or replaced: start over rather than wait for it to regrow.
                self.offset = 0
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[: end + 1].splitlines()


class MetricsTail(_LineTail):
    """New records of metrics.jsonl since the last `read()`."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0):
        super().__init__(path, offset)
        self.bad_lines = 0

    def read(self) -> list[dict]:
        records = []
        for raw in self._read_lines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                # One corrupt line must not stop the curves; it is counted so it can be reported.
                self.bad_lines += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                self.bad_lines += 1
        return records


class LogTail(_LineTail):
    """New lines of train.log since the last `read()`, decoded with errors='replace'.

    To show a page of history first and then follow, use `tail_text()` and start a LogTail at the
    file's current size.
    """

    def read(self) -> list[str]:
        return [raw.decode("utf-8", errors="replace").rstrip("\r") for raw in self._read_lines()]


def request_stop(job_dir: str | os.PathLike[str]) -> None:
    """Ask the trainer to stop; every rank can see the file, unlike a signal to one process."""
    atomic_write_text(JobPaths(job_dir).stop_file, f"{time.time()}\n")


def stop_requested(job_dir: str | os.PathLike[str]) -> bool:
    return JobPaths(job_dir).stop_file.exists()


def clear_stop(job_dir: str | os.PathLike[str]) -> None:
    """Removes a stale STOP request before a job is launched again (resume)."""
    try:
        JobPaths(job_dir).stop_file.unlink()
    except FileNotFoundError:
        pass
