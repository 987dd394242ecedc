"""The other nodes of a multi-node job (`devices.nnodes` > 1): what this machine does as node 0,
what each other node must have, and the command it runs to join (trainer/nodes.py), shown in the
Train tab for the form as it is (the job directory as `<job id>` until Start makes it) and in the
Jobs tab for a multi-node job that is waiting or running, with its real paths.

In the Jobs tab the panel is part of the monitor's tick (webui.jobs_tab), recomputed only when the
watched job or its state changes, as the output panel is (webui.job_output).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import yaml

from plumbing.network import is_loopback
from plumbing.paths import REPO_ROOT
from trainer.jobfiles import JobFileError, read_status
from trainer.jobs import Job, JobError
from trainer.nodes import commands_text, other_node_commands
from webui.context import StudioContext
from webui.i18n import Phrase, both
from webui.views import TabViews


class NodesView(NamedTuple):
    box: Any
    note: Any
    commands: Any


def _hidden() -> NodesView:
    return NodesView(gr.update(visible=False), "", "")


@dataclass
class NodesPanel(TabViews):
    box: gr.Column
    note: gr.Markdown
    commands: gr.Code


def build(ctx: StudioContext, tab: str) -> NodesPanel:
    """The panel, hidden until a multi-node config or job shows it; `tab` prefixes its element ids."""
    with gr.Column(visible=False, variant="panel", elem_id=f"{tab}-nodes") as box:
        note = gr.Markdown(elem_id=f"{tab}-nodes-note")
        commands = ctx.texts.make(gr.Code, f"{tab}-nodes-commands", language="shell", interactive=False,
                                  lines=3)
    return NodesPanel(box, note, commands)


def _view(devices: dict, config_path: Path, job_dir: Path, resume: bool, placeholder: bool) -> NodesView:
    nnodes = devices.get("nnodes")
    if not isinstance(nnodes, int) or nnodes <= 1:
        return _hidden()
    commands = other_node_commands(nnodes, config_path, job_dir, resume)
    lines = [Phrase("msg-nodes-intro", {"nnodes": nnodes, "nproc": devices.get("nproc"),
                                        "master": devices.get("master"), "repo": os.fspath(REPO_ROOT),
                                        "logs": os.fspath(job_dir / "launch_logs")})]
    if is_loopback(str(devices.get("master")).rpartition(":")[0]):
        lines.append(Phrase("msg-nodes-loopback", {"master": devices.get("master")}))
    if placeholder:
        lines.append(Phrase("msg-nodes-placeholder"))
    if resume:
        lines.append(Phrase("msg-nodes-resume"))
    note = both(lambda lang: "\n\n".join(line.text(lang) for line in lines))
    return NodesView(gr.update(visible=True), note, commands_text(commands))


def train_view(cfg: Any, job_dir: Path) -> NodesView:
    """The panel for the Train form's valid config `cfg` (None while it has problems), the job
    directory still a placeholder."""
    if cfg is None:
        return _hidden()
    devices = {"nnodes": cfg.devices.nnodes, "nproc": cfg.devices.nproc, "master": cfg.devices.master}
    return _view(devices, job_dir / "config.yaml", job_dir, resume=False, placeholder=True)


def job_view(ctx: StudioContext, watch: dict) -> NodesView:
    """The panel for the job the Jobs monitor's `watch` shows, worked out again only when the job or
    its state changed. A job queued to resume, or whose launch resumed, needs `--resume` on every
    node."""
    key = (watch["job"], watch["shown"].get("header"))
    if watch["shown"].get("nodes") == key:
        return NodesView(gr.skip(), gr.skip(), gr.skip())
    watch["shown"]["nodes"] = key
    try:
        job = ctx.store.get_job(watch["job"]) if watch["job"] else None
    except JobError:
        return _hidden()
    return job_panel(job) if job is not None else _hidden()


def job_panel(job: Job) -> NodesView:
    """The panel for `job`: visible while it is a multi-node job that waits or runs."""
    if not (job.active or job.waiting):
        return _hidden()
    try:
        devices = job.paths.read_config().get("devices")
        resume = job.resume_when_started if job.waiting else bool(read_status(job.job_dir).get("resumed"))
    except (OSError, yaml.YAMLError, JobFileError):
        return _hidden()
    if not isinstance(devices, dict):
        return _hidden()
    return _view(devices, job.paths.config, job.job_dir, resume, placeholder=False)
