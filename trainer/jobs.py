"""The job store and launcher: create, spawn, watch, stop, list and delete training jobs.

The store is SQLite at WORKDIR/studio.db (WAL); the truth about a job's progress is its directory
(status.json and friends, see trainer/jobfiles.py), which the store mirrors on `refresh`. Each job
runs as `python -m trainer run JOB/config.yaml --job-dir JOB` in its own session and process group,
detached from the UI, so the UI can restart and adopt it again from the store: nothing here relies
on a Popen handle being present. Never imports paddle.

The launcher records in status.json `launcher_pid`/`launcher_create_time` (the process it spawned;
liveness is judged on it, so a trainer may rewrite `pid`/`pgid` with rank 0's) and `launch_token`,
which is also put in the trainer's environment as ERNIE_STUDIO_LAUNCH: every process of the launch
inherits it, which is how ranks in sessions of their own (paddle.distributed.launch uses os.setsid)
are found and killed.

Stopping: `request_stop` (non-blocking) writes the STOP file, SIGTERMs the process group, sets
`stopping` and records `stop_deadline` in status.json; any later `refresh`/`reap` past the deadline
SIGKILLs the whole group and marks the job `stopped` with an error. `stop_job` does the same and
waits. A job whose process is gone without a terminal state is marked `failed` with its log tail.

The queue: a new job is `queued` with an `enqueued` time in the store; `enqueue_resume` puts a
stopped or failed job back in the queue to continue from its checkpoint. `JobScheduler` starts
queued jobs in order whenever the devices they need are free (one job per device by default). The
queue is only rows in studio.db, so an app restarted later picks it up where it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psutil
import yaml

from trainer import jobfiles
from trainer.jobfiles import ACTIVE_STATES, FAILED, QUEUED, STOPPED, STOPPING, JobFileError, JobPaths

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
LOG_TAIL_LINES = 40
_BUSY_TIMEOUT_MS = 10_000
_POLL_S = 0.05
_SCAN_POLL_S = 0.2
# Set in the trainer's environment; every process of a launch inherits it, whatever its session.
LAUNCH_ENV = "ERNIE_STUDIO_LAUNCH"

# Each entry upgrades the jobs schema by one version; append, never edit, so old stores migrate.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created REAL NOT NULL,
            job_dir TEXT NOT NULL,
            state TEXT NOT NULL,
            pid INTEGER,
            pgid INTEGER,
            config_summary TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            updated REAL
        )""",
        "CREATE INDEX jobs_created ON jobs (created)",
    ],
    [
        # enqueued: when the job joined the queue (NULL once launched); resume: continue from the
        # last checkpoint when the scheduler starts it.
        "ALTER TABLE jobs ADD COLUMN enqueued REAL",
        "ALTER TABLE jobs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0",
        "UPDATE jobs SET enqueued = created WHERE state = 'queued'",
    ],
]


class JobError(Exception):
    """Base class of the errors this module raises on purpose."""


class InvalidJobId(JobError, ValueError):
    pass


