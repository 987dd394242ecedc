"""Multi-node jobs on one machine: two "nodes" of one CPU rank each, over loopback.

Node 0 is started as the studio starts any job (trainer/jobs.py); node 1 with the command the
studio shows for it (trainer/nodes.py, webui/nodes_panel.py). They train one job together; a stop
reaches a node that shares no files with node 0; a launch still waiting for its other node stops
at once. Plus the node commands, the CLI's check of --node-rank and the panels that show them.
"""

from __future__ import annotations

import os
import shlex
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from plumbing.paths import REPO_ROOT
from tests.browser_helpers import wait_until
from tests.conftest import ROOT, example_config, read_metrics
from trainer import processes
from trainer.config import command_preview, from_dict, to_dict
from trainer.jobfiles import (
    COMPLETED, QUEUED, RUNNING, STOPPED, JobPaths, checkpoint_step, read_status, write_status,
)
from trainer.jobs import JobStore
from trainer.nodes import other_node_commands
from webui import nodes_panel

TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(model_dir: Path | str = "ernie-4.5-tiny-moe", **changes) -> dict:
    """SFT-LoRA of the tiny MoE model on short sequences, as node 0 of two on loopback."""
    return to_dict(from_dict(example_config("tiny_sft_lora.yaml", **{
        "model.name_or_path": str(model_dir), "data.max_seq_len": 64, "data.max_prompt_len": 32,
        "logging.logging_steps": 1, "devices.nnodes": 2, "devices.master": f"127.0.0.1:{free_port()}",
        **changes})))


class OtherNode:
    """The other node: the shell text run as a user would paste it, in a session of its own. Its
    processes carry a launch token, which finds the ranks its launcher put in sessions of their own."""

    def __init__(self, shell: str, log: Path):
        self.log = log
        self.token = f"test-node-{secrets.token_hex(8)}"
        self.proc = subprocess.Popen(["bash", "-c", shell], stdin=subprocess.DEVNULL, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, processes.LAUNCH_ENV: self.token})

    def exit_code(self) -> int:
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node 1 did not end; its output ends:\n{self.log.read_text()[-3000:]}") from None

    def end(self) -> None:
        processes.kill_all({"launch_token": self.token})
        self.proc.wait(timeout=30)


# -- the commands and where they are shown ------------------------------------------------------------

def test_each_other_node_gets_its_rank_and_the_jobs_absolute_paths():
    commands = other_node_commands(3, "jobs/x/config.yaml", "jobs/x")
    assert [c.rank for c in commands] == [1, 2]
    config, job = os.path.abspath("jobs/x/config.yaml"), os.path.abspath("jobs/x")
    assert commands[0].argv == [sys.executable, "-m", "trainer", "run", config, "--job-dir", job,
                                "--node-rank", "1"]
    shell = shlex.split(commands[1].shell)
    assert shell[:3] == ["cd", str(REPO_ROOT), "&&"] and shell[3:] == commands[1].argv
    assert "--resume" in other_node_commands(2, config, job, resume=True)[0].argv
    assert other_node_commands(1, config, job) == []


def test_each_node_launches_with_its_rank_and_logs_of_its_own():
    cfg = from_dict(two_nodes(**{"devices.nproc": 2}))
    for rank, logs in ((0, Path("j") / "launch_logs"), (1, Path("j") / "launch_logs" / "node-1")):
        argv = command_preview(cfg, "j/config.yaml", "j", node_rank=rank)
        launch = argv[:argv.index("--log_dir") + 2]
        assert launch[3:] == ["--nproc_per_node", "2", "--nnodes", "2", "--master", cfg.devices.master,
                              "--rank", str(rank), "--log_dir", str(logs)]
        assert JobPaths("j").node_launch_logs(rank) == logs


