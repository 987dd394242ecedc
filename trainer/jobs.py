"""The job store: create, launch, watch, stop, list and delete jobs.

The store is SQLite at WORKDIR/studio.db (WAL); the truth about a job's progress is its directory
(status.json and friends, see trainer/jobfiles.py), which the store mirrors on `refresh`. Each job
runs as `python -m trainer run JOB/config.yaml --job-dir JOB`, detached from the UI
(trainer/processes.py), so the UI can restart and adopt it again from the store: nothing here
relies on a Popen handle being present. Never imports paddle.

The launcher records in status.json `launcher_pid`/`launcher_create_time` (the process it spawned;
liveness is judged on it, so a trainer may rewrite `pid`/`pgid` with rank 0's) and `launch_token`,
which finds every process of the launch.

Stopping: `request_stop` (non-blocking) writes the STOP file, SIGTERMs the process group, sets
`stopping` and records `stop_deadline` in status.json; any later `refresh`/`reap` past the deadline
SIGKILLs the whole launch and marks the job `stopped` with an error. `stop_job` does the same and
waits. A job whose process is gone without a terminal state is marked `failed` with its log tail.

Queued jobs: a new job is `queued` with an `enqueued` time in the store; `enqueue_resume` puts a
stopped or failed job back in the queue to continue from its checkpoint. trainer/scheduler.py
decides when each starts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from plumbing import sqlite
from plumbing.files import atomic_write_text, tail_text
from trainer import jobfiles, processes
from trainer.eval_jobs import eval_argv, is_eval_config
from trainer.jobfiles import ACTIVE_STATES, FAILED, QUEUED, STOPPED, STOPPING, JobFileError, JobPaths

JOB_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
LOG_TAIL_LINES = 40

# Each entry upgrades the jobs schema by one version (plumbing.sqlite.migrate); append, never edit.
MIGRATIONS: list[list[str]] = [
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


# status.json of a job about to be launched again: queued, with nothing left of its last launch.
_REQUEUED = dict(state=QUEUED, launched=None, pid=None, pgid=None, launcher_pid=None, launcher_create_time=None,
                 launch_token=None, exit_code=None, ended=None, error=None, stop_requested=None,
                 stop_deadline=None, resumed=None)

TrainerArgv = Callable[[JobPaths, dict, bool], Sequence[str]]


def default_trainer_argv(paths: JobPaths, config: dict, resume: bool) -> list[str]:
    """`python -m trainer run JOB/config.yaml --job-dir JOB [--resume]`, under
    `paddle.distributed.launch` when the config asks for more than one process; for an evaluation
    job `python -m trainer eval --config JOB/config.yaml --job-dir JOB`."""
    from trainer.config import command_preview, from_dict

    if is_eval_config(config):
        return eval_argv(paths.config, paths.dir)

    # the trainer checks the config against the machine itself as it starts (trainer/cli.py)
    return command_preview(from_dict(config, local=False), paths.config, paths.dir, resume=resume)


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

    def _db(self):
        return sqlite.connect(self.db_path)

    def _tx(self):
        return sqlite.transaction(self.db_path)

    def _migrate(self) -> None:
        try:
            sqlite.migrate(self.db_path, "jobs", MIGRATIONS)
        except sqlite.SchemaTooNew as e:
            raise JobError(str(e)) from None

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
            atomic_write_text(paths.config, text)
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
        if is_eval_config(job.paths.read_config()):
            raise JobStateError(f"job {job.id} is an evaluation: it has no checkpoint to resume from; "
                                "start the evaluation again")
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

        argv = [str(a) for a in self.trainer_argv(paths, paths.read_config(), resume)]
        jobfiles.clear_stop(paths.dir)
        jobfiles.write_status(paths.dir, **_REQUEUED)
        token = f"{job_id}-{secrets.token_hex(8)}"
        try:
            proc = processes.spawn_detached(argv, paths.log, env={processes.LAUNCH_ENV: token})
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
        status = jobfiles.write_status(
            paths.dir, launched=time.time(), pid=pid, pgid=pgid, launcher_pid=pid,
            launcher_create_time=processes.create_time(pid), launch_token=token,
            resumed=resume,  # the other nodes of a multi-node job must resume too (trainer/nodes.py)
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
            status = jobfiles.write_status(job.job_dir, **_REQUEUED)
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
        if deadline is not None and (time.time() >= deadline or (not live and processes.all_gone(status))):
            status = self._enforce_stop(job_id, paths, status)
        elif live and not processes.launcher_alive(status):
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
        processes.kill_all(status)
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
            reason = f"the trainer was killed by {processes.signal_name(code)} without reporting a final state"
        else:
            reason = f"the trainer exited with code {code} without reporting a final state"
        tail = tail_text(paths.log, max_bytes=16000, max_lines=LOG_TAIL_LINES)
        return f"{reason}; last lines of train.log:\n{tail}" if tail else f"{reason}; train.log is empty"

    def _enforce_stop(self, job_id: str, paths: JobPaths, status: dict) -> dict:
        """The stop deadline has passed: SIGKILL what is left of the launch, once."""
        killed = not processes.all_gone(status) and processes.kill_all(status)
        if killed:
            processes.wait_gone(status, timeout_s=5.0)
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

    # -- stop -----------------------------------------------------------------------------------

    def request_stop(self, job_id: str, grace_s: float = 30.0) -> Job:
        """Ask the job to stop and return at once; a later `refresh`/`reap` enforces `grace_s`.

        A queued job that was never launched becomes `stopped` straight away, and so does one
        launched whose trainer has not reported running (`_end_unstarted`); a finished job is
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
        if job.state == QUEUED:
            return self._end_unstarted(job)
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
        processes.terminate(status)
        self._mirror(job_id, status)
        return self._job(self._row(job_id), status)

    def _end_unstarted(self, job: Job) -> Job:
        """Stop a launch whose trainer has not reported running yet, such as a multi-node launch
        waiting for its other nodes: it has no step to finish, so it is killed at once and marked
        stopped. (SIGTERMed while it waits, paddle's launcher exits with 15 and no final state, and
        was seen to hang.) The STOP file makes a trainer that is starting right now stop at once."""
        jobfiles.request_stop(job.job_dir)
        status = jobfiles.read_status(job.job_dir)
        processes.kill_all(status)
        processes.wait_gone(status, timeout_s=5.0)

        def change(current: dict) -> dict | None:
            if not _is_launched_live(current):
                return None
            return {"state": STOPPED, "ended": time.time(), "exit_code": self._exit_code(job.id)}

        status = jobfiles.update_status(job.job_dir, change)
        self._mirror(job.id, status)
        return self._job(self._row(job.id), status)

    def stop_job(self, job_id: str, grace_s: float = 30.0) -> Job:
        """Stop the job and wait: SIGTERM, then after `grace_s` SIGKILL every process of the launch left."""
        job = self.request_stop(job_id, grace_s)
        status = jobfiles.read_status(job.job_dir)
        deadline = status.get("stop_deadline")
        if deadline is None:
            return job
        if not processes.wait_gone(status, timeout_s=max(0.0, deadline - time.time())):
            self._enforce_stop(job_id, job.paths, jobfiles.read_status(job.job_dir))
        return self.refresh(job_id)
