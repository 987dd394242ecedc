"""The real trainer under the job launcher: stop and resume, a killed trainer, two CPU ranks."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from tests.browser_helpers import wait_until as wait_for
from tests.conftest import example_config, read_metrics
from trainer.jobfiles import COMPLETED, FAILED, RUNNING, STOPPED, read_status
from trainer.jobs import JobStore


def no_process_left(job) -> bool:
    token = read_status(job.job_dir).get("launch_token")
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("ERNIE_STUDIO_LAUNCH") == token:
                return False
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return True


@pytest.fixture
def store(workdir, tiny_moe_dir):
    return JobStore(workdir)


def test_stop_then_resume_reaches_the_last_step(store):
    last = 60  # a stop comes a few steps after step 10
    config = example_config("tiny_sft_lora.yaml", **{"optim.max_steps": last, "logging.save_steps": 1000,
                                                      "logging.logging_steps": 2})
    job = store.create_job(config, name="stop-resume")
    store.start_job(job.id)
    wait_for(lambda: store.refresh(job.id).state == RUNNING and (store.refresh(job.id).step or 0) >= 10,
             180, "the job to run 10 steps")

    stopped = store.stop_job(job.id, grace_s=60)
    assert stopped.state == STOPPED and not stopped.error
    checkpoint = job.paths.last_checkpoint()
    assert checkpoint is not None, "stop saves a complete checkpoint"
    stop_step = int(checkpoint.name.split("-")[1])
    assert 10 <= stop_step < last
    assert wait_for(lambda: no_process_left(job), 20, "every process of the job to end")

    store.start_job(job.id, resume=True)
    done = wait_for(lambda: (j := store.refresh(job.id)).state in (COMPLETED, FAILED) and j, 240, "completion")
    assert done.state == COMPLETED, done.error
    assert read_status(job.job_dir)["step"] == last
    steps = [m["step"] for m in read_metrics(job.paths.dir) if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == last, "metrics continue without repeats after resume"
    assert any(s <= stop_step for s in steps) and any(s > stop_step for s in steps)
    assert "resuming from" in job.paths.log.read_text()
    assert wait_for(lambda: no_process_left(job), 20, "every process of the job to end")


def test_sigkilled_trainer_is_reported_failed_with_its_log(store):
    config = example_config("tiny_sft_lora.yaml", **{"optim.max_steps": 5000})
    job = store.create_job(config, name="killed")
    store.start_job(job.id)
    wait_for(lambda: store.refresh(job.id).state == RUNNING, 180, "the job to run")
    os.kill(read_status(job.job_dir)["launcher_pid"], signal.SIGKILL)
    failed = wait_for(lambda: (j := store.refresh(job.id)).state == FAILED and j, 30, "the job to be marked failed")
    assert "SIGKILL" in failed.error and "[studio]" in failed.error, failed.error
    assert no_process_left(job)


def test_two_cpu_ranks_train_data_parallel_and_only_rank_0_writes(store):
    config = example_config("tiny_sft_lora.yaml", **{"optim.max_steps": 12, "logging.logging_steps": 3,
                                                      "devices.nproc": 2})
    job = store.create_job(config, name="two-ranks")
    store.start_job(job.id)
    done = wait_for(lambda: (j := store.refresh(job.id)).state in (COMPLETED, FAILED) and j, 300, "completion")
    assert done.state == COMPLETED, done.error
    logs = sorted(p.name for p in (job.paths.dir / "launch_logs").glob("workerlog.*"))
    assert logs == ["workerlog.0", "workerlog.1"]
    for log in logs:
        assert "[studio] data: 60 training sequences" in (job.paths.dir / "launch_logs" / log).read_text()
    metrics = read_metrics(job.paths.dir)
    assert [m["step"] for m in metrics] == [3, 6, 9, 12], "one metrics line per logging step: rank 0 only"
    # 60 rows over 2 ranks at batch 8: 4 steps per epoch, so 12 steps are 3 epochs
    assert metrics[-1]["epoch"] == pytest.approx(3.0)
    assert (job.paths.output / "adapter_info.json").is_file()
    assert json.loads((job.paths.output / "adapter_info.json").read_text())["method"] == "sft"