class JobNotFound(JobError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobStateError(JobError):
    """The job is in a state that does not allow the operation (e.g. deleting a running job)."""


TrainerArgv = Callable[[JobPaths, dict, bool], Sequence[str]]


def default_trainer_argv(paths: JobPaths, config: dict, resume: bool) -> list[str]:
    """`python -m trainer run JOB/config.yaml --job-dir JOB [--resume]`, under
    `paddle.distributed.launch` when the config asks for more than one process."""
    from trainer.config import command_preview, from_dict

    return command_preview(from_dict(config), paths.config, paths.dir, resume=resume)


def validate_job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        shown = repr(job_id)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InvalidJobId(f"invalid job id {shown}: expected YYYYMMDD-HHMMSS-xxxx (e.g. 20261123-011500-ab12)")
    return job_id


def new_job_id(now: float | None = None) -> str:
    """UTC time plus 4 random hex digits: sorts by creation time and reads as a date."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


@dataclass
class Job:
    id: str
    name: str
    state: str
    job_dir: Path
    created: float
    pid: int | None = None
    pgid: int | None = None
    step: int | None = None
    total_steps: int | None = None
    launched: float | None = None
    started: float | None = None
    ended: float | None = None
    updated: float | None = None
    error: str | None = None
    exit_code: int | None = None
    stop_deadline: float | None = None
    config_summary: dict = field(default_factory=dict)
    enqueued: float | None = None  # set while the job waits in the queue
    resume_when_started: bool = False

    @property
    def paths(self) -> JobPaths:
        return JobPaths(self.job_dir)

    @property
    def active(self) -> bool:
        """True while a trainer process belongs to this job (running, stopping, or launched)."""
        return self.state in ACTIVE_STATES or (self.state == QUEUED and self.launched is not None)

    @property
    def waiting(self) -> bool:
        """True while the job is in the queue, not yet launched."""
        return self.state == QUEUED and self.launched is None and self.enqueued is not None


def _summarise(config: dict, prefix: str = "") -> dict:
    """Scalar leaves of the config under dotted keys (the same keys the form and YAML use)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_summarise(value, f"{dotted}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[dotted] = value
    return out


def _is_launched_live(status: dict) -> bool:
    state = status.get("state")
    return state in ACTIVE_STATES or (state == QUEUED and status.get("launched") is not None)


def _process_alive(pid: Any, create_time: float | None) -> bool:
    """The process exists, is not a zombie, and (given its create_time) is not a reused pid."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


def _launcher(status: dict) -> tuple[Any, float | None]:
    # launcher_pid is what start_job spawned; `pid` may be rewritten by the trainer (rank 0).
    return status.get("launcher_pid", status.get("pid")), status.get("launcher_create_time")


def _launcher_alive(status: dict) -> bool:
    return _process_alive(*_launcher(status))


def _owned_pgid(status: dict) -> int | None:
    """The launcher's process group if it is still this job's (never the UI's own group)."""
    pgid, create_time = _launcher(status)
    if not isinstance(pgid, int) or pgid <= 1 or pgid == os.getpgrp():
        return None
    try:
        leader_created = psutil.Process(pgid).create_time()
    except psutil.NoSuchProcess:
        # Linux does not reuse a process-group id while any member of the group remains.
        return pgid
    return pgid if create_time is None or abs(leader_created - create_time) <= 0.5 else None


def _job_processes(status: dict) -> list[psutil.Process]:
    """Live processes of this launch: the launcher's process group, and every process that inherited
    its launch token, which finds ranks that paddle.distributed.launch starts in sessions of their own
    (os.setsid) and children orphaned by a dead launcher."""
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


def _terminate(status: dict) -> None:
    """Cooperative stop: SIGTERM the launcher's group (paddle.distributed.launch passes it on to
    its ranks; the STOP file reaches them too)."""
    pgid = _owned_pgid(status)
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _kill_all(status: dict) -> bool:
    """SIGKILL every process of the launch; True if there was any."""
    pgid = _owned_pgid(status)
    sent = False
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
            sent = True
        except ProcessLookupError:
            pass
    for proc in _job_processes(status):
        try:
            proc.kill()
            sent = True
        except psutil.NoSuchProcess:
            pass
    return sent


def _all_gone(status: dict) -> bool:
    return not _launcher_alive(status) and not _job_processes(status)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class JobStore:
    """Jobs of one WORKDIR. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, workdir: str | os.PathLike[str], trainer_argv: TrainerArgv | None = None):
        self.workdir = Path(workdir).resolve()
        self.jobs_dir = self.workdir / "jobs"
        self.db_path = self.workdir / "studio.db"
        self.trainer_argv = trainer_argv or default_trainer_argv
        self._procs: dict[str, subprocess.Popen] = {}
        self._exit_codes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- database -------------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            yield conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._db() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
        with self._tx() as conn:
            # One row per component, so the dataset store can version its own tables in this file.
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT version FROM schema_version WHERE component = 'jobs'").fetchone()
            version = row["version"] if row else 0
            if version > len(_MIGRATIONS):
                raise JobError(
                    f"{self.db_path} has jobs schema version {version}, newer than this code "
                    f"({len(_MIGRATIONS)}); upgrade ERNIE Studio"
                )
            for statements in _MIGRATIONS[version:]:
                for sql in statements:
                    conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES ('jobs', ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (len(_MIGRATIONS),),
            )

    def journal_mode(self) -> str:
        with self._db() as conn:
            return conn.execute("PRAGMA journal_mode").fetchone()[0]

    def _row(self, job_id: str) -> sqlite3.Row:
        validate_job_id(job_id)
        with self._db() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id} in {self.db_path}")
        return row

    def _mirror(self, job_id: str, status: dict) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, pid = ?, pgid = ?, error = ?, updated = ? WHERE id = ?",
                (status.get("state"), status.get("pid"), status.get("pgid"), status.get("error"),
                 time.time(), job_id),
            )

    def _job(self, row: sqlite3.Row, status: dict | None = None) -> Job:
        job_dir = self.workdir / row["job_dir"]
        error = None
        if status is None:
            try:
                status = jobfiles.read_status(job_dir)
            except JobFileError as e:
                status, error = {}, str(e)
        return Job(
            id=row["id"],
            name=row["name"],
            state=status.get("state", row["state"]),
            job_dir=job_dir,
            created=row["created"],
            pid=status.get("pid", row["pid"]),
            pgid=status.get("pgid", row["pgid"]),
            step=status.get("step"),
            total_steps=status.get("total_steps"),
            launched=status.get("launched"),
            started=status.get("started"),
            ended=status.get("ended"),
            updated=status.get("updated"),
            error=error or status.get("error", row["error"]),
            exit_code=status.get("exit_code"),
            stop_deadline=status.get("stop_deadline"),
            config_summary=json.loads(row["config_summary"] or "{}"),
            enqueued=row["enqueued"],
            resume_when_started=bool(row["resume"]),
        )

    # -- create, list, delete -------------------------------------------------------------------

    def create_job(self, config: dict, name: str | None = None, summary: dict | None = None) -> Job:
        """Write jobs/<id>/config.yaml and status.json (queued) and add the job to the store.

        `config` must already be validated (trainer/config.py). `summary` is what the job list shows;
        by default the config's scalar values under dotted keys.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        summary = _summarise(config) if summary is None else summary
        for _attempt in range(20):
            job_id = new_job_id()
            job_dir = self.jobs_dir / job_id
            try:
                job_dir.mkdir()
            except FileExistsError:
                continue
            break
        else:
            raise JobError(f"could not find a free job id in {self.jobs_dir}")
        try:
            paths = JobPaths(job_dir)
            jobfiles.atomic_write_text(paths.config, text)
            status = jobfiles.write_status(job_dir, state=QUEUED, step=0, total_steps=None, error=None)
            created = time.time()
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO jobs (id, name, created, job_dir, state, config_summary, updated, enqueued) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, name or job_id, created, str(job_dir.relative_to(self.workdir)), QUEUED,
                     json.dumps(summary, default=str), created, created),
                )
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        return self._job(self._row(job_id), status)

    def get_job(self, job_id: str) -> Job:
        """The job as its files say now (no liveness check; use `refresh` for that)."""
        return self._job(self._row(job_id))

    def list_jobs(self, refresh: bool = True) -> list[Job]:
        """All jobs, newest first; with `refresh`, active or stopping ones are reconciled first."""
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY created DESC, id DESC").fetchall()
        jobs = []
        for row in rows:
            job = self._job(row)
            if refresh and (job.active or job.stop_deadline is not None):
                job = self.refresh(job.id)
            jobs.append(job)
        return jobs

    def delete_job(self, job_id: str) -> None:
        """Remove the job's directory and row; refuses while a trainer process belongs to it."""
        job = self.refresh(job_id)
        if job.active:
            raise JobStateError(f"job {job_id} is {job.state} (pid {job.pid}); stop it before deleting it")
        if job.job_dir.exists():
            shutil.rmtree(job.job_dir)
        with self._tx() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        with self._lock:
            self._procs.pop(job_id, None)
            self._exit_codes.pop(job_id, None)

    # -- start ----------------------------------------------------------------------------------

    def start_job(self, job_id: str, resume: bool = False) -> Job:
        """Spawn the trainer for a queued job, or with `resume` for a stopped or failed one.

        A job that `enqueue_resume` queued resumes from its checkpoint when started. The state stays
        `queued` (with `launched`, pid, pgid set) until the trainer writes `running`. Starts are
        serialised within this store, so two clicks cannot launch a job twice.
        """
        with self._start_lock:
            return self._start(job_id, resume)

    def _check_resumable(self, job: Job) -> None:
        if job.paths.last_checkpoint() is None:
            raise JobStateError(
                f"job {job.id} has no complete checkpoint in {job.paths.checkpoints} to resume from; "
                "clone it to start again"
            )

    def _start(self, job_id: str, resume: bool) -> Job:
        job = self.refresh(job_id)
        paths = job.paths
        if job.active:
            raise JobStateError(f"job {job_id} is already {job.state} (pid {job.pid})")
        if resume:
            if job.state not in (STOPPED, FAILED):
                raise JobStateError(f"job {job_id} is {job.state}; only a stopped or failed job can be resumed")
            self._check_resumable(job)
        elif job.state != QUEUED:
            raise JobStateError(f"job {job_id} is {job.state}; resume it or clone it to run it again")
        elif job.resume_when_started:
            self._check_resumable(job)
            resume = True

        config = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
        argv = [str(a) for a in self.trainer_argv(paths, config, resume)]
        jobfiles.clear_stop(paths.dir)
        jobfiles.write_status(
            paths.dir, state=QUEUED, launched=None, pid=None, pgid=None, launcher_pid=None,
            launcher_create_time=None, launch_token=None, exit_code=None, ended=None, error=None,
            stop_requested=None, stop_deadline=None,
        )
        token = f"{job_id}-{secrets.token_hex(8)}"
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{LAUNCH_ENV: token})
        with open(paths.log, "ab") as log:
            log.write(f"[studio] {time.strftime('%Y-%m-%d %H:%M:%S')} launching: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                )
            except OSError as e:
                self._dequeue(job_id)
                status = jobfiles.write_status(
                    paths.dir, state=FAILED, ended=time.time(), error=f"could not start the trainer {argv[0]!r}: {e}"
                )
                self._mirror(job_id, status)
                raise JobError(status["error"]) from e
        self._dequeue(job_id)
        # start_new_session makes the child the leader of a new session and process group.
        pid = pgid = proc.pid
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            create_time = None
        status = jobfiles.write_status(
            paths.dir, launched=time.time(), pid=pid, pgid=pgid, launcher_pid=pid,
            launcher_create_time=create_time, launch_token=token,
        )
        self._mirror(job_id, status)
        with self._lock:
            self._procs[job_id] = proc
            self._exit_codes.pop(job_id, None)
        # Reap the child as soon as it exits, so it never lingers as a zombie; nothing else depends on it.
        threading.Thread(target=self._wait_child, args=(job_id, proc), daemon=True,
                         name=f"reap-{job_id}").start()
        return self.refresh(job_id)

    def _dequeue(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET enqueued = NULL, resume = 0 WHERE id = ?", (job_id,))

    def enqueue_resume(self, job_id: str) -> Job:
        """Put a stopped or failed job back in the queue; the scheduler resumes it from its last
        complete checkpoint when its devices are free."""
        with self._start_lock:
            job = self.refresh(job_id)
            if job.state not in (STOPPED, FAILED):
                raise JobStateError(f"job {job_id} is {job.state}; only a stopped or failed job can be resumed")
            self._check_resumable(job)
            jobfiles.clear_stop(job.job_dir)
            status = jobfiles.write_status(
                job.job_dir, state=QUEUED, launched=None, pid=None, pgid=None, launcher_pid=None,
                launcher_create_time=None, launch_token=None, exit_code=None, ended=None, error=None,
                stop_requested=None, stop_deadline=None,
            )
            with self._tx() as conn:
                conn.execute("UPDATE jobs SET enqueued = ?, resume = 1 WHERE id = ?", (time.time(), job_id))
            self._mirror(job_id, status)
            return self.get_job(job_id)

    def queue(self) -> list[Job]:
        """Jobs waiting to be started, first in line first."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE state = ? AND enqueued IS NOT NULL ORDER BY enqueued, id", (QUEUED,)
            ).fetchall()
        return [job for job in (self._job(row) for row in rows) if job.waiting]

    def fail_waiting(self, job_id: str, error: str) -> Job:
        """Take a job that cannot be started out of the queue, marked failed with `error`."""
        job_dir = self.get_job(job_id).job_dir
        self._dequeue(job_id)
        status = jobfiles.write_status(job_dir, state=FAILED, ended=time.time(), error=error)
        self._mirror(job_id, status)
        return self.get_job(job_id)

    def _wait_child(self, job_id: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._lock:
            if self._procs.get(job_id) is proc:
                self._exit_codes[job_id] = code
                del self._procs[job_id]

    # -- watch ----------------------------------------------------------------------------------

    def refresh(self, job_id: str) -> Job:
        """Re-read status.json and reconcile it with the processes.

        - a launched/running/stopping job whose launcher process is gone (missing, zombie, or its pid
          reused) becomes `failed`, with the tail of train.log as its error; leftover processes of the
          launch are killed;
        - once a stop is past its deadline, whatever is left of the launch is SIGKILLed, and a
          job that had not reported `stopped` becomes `stopped` with the error "did not stop ...".
        """
        row = self._row(job_id)
        paths = JobPaths(self.workdir / row["job_dir"])
        try:
            status = jobfiles.read_status(paths.dir)
        except JobFileError:
            return self._job(row)
        deadline = status.get("stop_deadline")
        live = _is_launched_live(status)
        if deadline is not None and (time.time() >= deadline or (not live and _all_gone(status))):
            status = self._enforce_stop(job_id, paths, status)
        elif live and not _launcher_alive(status):
            status = self._mark_dead(job_id, paths, status)
        if row["state"] != status.get("state") or row["pid"] != status.get("pid"):
            self._mirror(job_id, status)
        return self._job(row, status)

    def reap(self) -> list[Job]:
        """One watch tick for the UI: refresh every active job (detect deaths, enforce stop deadlines)."""
        return [job for job in self.list_jobs(refresh=True) if job.active]

    def _exit_code(self, job_id: str) -> int | None:
        """The exit code if this store launched the job and it has exited (not after a UI restart)."""
        with self._lock:
            code = self._exit_codes.get(job_id)
            proc = self._procs.get(job_id)
        if code is None and proc is not None:
            try:
                code = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        return code

    def _mark_dead(self, job_id: str, paths: JobPaths, status: dict) -> dict:
        # The launcher is gone, but ranks or children may remain (e.g. it was OOM-killed): end them.
        _kill_all(status)
        error = self._dead_error(job_id, paths, status)

        def change(current: dict) -> dict | None:
            # The trainer may have written its final state between our read and now.
            if not _is_launched_live(current):
                return None
            return {"state": FAILED, "ended": time.time(), "error": error, "exit_code": self._exit_code(job_id)}

        return jobfiles.update_status(paths.dir, change)

    def _dead_error(self, job_id: str, paths: JobPaths, status: dict) -> str:
        code = self._exit_code(job_id)
        if code is None:
            reason = f"the trainer process {status.get('pid')} is gone without reporting a final state"
        elif code < 0:
            reason = f"the trainer was killed by {_signal_name(code)} without reporting a final state"
        else:
            reason = f"the trainer exited with code {code} without reporting a final state"
        tail = jobfiles.tail_text(paths.log, max_bytes=16000, max_lines=LOG_TAIL_LINES)
        return f"{reason}; last lines of train.log:\n{tail}" if tail else f"{reason}; train.log is empty"

    def _enforce_stop(self, job_id: str, paths: JobPaths, status: dict) -> dict:
        """The stop deadline has passed: SIGKILL what is left of the launch, once."""
        killed = not _all_gone(status) and _kill_all(status)
        if killed:
            self._wait_gone(status, timeout_s=5.0)
        grace = status.get("stop_grace_s")
        waited = f"{grace:g}s" if isinstance(grace, (int, float)) else "the grace period"

        def change(current: dict) -> dict:
            # Clearing the deadline makes this a one-time step: a finished job's group id could
            # later belong to someone else.
            fields: dict[str, Any] = {"stop_deadline": None}
            if _is_launched_live(current):
                if killed:
                    fields.update(state=STOPPED, error=f"did not stop within {waited}; killed")
                else:
                    fields.update(state=FAILED, error=self._dead_error(job_id, paths, current))
                fields.update(ended=time.time(), exit_code=self._exit_code(job_id))
            return fields

        return jobfiles.update_status(paths.dir, change)

    @staticmethod
    def _wait_gone(status: dict, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        # Polling the launcher is cheap; the scan for stragglers reads every process's environment.
        while _launcher_alive(status):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        while _job_processes(status):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_SCAN_POLL_S)
        return True

    # -- stop -----------------------------------------------------------------------------------

    def request_stop(self, job_id: str, grace_s: float = 30.0) -> Job:
        """Ask the job to stop and return at once; a later `refresh`/`reap` enforces `grace_s`.

        A queued job that was never launched becomes `stopped` straight away; a finished job is
        returned unchanged, so a second click on Stop is harmless. A second request can only
        shorten the deadline.
        """
        job = self.refresh(job_id)
        paths = job.paths
        if not job.active:
            if job.state == QUEUED:
                self._dequeue(job_id)
                status = jobfiles.write_status(paths.dir, state=STOPPED, ended=time.time())
                self._mirror(job_id, status)
                return self._job(self._row(job_id), status)
            return job
        jobfiles.request_stop(paths.dir)
        now = time.time()

        def change(current: dict) -> dict | None:
            if not _is_launched_live(current):
                return None
            fields: dict[str, Any] = {"state": STOPPING}
            deadline = current.get("stop_deadline")
            if deadline is None or now + grace_s < deadline:
                fields.update(stop_requested=now, stop_deadline=now + grace_s, stop_grace_s=grace_s)
            return fields

        status = jobfiles.update_status(paths.dir, change)
        _terminate(status)
        self._mirror(job_id, status)
        return self._job(self._row(job_id), status)

    def stop_job(self, job_id: str, grace_s: float = 30.0) -> Job:
        """Stop the job and wait: SIGTERM, then after `grace_s` SIGKILL every process of the launch left."""
        job = self.request_stop(job_id, grace_s)
        status = jobfiles.read_status(job.job_dir)
        deadline = status.get("stop_deadline")
        if deadline is None:
            return job
        if not self._wait_gone(status, timeout_s=max(0.0, deadline - time.time())):
            self._enforce_stop(job_id, job.paths, jobfiles.read_status(job.job_dir))
        return self.refresh(job_id)


# -- the queue ---------------------------------------------------------------------------------------


def job_devices(config: Any) -> frozenset[str]:
    """The devices a job occupies on this machine: {"cpu"}, or {"gpu:0", "gpu:1"} for devices.gpu_ids 0,1."""
    devices = config.get("devices") if isinstance(config, dict) else None
    devices = devices if isinstance(devices, dict) else {}
    if devices.get("device") == "gpu":
        ids = [part.strip() for part in str(devices.get("gpu_ids") or "").split(",") if part.strip()]
        return frozenset(f"gpu:{i}" for i in ids) or frozenset({"gpu"})
    return frozenset({"cpu"})


class JobScheduler:
    """Starts queued jobs, oldest first, when the devices they need are free.

    `tick()` is one pass: it reconciles active jobs (deaths, stop deadlines), counts the jobs on each
    device, and starts every waiting job whose devices all have room (`max_per_device` jobs each). A
    waiting job reserves its devices, so a later job cannot overtake it on them. Ticks are serialised
    across processes by a lock file, so two apps on one WORKDIR never start a job twice.
    `start()` runs ticks in a daemon thread every `interval_s`, and at once after `kick()`.
    """

    def __init__(self, store: JobStore, max_per_device: int = 1, interval_s: float = 1.0):
        if max_per_device < 1:
            raise ValueError(f"max_per_device must be at least 1, got {max_per_device}")
        self.store = store
        self.max_per_device = max_per_device
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_path = store.workdir / "scheduler.lock"

    def _config(self, job: Job) -> dict:
        return yaml.safe_load(job.paths.config.read_text(encoding="utf-8")) or {}

    def tick(self) -> list[Job]:
        """One scheduling pass; returns the jobs it started."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return self._tick()
        finally:
            os.close(fd)

    def _tick(self) -> list[Job]:
        busy: Counter = Counter()
        for job in self.store.reap():
            try:
                busy.update(job_devices(self._config(job)))
            except (OSError, yaml.YAMLError):
                busy.update({"cpu"})
        started = []
        for job in self.store.queue():
            try:
                devices = job_devices(self._config(job))
            except (OSError, yaml.YAMLError) as e:
                self.store.fail_waiting(job.id, f"cannot read {job.paths.config}: {e}")
                continue
            if any(busy[d] >= self.max_per_device for d in devices):
                for d in devices:
                    busy[d] = max(busy[d], self.max_per_device)
                continue
            try:
                started.append(self.store.start_job(job.id))
            except JobStateError as e:
                self.store.fail_waiting(job.id, str(e))
                continue
            except JobError:
                continue  # start_job has marked it failed with the reason
            busy.update(devices)
        return started

    def kick(self) -> None:
        """Run a tick now (after a job was queued, stopped or finished)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the scheduler must outlive one bad pass
                print(f"[studio] scheduler pass failed: {e.__class__.__name__}: {e}", flush=True)
            self._wake.wait(self.interval_s)
            self._wake.clear()
