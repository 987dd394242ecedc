"""Tests of the job directory contract (trainer/jobfiles.py) and the launcher (trainer/jobs.py).

The trainer here is tests/fake_trainer.py, which speaks the same file protocol in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time

import psutil
import pytest
import yaml

from tests.browser_helpers import wait_until
from plumbing import files
from trainer import jobfiles, jobs, processes
from trainer.scheduler import JobScheduler, job_devices
from trainer.jobfiles import JobPaths, LogTail, MetricsTail
from trainer.jobs import InvalidJobId, JobNotFound, JobStateError, JobStore


def fake_argv(paths: JobPaths, config: dict, resume: bool) -> list[str]:
    argv = [sys.executable, "-m", "tests.fake_trainer", "run", str(paths.config), "--job-dir", str(paths.dir)]
    return argv + ["--resume"] if resume else argv


def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    return wait_until(predicate, timeout_s, what, interval_s=0.02)


def wait_state(store: JobStore, job_id: str, states, timeout_s: float = 15.0) -> jobs.Job:
    states = {states} if isinstance(states, str) else set(states)
    holder = {}

    def check():
        holder["job"] = store.refresh(job_id)
        return holder["job"].state in states

    try:
        wait_for(check, timeout_s, f"state in {sorted(states)}")
    except AssertionError as e:
        job = holder.get("job")
        raise AssertionError(f"{e}; last state {job and job.state}, error {job and job.error}") from None
    return holder["job"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_alive(pgid: int) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "ws", trainer_argv=fake_argv)
    yield s
    # Never leave a fake trainer or its child behind, whatever a test did.
    tokens = {jobfiles.read_status(d).get("launch_token") for d in (tmp_path / "ws" / "jobs").iterdir()}
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(processes.LAUNCH_ENV) in tokens - {None}:
                proc.kill()
        except (psutil.Error, OSError):
            continue


def fake_config(**fake) -> dict:
    return {"model": {"name": "tiny-moe"}, "method": "sft", "fake": fake}


# -- jobfiles ----------------------------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "status.json"
    files.atomic_write_json(target, {"a": 1})
    files.atomic_write_json(target, {"a": 2, "b": "ü"})
    files.atomic_write_text(tmp_path / "config.yaml", "x: 1\n")
    assert json.loads(target.read_text()) == {"a": 2, "b": "ü"}
    with pytest.raises(TypeError):
        files.atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"a": 2, "b": "ü"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "status.json"]


def test_status_merges_and_missing_or_corrupt_status(tmp_path):
    assert jobfiles.read_status(tmp_path) == {}
    jobfiles.write_status(tmp_path, state="queued", step=0)
    status = jobfiles.write_status(tmp_path, step=3)
    assert status["state"] == "queued" and status["step"] == 3 and status["updated"] > 0
    assert jobfiles.read_status(tmp_path) == status
    with pytest.raises(ValueError, match="unknown job state 'sleeping'"):
        jobfiles.write_status(tmp_path, state="sleeping")
    JobPaths(tmp_path).status.write_text("{not json")
    with pytest.raises(jobfiles.JobFileError, match="status.json is not valid JSON"):
        jobfiles.read_status(tmp_path)


def test_metrics_tail_offsets_and_partial_lines(tmp_path):
    tail = MetricsTail(JobPaths(tmp_path).metrics)
    assert tail.read() == []
    jobfiles.append_metrics(tmp_path, {"step": 1, "loss": 2.0})
    jobfiles.append_metrics(tmp_path, {"step": 2, "loss": 1.5})
    assert [r["step"] for r in tail.read()] == [1, 2]
    assert tail.read() == []
    offset = tail.offset
    assert offset == JobPaths(tmp_path).metrics.stat().st_size
    with open(JobPaths(tmp_path).metrics, "ab") as f:
        f.write(b'{"step": 3, "lo')
        f.flush()
        assert tail.read() == [] and tail.offset == offset
        f.write(b'ss": 1.0}\n{"step": 4}\nnot json\n')
    assert [r["step"] for r in tail.read()] == [3, 4]
    assert tail.bad_lines == 1
    # A second reader starting from a saved offset sees only what follows it.
    assert [r["step"] for r in MetricsTail(JobPaths(tmp_path).metrics, offset=offset).read()] == [3, 4]


def test_log_tail_decodes_with_replacement_and_tail_text(tmp_path):
    log = JobPaths(tmp_path).log
    tail = LogTail(log)
    log.write_bytes(b"first\r\nbad \xff byte\npartial")
    assert tail.read() == ["first", "bad \ufffd byte"]
    with open(log, "ab") as f:
        f.write(b" line\n")
    assert tail.read() == ["partial line"]
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)))
    text = files.tail_text(log, max_bytes=200)
    assert text.endswith("line 999") and text.splitlines()[0].startswith("line ")
    assert files.tail_text(log, max_lines=3) == "line 997\nline 998\nline 999"
    assert files.tail_text(tmp_path / "missing.log") == ""


def test_last_checkpoint_ignores_incomplete(tmp_path):
    paths = JobPaths(tmp_path)
    assert paths.last_checkpoint() is None
    for step in (5, 10):
        paths.checkpoint_dir(step).mkdir(parents=True)
        (paths.checkpoint_dir(step) / "weights.bin").write_bytes(b"x")
        jobfiles.mark_checkpoint_complete(paths.checkpoint_dir(step))
    paths.checkpoint_dir(15).mkdir()  # half-written: no marker
    (paths.checkpoints / "checkpoint-x").mkdir()
    assert paths.last_checkpoint() == paths.checkpoint_dir(10)
    assert (paths.checkpoint_dir(10) / jobfiles.CHECKPOINT_COMPLETE_MARKER).is_file()


def test_stop_file(tmp_path):
    assert not jobfiles.stop_requested(tmp_path)
    jobfiles.request_stop(tmp_path)
    assert jobfiles.stop_requested(tmp_path)
    jobfiles.clear_stop(tmp_path)
    assert not jobfiles.stop_requested(tmp_path)


# -- store -------------------------------------------------------------------------------------------


def test_create_job_writes_config_and_status(store):
    config = fake_config(steps=3)
    job = store.create_job(config, name="first")
    assert jobs.JOB_ID_RE.fullmatch(job.id)
    assert job.state == "queued" and job.name == "first" and not job.active
    assert yaml.safe_load(job.paths.config.read_text()) == config
    assert jobfiles.read_status(job.job_dir)["state"] == "queued"
    assert job.config_summary == {"model.name": "tiny-moe", "method": "sft", "fake.steps": 3}
    assert store.get_job(job.id).config_summary == job.config_summary


def test_invalid_ids_are_refused(store):
    for bad in ["../etc", "x", "", "20261123-011500-AB12", "20261123-011500-ab12/..",
                "20261123-011500-ab12\n", "\uff120261123-011500-ab12", None, 5]:
        for call in (store.get_job, store.start_job, store.refresh, store.delete_job, store.stop_job):
            with pytest.raises(InvalidJobId):
                call(bad)
    with pytest.raises(JobNotFound, match="no job 20261123-011500-ab12"):
        store.get_job("20261123-011500-ab12")


def test_store_survives_reopening_and_uses_wal(store):
    a = store.create_job(fake_config(), name="a")
    b = store.create_job(fake_config(), name="b")
    reopened = JobStore(store.workdir, trainer_argv=fake_argv)
    assert [j.id for j in reopened.list_jobs()] == [b.id, a.id]
    assert reopened.get_job(a.id).name == "a"
    assert reopened.journal_mode() == "wal"
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version WHERE component = 'jobs'").fetchone()[0] == \
            len(jobs.MIGRATIONS)


# -- launcher ----------------------------------------------------------------------------------------


def test_start_runs_to_completed(store):
    job = store.create_job(fake_config(steps=5))
    started = store.start_job(job.id)
    assert started.pid and started.pgid == started.pid and started.launched
    assert started.state in ("queued", "running", "completed")
    done = wait_state(store, job.id, "completed")
    assert done.step == 5 and done.total_steps == 5 and done.error is None
    assert [r["step"] for r in MetricsTail(job.paths.metrics).read()] == [1, 2, 3, 4, 5]
    log = job.paths.log.read_text()
    assert "[studio]" in log and "fake trainer: completed" in log
    assert (job.paths.output / "model.txt").exists()
    wait_for(lambda: not alive(started.pid), 5, "the trainer to be reaped")
    with pytest.raises(JobStateError, match="resume it or clone it"):
        store.start_job(job.id)


def test_stop_mid_run_saves_checkpoint_then_resume_continues(store):
    job = store.create_job(fake_config(steps=30, step_s=0.05))
    store.start_job(job.id)
    wait_for(lambda: (store.refresh(job.id).step or 0) >= 3, 15, "3 steps")
    stopped = store.stop_job(job.id, grace_s=10)
    assert stopped.state == "stopped" and stopped.error is None, stopped.error
    ckpt = job.paths.last_checkpoint()
    assert ckpt is not None and jobfiles.checkpoint_step(ckpt) == stopped.step >= 3
    assert not group_alive(stopped.pgid)

    tail = MetricsTail(job.paths.metrics)
    tail.read()
    resumed = store.start_job(job.id, resume=True)
    assert resumed.error is None and not jobfiles.stop_requested(job.job_dir)
    done = wait_state(store, job.id, "completed")
    assert done.step == 30
    new_steps = [r["step"] for r in tail.read()]
    assert new_steps[0] == stopped.step + 1 and new_steps[-1] == 30
    assert "running from step %d" % stopped.step in job.paths.log.read_text()


def test_resume_needs_a_checkpoint(store):
    job = store.create_job(fake_config(exit_code=3))
    store.start_job(job.id)
    failed = wait_state(store, job.id, "failed")
    assert "exited with code 3" in failed.error and "crashing on purpose" in failed.error
    with pytest.raises(JobStateError, match="no complete checkpoint"):
        store.start_job(job.id, resume=True)


@pytest.mark.parametrize("child_session", [False, True], ids=["child-in-group", "child-in-own-session"])
def test_sigterm_ignoring_trainer_and_child_are_killed_after_grace(store, child_session):
    job = store.create_job(fake_config(hang=True, ignore_stop=True, spawn_child=True, child_session=child_session))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    child_pid = int(wait_for(lambda: (job.job_dir / "child.pid").exists() and
                             (job.job_dir / "child.pid").read_text(), 10, "child.pid"))
    assert alive(child_pid) and (os.getpgid(child_pid) == started.pgid) != child_session
    t0 = time.monotonic()
    stopped = store.stop_job(job.id, grace_s=1)
    assert 0.9 <= time.monotonic() - t0 < 60  # the upper bound only catches a stop that never ends
    assert stopped.state == "stopped"
    assert stopped.error == "did not stop within 1s; killed"
    assert group_alive(started.pgid) == []
    assert not alive(started.pid) and not alive(child_pid)


def test_child_left_by_a_cooperative_stop_is_killed_after_the_grace_period(store):
    job = store.create_job(fake_config(hang=True, spawn_child=True))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    child_pid = int(wait_for(lambda: (job.job_dir / "child.pid").exists() and
                             (job.job_dir / "child.pid").read_text(), 10, "child.pid"))
    store.request_stop(job.id, grace_s=0.5)
    stopped = wait_state(store, job.id, "stopped")
    assert stopped.error is None and job.paths.last_checkpoint() is not None
    time.sleep(0.6)
    store.reap()
    wait_for(lambda: not alive(child_pid), 5, "the child to be killed")
    assert group_alive(started.pgid) == []
    assert store.get_job(job.id).stop_deadline is None


def test_non_blocking_stop_is_enforced_by_reap_after_restart(store):
    job = store.create_job(fake_config(hang=True, ignore_stop=True))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    stopping = store.request_stop(job.id, grace_s=0.5)
    assert stopping.state == "stopping" and jobfiles.stop_requested(job.job_dir)
    # A new store (the UI restarted) has no Popen handle and must still enforce the deadline.
    restarted = JobStore(store.workdir, trainer_argv=fake_argv)
    assert restarted.refresh(job.id).state == "stopping"
    time.sleep(0.6)
    assert [j.id for j in restarted.reap()] == []
    final = restarted.get_job(job.id)
    assert final.state == "stopped" and "killed" in final.error
    assert group_alive(started.pgid) == []


def test_sigkilled_trainer_is_reported_failed_with_log_tail(store):
    job = store.create_job(fake_config(hang=True))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    os.kill(started.pid, signal.SIGKILL)
    failed = wait_state(store, job.id, "failed", timeout_s=10)
    assert "SIGKILL" in failed.error
    assert "fake trainer: running from step 0" in failed.error
    assert failed.ended is not None
    # After a UI restart, without the Popen handle, the state is the same.
    again = JobStore(store.workdir, trainer_argv=fake_argv).refresh(job.id)
    assert again.state == "failed" and "fake trainer: running" in again.error


def test_orphans_of_a_sigkilled_launcher_are_killed(store):
    job = store.create_job(fake_config(hang=True, spawn_child=True, child_session=True))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    child_pid = int(wait_for(lambda: (job.job_dir / "child.pid").exists() and
                             (job.job_dir / "child.pid").read_text(), 10, "child.pid"))
    os.kill(started.pid, signal.SIGKILL)
    failed = wait_state(JobStore(store.workdir, trainer_argv=fake_argv), job.id, "failed", timeout_s=10)
    assert "is gone" in failed.error or "SIGKILL" in failed.error
    wait_for(lambda: not alive(child_pid), 5, "the orphaned child to be killed")


def test_trainer_rewriting_pid_is_still_watched_by_its_launcher(store):
    job = store.create_job(fake_config(hang=True))
    started = store.start_job(job.id)
    wait_state(store, job.id, "running")
    # As train.py does under paddle.distributed.launch: rank 0 records its own pid and pgid.
    jobfiles.write_status(job.job_dir, pid=os.getpid(), pgid=os.getpgrp())
    assert store.refresh(job.id).state == "running"
    stopped = store.stop_job(job.id, grace_s=10)
    assert stopped.state == "stopped" and stopped.error is None
    assert not alive(started.pid) and alive(os.getpid())


def test_dead_process_found_after_restart_and_pid_reuse(store):
    job = store.create_job(fake_config())
    job.paths.log.write_text("Traceback (most recent call last):\nRuntimeError: out of memory\n")
    # The pid exists (this test process) but was created at another time: a reused pid, not the trainer.
    jobfiles.write_status(job.job_dir, state="running", pid=os.getpid(), pgid=os.getpgrp(),
                          launcher_pid=os.getpid(), launcher_create_time=1.0, launched=time.time())
    failed = JobStore(store.workdir, trainer_argv=fake_argv).refresh(job.id)
    assert failed.state == "failed"
    assert "is gone" in failed.error and "RuntimeError: out of memory" in failed.error
    assert alive(os.getpid())


def test_delete_refuses_active_job_and_removes_finished_one(store):
    job = store.create_job(fake_config(hang=True))
    store.start_job(job.id)
    wait_state(store, job.id, "running")
    with pytest.raises(JobStateError, match="stop it before deleting it"):
        store.delete_job(job.id)
    with pytest.raises(JobStateError, match="already running"):
        store.start_job(job.id)
    assert store.stop_job(job.id, grace_s=10).state == "stopped"
    store.delete_job(job.id)
    assert not job.job_dir.exists()
    with pytest.raises(JobNotFound):
        store.get_job(job.id)
    assert store.list_jobs() == []


def test_stop_of_queued_job_and_failed_launch(tmp_path):
    store = JobStore(tmp_path / "ws", trainer_argv=lambda p, c, r: ["/nonexistent/trainer-binary"])
    queued = store.create_job(fake_config())
    assert store.request_stop(queued.id).state == "stopped"
    job = store.create_job(fake_config())
    with pytest.raises(jobs.JobError, match="could not start the trainer '/nonexistent/trainer-binary'"):
        store.start_job(job.id)
    failed = store.get_job(job.id)
    assert failed.state == "failed" and "could not start the trainer" in failed.error


# -- queue -------------------------------------------------------------------------------------------


def gpu_config(ids: str, **fake) -> dict:
    return {**fake_config(**fake), "devices": {"device": "gpu", "gpu_ids": ids}}


def test_job_devices():
    assert job_devices({}) == {"cpu"}
    assert job_devices({"devices": {"device": "cpu", "gpu_ids": "0"}}) == {"cpu"}
    assert job_devices(gpu_config("0,1")) == {"gpu:0", "gpu:1"}
    assert job_devices(gpu_config("")) == {"gpu"}


def test_queue_runs_one_job_per_device_in_order(store):
    scheduler = JobScheduler(store)
    created = [store.create_job(fake_config(steps=4, step_s=0.05), name=f"j{i}") for i in range(3)]
    assert [j.id for j in store.queue()] == [j.id for j in created]
    assert all(j.waiting for j in store.queue())
    launched = []
    deadline = time.monotonic() + 30
    while len(launched) < 3:
        assert time.monotonic() < deadline, f"only {launched} started"
        launched += [j.id for j in scheduler.tick()]
        assert sum(j.active for j in store.list_jobs()) <= 1
        time.sleep(0.02)
    assert launched == [j.id for j in created]
    for job in created:
        wait_state(store, job.id, "completed")
    assert store.queue() == [] and scheduler.tick() == []


def test_jobs_on_different_gpus_run_together_and_a_waiting_job_is_not_overtaken(store):
    scheduler = JobScheduler(store)
    on_0 = store.create_job(gpu_config("0", hang=True))
    on_1 = store.create_job(gpu_config("1", hang=True))
    on_both = store.create_job(gpu_config("0,1", steps=2))
    on_1_later = store.create_job(gpu_config("1", steps=2))
    assert [j.id for j in scheduler.tick()] == [on_0.id, on_1.id]
    store.stop_job(on_1.id, grace_s=10)
    # gpu 1 is free, but the older job waiting for gpus 0 and 1 holds it.
    assert scheduler.tick() == []
    store.stop_job(on_0.id, grace_s=10)
    assert [j.id for j in scheduler.tick()] == [on_both.id]
    wait_state(store, on_both.id, "completed")
    assert [j.id for j in scheduler.tick()] == [on_1_later.id]


def test_queue_and_running_job_survive_a_restart(store):
    running = store.create_job(fake_config(steps=15, step_s=0.1))
    waiting = store.create_job(fake_config(steps=2))
    assert [j.id for j in JobScheduler(store).tick()] == [running.id]
    wait_state(store, running.id, "running")
    # The app restarts: a new store and scheduler, no Popen handles, the same WORKDIR.
    restarted = JobStore(store.workdir, trainer_argv=fake_argv)
    scheduler = JobScheduler(restarted)
    assert [j.id for j in restarted.queue()] == [waiting.id]
    assert scheduler.tick() == []
    assert restarted.refresh(running.id).state == "running"
    wait_state(restarted, running.id, "completed")
    assert [j.id for j in scheduler.tick()] == [waiting.id]
    wait_state(restarted, waiting.id, "completed")


def test_enqueue_resume_continues_from_the_checkpoint(store):
    scheduler = JobScheduler(store)
    job = store.create_job(fake_config(steps=30, step_s=0.05))
    scheduler.tick()
    wait_for(lambda: (store.refresh(job.id).step or 0) >= 3, 15, "3 steps")
    stopped = store.stop_job(job.id, grace_s=10)
    queued = store.enqueue_resume(job.id)
    assert queued.state == "queued" and queued.waiting and queued.resume_when_started and queued.error is None
    with pytest.raises(JobStateError, match="only a stopped or failed job"):
        store.enqueue_resume(job.id)
    assert [j.id for j in scheduler.tick()] == [job.id]
    assert not store.get_job(job.id).waiting
    done = wait_state(store, job.id, "completed")
    assert done.step == 30
    assert "running from step %d" % stopped.step in job.paths.log.read_text()
    with pytest.raises(JobStateError, match="only a stopped or failed job"):
        store.enqueue_resume(job.id)


def test_jobs_that_cannot_start_leave_the_queue_failed(store):
    scheduler = JobScheduler(store)
    broken = store.create_job(fake_config())
    broken.paths.config.unlink()
    stopped = store.create_job(fake_config())
    store.request_stop(stopped.id)
    assert [j.id for j in store.queue()] == [broken.id]
    assert scheduler.tick() == []
    assert store.queue() == []
    failed = store.get_job(broken.id)
    assert failed.state == "failed" and "cannot read" in failed.error and not failed.waiting
    never_ran = store.create_job(fake_config(exit_code=1))
    store.stop_job(never_ran.id)
    with pytest.raises(JobStateError, match="no complete checkpoint"):
        store.enqueue_resume(never_ran.id)


def test_scheduler_thread_starts_queued_jobs(store):
    scheduler = JobScheduler(store, interval_s=30)
    scheduler.start()
    try:
        job = store.create_job(fake_config(steps=2))
        scheduler.kick()
        wait_state(store, job.id, "completed")
    finally:
        scheduler.stop()
    with pytest.raises(ValueError, match="at least 1"):
        JobScheduler(store, max_per_device=0)


def test_version_1_store_is_migrated_with_its_queue(tmp_path):
    workdir = tmp_path / "ws"
    (workdir / "jobs" / "20261123-011500-ab12").mkdir(parents=True)
    jobfiles.write_status(workdir / "jobs" / "20261123-011500-ab12", state="queued")
    with sqlite3.connect(workdir / "studio.db") as conn:
        conn.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for sql in jobs.MIGRATIONS[0]:
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version VALUES ('jobs', 1)")
        conn.execute("INSERT INTO jobs (id, name, created, job_dir, state) VALUES "
                     "('20261123-011500-ab12', 'old', 5.0, 'jobs/20261123-011500-ab12', 'queued')")
    store = JobStore(workdir, trainer_argv=fake_argv)
    assert [(j.id, j.enqueued) for j in store.queue()] == [("20261123-011500-ab12", 5.0)]