def test_a_node_rank_outside_the_job_is_refused_by_name(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(two_nodes()))
    result = subprocess.run([sys.executable, "-m", "trainer", "run", str(config), "--job-dir", str(tmp_path / "j"),
                             "--node-rank", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"--node-rank: expected 0 to 1 (devices.nnodes is 2 in {config}), got 2"
    assert not (tmp_path / "j").exists()


def test_the_train_and_jobs_tabs_show_the_commands_of_a_multi_node_job(tmp_path):
    cfg = from_dict(two_nodes())
    placeholder = nodes_panel.train_view(cfg, tmp_path / "jobs" / "<job id>")
    assert placeholder.box["visible"] is True
    assert f"--job-dir {shlex.quote(str(tmp_path / 'jobs' / '<job id>'))} --node-rank 1" in placeholder.commands
    assert "is loopback" in placeholder.note and "回环地址" in placeholder.note, "in both languages"
    assert "<job id>" in placeholder.note
    assert nodes_panel.train_view(from_dict(two_nodes(**{"devices.nnodes": 1})), tmp_path).box["visible"] is False
    assert nodes_panel.train_view(None, tmp_path).box["visible"] is False

    store = JobStore(tmp_path / "studio")
    job = store.create_job(two_nodes(**{"devices.master": "10.1.2.3:8090"}))
    waiting = nodes_panel.job_panel(store.get_job(job.id))
    assert waiting.commands == f"# node 1\n{other_node_commands(2, job.paths.config, job.job_dir)[0].shell}"
    assert "is loopback" not in waiting.note and "--resume" not in waiting.commands
    write_status(job.job_dir, state=RUNNING, launched=time.time(), resumed=True)
    assert nodes_panel.job_panel(store.get_job(job.id)).commands.endswith("--resume --node-rank 1")
    write_status(job.job_dir, state=COMPLETED)
    assert nodes_panel.job_panel(store.get_job(job.id)).box["visible"] is False
    single = store.create_job(two_nodes(**{"devices.nnodes": 1}))
    assert nodes_panel.job_panel(store.get_job(single.id)).box["visible"] is False


def test_the_train_tab_shows_the_other_nodes_then_the_new_jobs_real_paths(tmp_path):
    import gradio as gr

    from webui import train_tab
    from webui.context import make_context
    from webui.form import values_from_config

    ctx = make_context(tmp_path / "studio")
    with gr.Blocks():
        tab = train_tab.build(ctx)
    values = values_from_config(two_nodes(), tab.form.keys, "en", train_tab.stored_names(ctx))
    shown = train_tab.preview(ctx, tab, values, "en", [])
    assert shown[tab.nodes.box]["visible"] is True and "/<job id>' --node-rank 1" in shown[tab.nodes.commands]
    updates, job_id = train_tab.start(ctx, tab, values, "", "en")
    job = ctx.store.get_job(job_id)
    assert updates[tab.nodes.commands] == f"# node 1\n{other_node_commands(2, job.paths.config, job.job_dir)[0].shell}"
    one_node = values_from_config(two_nodes(**{"devices.nnodes": 1}), tab.form.keys, "en", train_tab.stored_names(ctx))
    assert train_tab.preview(ctx, tab, one_node, "en", [])[tab.nodes.box]["visible"] is False


# -- two launches on this machine ---------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT_S)
def test_two_nodes_on_loopback_train_one_job(tmp_path, monkeypatch):
    # a fresh workdir: each node builds the embedded model before its ranks start (under their
    # world size of 2, saving it would wait for a process group that does not exist yet)
    monkeypatch.setenv("ERNIE_STUDIO_HOME", str(tmp_path / "home"))
    store = JobStore(tmp_path / "studio")
    job = store.create_job(two_nodes(**{"optim.max_steps": 4}))
    node1 = None
    try:
        store.start_job(job.id)
        node1 = OtherNode(nodes_panel.job_panel(store.get_job(job.id)).commands, tmp_path / "node1.log")
        wait_until(lambda: store.refresh(job.id).state not in (QUEUED, RUNNING), TIMEOUT_S - 60, "the job to end")
        done = store.refresh(job.id)
        assert done.state == COMPLETED, done.error
        assert node1.exit_code() == 0
        status = read_status(job.job_dir)
        wait_until(lambda: processes.all_gone(status), 30, "node 0's launch to end")
        # Once in several runs node 0's rank, already done, aborted while exiting (gloo, after node 1
        # had gone) and its launcher exited 250; the job had completed. What counts is the job's
        # status and rank 0's end.
        assert store._exit_code(job.id) == 0 or "[studio] job completed" in job.paths.log.read_text()
    finally:
        if node1 is not None:
            node1.end()
        store.stop_job(job.id, grace_s=5)
    metrics = read_metrics(job.job_dir)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4], "one line per step, from global rank 0 only"
    # 60 rows over two ranks at batch 8 are 4 steps an epoch: one rank alone would be at 0.5
    assert metrics[-1]["epoch"] == pytest.approx(1.0)
    logs = job.paths.launch_logs
    assert (logs / "workerlog.0").is_file() and (logs / "node-1" / "workerlog.0").is_file()
    assert "data_parallel_rank            : 1" in (logs / "node-1" / "workerlog.0").read_text()
    assert (job.paths.output / "adapter_info.json").is_file()


MANY_STEPS = 10_000


@pytest.mark.timeout(TIMEOUT_S)
def test_a_stop_ends_both_nodes_though_the_other_shares_no_files_and_both_resume(tmp_path, tiny_moe_dir):
    """Node 1 first runs in a copy of the job directory, as on another machine: neither the STOP file
    nor node 0's SIGTERM reaches it, and its rank still stops after the same step as node 0's. The
    job then resumes on both nodes, node 1 with the command the Jobs tab shows for the resumed launch,
    and continues from the step it stopped at. The job is far longer than the test waits (a slow
    machine must not finish it before the stop arrives); it is stopped again once resumed."""
    store = JobStore(tmp_path / "studio")
    job = store.create_job(two_nodes(tiny_moe_dir, **{"optim.max_steps": MANY_STEPS}))
    elsewhere = tmp_path / "other-machine" / job.id
    elsewhere.mkdir(parents=True)
    shutil.copy(job.paths.config, elsewhere / "config.yaml")
    node1 = None
    try:
        store.start_job(job.id)
        node1 = OtherNode(other_node_commands(2, elsewhere / "config.yaml", elsewhere)[0].shell,
                          tmp_path / "node1.log")
        wait_until(lambda: (store.refresh(job.id).step or 0) >= 2 or node1.proc.poll() is not None, TIMEOUT_S / 3,
                   "both nodes to train two steps")
        stopped = store.stop_job(job.id, grace_s=60)
        assert stopped.state == STOPPED and stopped.error is None, stopped.error
        assert node1.exit_code() == 0
        assert not (elsewhere / "status.json").exists() and not (elsewhere / "metrics.jsonl").exists()
        last = job.paths.last_checkpoint()
        assert last is not None and checkpoint_step(last) == stopped.step < MANY_STEPS

        store.enqueue_resume(job.id)
        store.start_job(job.id)
        shown = nodes_panel.job_panel(store.get_job(job.id)).commands
        assert shown.endswith(" --resume --node-rank 1")
        node1 = OtherNode(shown, tmp_path / "node1-resumed.log")
        wait_until(lambda: (store.refresh(job.id).step or 0) >= stopped.step + 2
                   or store.refresh(job.id).state not in (QUEUED, RUNNING), TIMEOUT_S / 3,
                   "the resumed job to train two more steps")
        again = store.stop_job(job.id, grace_s=60)
        assert again.state == STOPPED and again.error is None, again.error
        assert node1.exit_code() == 0
    finally:
        if node1 is not None:
            node1.end()
        store.stop_job(job.id, grace_s=5)
    assert [m["step"] for m in read_metrics(job.job_dir)] == list(range(1, again.step + 1))
    assert again.step > stopped.step
    assert f"resuming from {last}" in (job.paths.launch_logs / "node-1" / "workerlog.0").read_text()


@pytest.mark.timeout(120)
def test_a_launch_waiting_for_its_other_node_stops_at_once(tmp_path, tiny_moe_dir):
    store = JobStore(tmp_path / "studio")
    job = store.create_job(two_nodes(tiny_moe_dir))
    try:
        store.start_job(job.id)
        wait_until(lambda: "Waiting peer" in job.paths.log.read_text(), 90, "node 0 to wait for node 1")
        stopped = store.request_stop(job.id)
        assert stopped.state == STOPPED and stopped.error is None
        assert processes.all_gone(read_status(job.job_dir))
        assert store.refresh(job.id).state == STOPPED
    finally:
        store.stop_job(job.id, grace_s=5)
