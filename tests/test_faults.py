"""Fault tests: what a job, the queue and a chat model server leave behind when something breaks.

The trainer SIGKILLed while it writes a checkpoint, `app.py` killed and restarted with a job running
and one queued, a checkpoint write that finds no room, a stop of a two-process job whose second rank
hangs, a model server killed in the middle of a reply. Every test runs the real processes on the
tiny model and is bounded in time; each wait names what it waited for when it gives up.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from models.chat_client import ChatError
from plumbing.files import tail_text
from tests.browser_helpers import Studio, wait_until
from tests.conftest import ROOT, example_config, read_metrics, run_trainer, shown
from trainer.jobfiles import (
    CHECKPOINT_COMPLETE_MARKER, COMPLETED, FAILED, QUEUED, RUNNING, STOPPED, JobPaths, checkpoint_step, read_status,
)
from trainer.jobs import JobStore
from trainer.processes import LAUNCH_ENV


def quick_config(model_dir: Path, **changes) -> dict:
    """Full SFT of the tiny MoE model on short sequences: a step takes a fraction of a second."""
    return example_config("tiny_sft_full.yaml", **{
        "model.name_or_path": str(model_dir), "data.max_seq_len": 64, "data.max_prompt_len": 32,
        "logging.logging_steps": 1, **changes})


def start_trainer(config: dict, job_dir: Path) -> subprocess.Popen:
    """`python -m trainer run` as a plain CLI run (it tees its output into train.log), in a process
    group of its own so the test can freeze or kill all of it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", str(job_dir / "config.yaml"), "--job-dir", str(job_dir)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def trainer_alive(proc: subprocess.Popen, job_dir: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the trainer exited with {proc.returncode}; train.log ends:\n"
                             f"{tail_text(JobPaths(job_dir).log, max_lines=30)}")
    return True


def checkpoints(paths: JobPaths) -> list[tuple[int, bool]]:
    """(step, complete) of every checkpoint directory, oldest first."""
    found = []
    for entry in paths.checkpoints.iterdir() if paths.checkpoints.is_dir() else []:
        step = checkpoint_step(entry)
        if step is not None:
            found.append((step, (entry / CHECKPOINT_COMPLETE_MARKER).is_file()))
    return sorted(found)


def being_written(paths: JobPaths, after_step: int) -> int | None:
    """The step of a checkpoint newer than `after_step` that has files but no COMPLETE marker yet."""
    for step, complete in checkpoints(paths):
        try:
            if step > after_step and not complete and any(paths.checkpoint_dir(step).iterdir()):
                return step
        except FileNotFoundError:  # deleted since it was listed (the trainer runs on)
            continue
    return None


def launch_processes(token: str | None) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if token and proc.environ().get(LAUNCH_ENV) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_launches(job_dirs) -> None:
    """Whatever a test did, no trainer of its jobs outlives it."""
    for job_dir in job_dirs:
        for proc in launch_processes(read_status(job_dir).get("launch_token")):
            try:
                proc.kill()
            except psutil.Error:
                pass


def loss_steps(job_dir: Path) -> list[int]:
    return [m["step"] for m in read_metrics(job_dir) if "loss" in m]


@pytest.mark.timeout(300)
def test_trainer_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path, tiny_moe_dir):
    # Keeping one checkpoint is the hard case: the old one may only go once the new one is complete.
    # 100 steps: saves take ~20 ms, so the polling below gets many chances even on a machine whose
    # other core trains too (with 40, a busy machine let every save pass unseen)
    config = quick_config(tiny_moe_dir, **{"optim.max_steps": 100, "logging.save_steps": 2,
                                           "logging.save_total_limit": 1})
    job_dir = tmp_path / "killed-mid-save"
    paths = JobPaths(job_dir)
    proc = start_trainer(config, job_dir)
    try:
        wait_until(lambda: trainer_alive(proc, job_dir) and (2, True) in checkpoints(paths), 120,
                   "the first complete checkpoint")
        # Sample the saves of steps 4 and 6 with the trainer frozen (SIGSTOP), so each look at the
        # directory is exact; at every moment a complete checkpoint must exist to resume from. Then
        # kill it in the middle of writing checkpoint-8.
        samples, deadline = 0, time.monotonic() + 120
        while True:
            assert trainer_alive(proc, job_dir) and time.monotonic() < deadline, "no save of step 8 caught"
            if being_written(paths, after_step=2) is None:
                time.sleep(0.001)
                continue
            os.killpg(proc.pid, signal.SIGSTOP)
            writing = being_written(paths, after_step=2)
            if writing is not None:
                samples += 1
                assert paths.last_checkpoint() is not None, (
                    f"while checkpoint-{writing} was written no complete checkpoint was left: {checkpoints(paths)}")
                if writing >= 8:
                    killed = writing
                    break
            os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert samples >= 3, f"only {samples} looks at the saves of steps 4 and 6"
    assert checkpoints(paths) == [(killed - 2, True), (killed, False)], "the previous one whole, the killed one not"
    assert read_status(job_dir)["state"] == RUNNING, "a SIGKILL leaves status.json as it was"

    result = run_trainer(config, job_dir, "--resume", timeout=200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming from {paths.checkpoint_dir(killed - 2)}" in paths.log.read_text()
    status = read_status(job_dir)
    assert status["state"] == COMPLETED and status["step"] == 100 and status["error"] is None
    assert loss_steps(job_dir) == list(range(1, 101)), "every step logged once, none lost, none repeated"
    assert checkpoints(paths) == [(100, True)], "the half-written checkpoint was redone, then replaced"


def wait_for_a_scheduler_pass(app: Studio, lock: Path) -> None:
    """Until the app's scheduler has finished a whole pass (reconcile the active jobs, then start
    what may start) that began after `lock` was removed: a pass creates its lock file when it is
    missing and keeps it open until the pass ends."""
    wait_until(lock.exists, 120, f"the app's scheduler to take {lock}")
    held = str(lock.resolve())
    wait_until(lambda: all(f.path != held for f in psutil.Process(app.proc.pid).open_files()), 60,
               "the scheduler pass to end")


@pytest.mark.timeout(420)
def test_app_restarted_mid_job_and_mid_queue_loses_nothing(tmp_path, tiny_moe_dir):
    workdir = tmp_path / "studio"
    options = ["--max-jobs-per-device", "1"]
    first = quick_config(tiny_moe_dir, **{"optim.max_steps": 40, "logging.save_steps": 1000})
    second = quick_config(tiny_moe_dir, **{"optim.max_steps": 6, "logging.save_steps": 1000})
    store = JobStore(workdir)
    running = store.create_job(first, name="running across the restart")
    waiting = store.create_job(second, name="queued across the restart")
    app, frozen = Studio(workdir, extra=options), None
    try:
        app.start()
        wait_until(lambda: (j := store.refresh(running.id)).state in (RUNNING, FAILED) and (j.step or 0) >= 3,
                   150, "the app to start the first job and the job to train 3 steps")
        assert store.get_job(running.id).state == RUNNING, store.get_job(running.id).error
        assert store.get_job(waiting.id).waiting, "one job per device: the second one waits"
        # Freeze the first job so that it is certainly still mid-run when the new app looks at it.
        frozen = read_status(running.job_dir)["pgid"]
        os.killpg(frozen, signal.SIGSTOP)
        app.proc.kill()
        app.proc.wait(timeout=30)

        app = Studio(workdir, extra=options)
        lock = workdir / "scheduler.lock"
        lock.unlink(missing_ok=True)
        app.start()
        wait_for_a_scheduler_pass(app, lock)
        adopted, queued = store.get_job(running.id), store.get_job(waiting.id)
        assert adopted.state == RUNNING and adopted.error is None, adopted.error
        assert queued.state == QUEUED and queued.waiting, "still waiting for the device"
        os.killpg(frozen, signal.SIGCONT)

        done = wait_until(lambda: (j := store.refresh(waiting.id)).state in (COMPLETED, FAILED) and j, 240,
                          "the queued job to be started by the new app and to finish")
        assert done.state == COMPLETED, done.error
    finally:
        if frozen is not None:
            try:
                os.killpg(frozen, signal.SIGCONT)
            except ProcessLookupError:
                pass
        app.stop()
        kill_launches([running.job_dir, waiting.job_dir])
    first_status, second_status = read_status(running.job_dir), read_status(waiting.job_dir)
    assert first_status["state"] == COMPLETED and first_status["step"] == 40
    assert loss_steps(running.job_dir) == list(range(1, 41)), "the first job ran once, through the restart"
    assert second_status["launched"] >= first_status["ended"], "the second job waited for the first"
    assert loss_steps(waiting.job_dir) == list(range(1, 7))


@pytest.mark.timeout(300)
def test_a_checkpoint_write_without_room_fails_the_job_and_keeps_the_earlier_checkpoint(tmp_path, tiny_moe_dir):
    config = quick_config(tiny_moe_dir, **{"optim.max_steps": 12, "logging.save_steps": 2})
    job_dir = tmp_path / "no-room"
    paths = JobPaths(job_dir)
    proc = start_trainer(config, job_dir)
    try:
        wait_until(lambda: trainer_alive(proc, job_dir) and (2, True) in checkpoints(paths), 120,
                   "the first complete checkpoint")
        # From now on no file of the trainer may grow past 1 MiB (RLIMIT_FSIZE; Python ignores
        # SIGXFSZ, so the write fails with EFBIG as a full disk fails it with ENOSPC). The model
        # weights of the next checkpoint are 4.5 MB; status.json and metrics.jsonl stay far below.
        psutil.Process(proc.pid).rlimit(psutil.RLIMIT_FSIZE, (2**20, 2**20))
        assert proc.wait(timeout=120) == 1
    finally:
        kill_group(proc)
    status = read_status(job_dir)
    assert status["state"] == FAILED and os.strerror(errno.EFBIG) in status["error"], status
    last = paths.last_checkpoint()
    assert last is not None and checkpoint_step(last) >= 2
    assert checkpoints(paths)[-1] == (checkpoint_step(last) + 2, False), "the failed save is not marked complete"

    result = run_trainer(config, job_dir, "--resume", timeout=200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming from {last}" in paths.log.read_text()
    assert read_status(job_dir)["state"] == COMPLETED
    assert loss_steps(job_dir) == list(range(1, 13))


def rank_processes(status: dict) -> dict[str, psutil.Process]:
    """The trainer processes of a launch by rank, checking the launch has more than its ranks (the
    launcher, their log tees)."""
    launch = launch_processes(status["launch_token"])
    ranks = {p.environ().get("PADDLE_TRAINER_ID"): p for p in launch if p.cmdline()[1:3] == ["-m", "trainer"]}
    assert set(ranks) == {"0", "1"} and len(launch) > 2, [p.cmdline() for p in launch]
    return ranks


@pytest.mark.timeout(400)
def test_stopping_a_two_process_job_leaves_no_process_even_with_a_hung_rank(tmp_path, tiny_moe_dir):
    store = JobStore(tmp_path / "studio")
    config = example_config("tiny_sft_lora.yaml", **{
        "model.name_or_path": str(tiny_moe_dir), "data.max_seq_len": 64, "data.max_prompt_len": 32,
        "optim.max_steps": 5000, "devices.nproc": 2})
    job = store.create_job(config, name="two ranks")

    def train_a_little(first_step: int) -> dict:
        def past_it() -> bool:
            now = store.refresh(job.id)
            return now.state == FAILED or (now.state == RUNNING and now.step > first_step)

        wait_until(past_it, 180, f"both ranks to train past step {first_step}")
        status = read_status(job.job_dir)
        assert status["state"] == RUNNING, status.get("error")
        return status

    try:
        store.start_job(job.id)
        status = train_a_little(1)
        rank_processes(status)
        stopped = store.stop_job(job.id, grace_s=60)
        assert stopped.state == STOPPED and stopped.error is None, "both ranks stopped on request"
        checkpoint = job.paths.last_checkpoint()
        assert checkpoint is not None
        wait_until(lambda: not launch_processes(status["launch_token"]), 60, "every process of the launch to end")

        store.start_job(job.id, resume=True)
        status = train_a_little(checkpoint_step(checkpoint))
        # Rank 1 stops answering (as one stuck in a collective would): rank 0 cannot finish its
        # step or save, so the cooperative stop cannot work and the grace period must end it all.
        rank_processes(status)["1"].suspend()
        started = time.monotonic()
        stopped = store.stop_job(job.id, grace_s=2)
        # not a speed figure: a stop that waited for the hung rank instead of killing it would never end
        assert time.monotonic() - started < 120, "the stop waited for the hung rank"
        assert stopped.state == STOPPED and "did not stop within 2s; killed" in (stopped.error or ""), stopped.error
        wait_until(lambda: not launch_processes(status["launch_token"]), 60, "every process of the launch to end")
        assert job.paths.last_checkpoint() == checkpoint, "the checkpoint of the first stop is still whole"
    finally:
        kill_launches([job.job_dir])


def serve_processes() -> set[psutil.Process]:
    """The live model servers started by this process (webui.model_servers starts them as children)."""
    found = set()
    for proc in psutil.Process().children():
        try:
            if proc.cmdline()[1:3] == ["-m", "models.serve"] and proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(300)
def test_a_model_server_killed_mid_reply_is_an_error_and_loading_again_recovers(tmp_path, tiny_moe_dir):
    from webui.chat_tab import describe, load, send
    from webui.context import make_context

    ctx = make_context(tmp_path / "studio")
    checkpoint = "ernie-4.5-tiny-moe"  # as the Chat tab offers it (built in the session's workdir)
    question = [{"role": "user", "content": "Tell me a long story."}]
    # system prompt, temperature, top_p, top_k, max_tokens, repetition penalty, seed, thinking
    settings = ["", 0, 1, 0, 2000, 1, 0, False]
    others = serve_processes()
    try:
        client = ctx.models.load(checkpoint)
        [server] = serve_processes() - others
        received, killed_at = 0, None
        with pytest.raises(ChatError) as failure:
            for delta in client.stream(question, temperature=0, max_tokens=2000):
                received += bool(delta.content)
                if received == 3 and killed_at is None:
                    server.kill()
                    killed_at = time.monotonic()
        # well under the client's 300 s read timeout: it saw the connection break, it did not time out
        assert killed_at is not None and time.monotonic() - killed_at < 60, "the client noticed at once"
        assert "model server" in str(failure.value) and client.base_url in str(failure.value), failure.value
        status = shown(describe(ctx, checkpoint))  # at once: the dead process may not even be reaped yet
        assert status == "Not loaded: press Load." or status.startswith("The model server failed"), status
        wait_until(lambda: ctx.models.client(checkpoint) is None, 60, "the manager to forget the dead server")
        assert ctx.models.loaded() == []

        # Loading again starts a fresh server; the Chat tab streams from it, and when that one dies
        # mid-reply too, the conversation ends in an error bubble that says so.
        ctx.models.load(checkpoint)
        [server] = serve_processes() - others
        histories = None
        for update in send(ctx, "Tell me a long story.", [[], []], [checkpoint, ""], settings, "en"):
            _message, *histories = update
            answer = histories[0][-1]
            if answer["role"] == "assistant" and len(answer["content"]) > 20 and server.is_running():
                server.kill()
        history = histories[0]
        assert history[-2]["role"] == "assistant" and len(history[-2]["content"]) > 20, "the reply so far stays"
        assert history[-1]["metadata"]["title"] == "⚠️", history[-1]
        assert history[-1]["content"].startswith("The model server failed: the model server at"), history[-1]
        wait_until(lambda: shown(describe(ctx, checkpoint)) == "Not loaded: press Load.", 60,
                   "the Chat tab to show the model as not loaded")

        assert shown(list(load(ctx, checkpoint))[-1]).startswith("Loaded: context 2048 tokens")
        reply = ctx.models.client(checkpoint).complete(question, temperature=0, max_tokens=8)
        assert reply.content and reply.finish_reason == "length"
    finally:
        ctx.models.stop_all()
    assert serve_processes() <= others, "unloading ended every server the test started"
