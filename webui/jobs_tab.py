"""The Jobs tab: every job with its state, and a live monitor of the chosen one (loss, eval loss and
learning-rate curves, progress with elapsed time and ETA, tokens/s, CPU, RAM and GPU memory, the
log tail, the error of a failed job), with Stop, Resume, Clone into the form and Delete. An evaluation
job shows its answers as progress and its figures instead of curves, a training job its evaluation
after training beside its output (webui.eval_figures).

A timer ticks once a second while the tab is shown (webui.app turns it on and off); each tick
reads only what the job appended since the last one (webui.monitor). On page load the monitor picks the running job, so a reload, or a second
browser, shows it live again; jobs never depend on a page being open.

The views are named tuples whose fields are named after the JobsTab components they go to
(`JobsTab.updates` turns one into `{component: value}`), so adding a component moves nothing else.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd
import yaml

from trainer.eval_jobs import is_eval_config
from trainer.jobfiles import FAILED, STOPPED
from trainer.jobs import Job, JobError
from trainer.scheduler import job_devices
from webui import downloads, eval_figures, job_output, monitor, nodes_panel
from webui.context import StudioContext
from webui.i18n import said, t
from webui.views import TabViews

TICK_S = 1.0


class MonitorView(NamedTuple):
    """The monitor of the watched job; gr.skip() for what has not changed since the last render."""
    header: Any
    progress: Any
    stats: Any
    loss: Any
    lr: Any
    rewards: Any
    experts: Any
    imbalance: Any
    error: Any
    log: Any
    stop: Any
    resume: Any
    clone: Any
    delete: Any
    watch: dict


class JobList(NamedTuple):
    """The job table and the dropdown's choices (gr.skip() while unchanged), and what they showed."""
    table: Any
    select: Any
    table_sig: tuple


class DeleteQuestion(NamedTuple):
    confirm_row: Any
    question: str
    action_status: str


class Deleted(NamedTuple):
    confirm_row: Any
    action_status: str
    select: Any


@dataclass
class JobsTab(TabViews):
    table: gr.Dataframe
    select: gr.Dropdown
    header: gr.Markdown
    progress: gr.HTML
    stats: gr.HTML
    loss: gr.LinePlot
    lr: gr.LinePlot
    rewards: gr.LinePlot
    experts: gr.HTML
    imbalance: gr.LinePlot
    error: gr.Code
    log: gr.HTML
    stop: gr.Button
    resume: gr.Button
    clone: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    question: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button
    action_status: gr.Markdown
    timer: gr.Timer
    watch: gr.State
    table_sig: gr.State  # what the job table last showed this session (JobList.table_sig)
    output: job_output.OutputPanel  # a completed job's output: where, how big, chat, export, download
    nodes: nodes_panel.NodesPanel  # a multi-node job's commands for its other nodes
    figures: eval_figures.FiguresPanel  # an evaluation's figures, or a training job's evaluation after training


    def tick_outputs(self) -> list:
        """What `tick` returns values for: the job list, then the monitor."""
        return [*self.outputs(JobList), *self.outputs(MonitorView), *self.output.outputs(job_output.OutputView),
                *self.nodes.outputs(nodes_panel.NodesView), *self.figures.outputs(eval_figures.FiguresView)]


def build(ctx: StudioContext) -> JobsTab:
    T = ctx.texts
    table = T.make(gr.Dataframe, "jobs-table", interactive=False, max_height=230, wrap=True)
    with gr.Row(equal_height=False):
        select = T.make(gr.Dropdown, "jobs-select", choices=[], value=None, scale=3)
        with gr.Column(scale=2, min_width=320):
            with gr.Row():
                stop = T.make(gr.Button, "jobs-stop", variant="stop", size="sm", interactive=False)
                resume = T.make(gr.Button, "jobs-resume", size="sm", interactive=False)
            with gr.Row():
                clone = T.make(gr.Button, "jobs-clone", size="sm", interactive=False)
                delete = T.make(gr.Button, "jobs-delete", size="sm", interactive=False)
    with gr.Row(visible=False) as confirm_row:
        question = gr.Markdown(elem_id="jobs-delete_question")
        confirm = T.make(gr.Button, "jobs-delete_confirm", variant="stop", size="sm")
        cancel = T.make(gr.Button, "jobs-delete_cancel", size="sm")
    action_status = gr.Markdown(elem_id="jobs-action_status")
    header = gr.Markdown(elem_id="jobs-header")
    progress = gr.HTML(elem_id="jobs-progress")
    output = job_output.build(ctx)
    figures = eval_figures.build(ctx)
    nodes = nodes_panel.build(ctx, "jobs")
    stats = gr.HTML(elem_id="jobs-stats")
    with gr.Row():
        loss = T.make(gr.LinePlot, "jobs-loss", x="step", y="loss", color="series", height=300,
                      color_map=monitor.SERIES_COLORS, colors_in_legend=[],
                      value=monitor.loss_frame({"loss": [], "eval": []}))
        lr = T.make(gr.LinePlot, "jobs-lr", x="step", y="lr", height=300, value=monitor.lr_frame({"lr": []}),
                    y_axis_format=".3~e")
    rewards = T.make(gr.LinePlot, "jobs-rewards", x="step", y="value", color="series", height=300,
                     color_map=monitor.REWARD_COLORS, colors_in_legend=[], visible=False,
                     value=monitor.reward_frame({"rewards": []}))
    with gr.Row():
        experts = gr.HTML(elem_id="jobs-experts", visible=False)
        imbalance = T.make(gr.LinePlot, "jobs-imbalance", x="step", y="imbalance", height=260, visible=False,
                           value=monitor.imbalance_frame({"imbalance": []}))
    error = T.make(gr.Code, "jobs-error", visible=False, interactive=False, lines=8, max_lines=30)
    log = T.make(gr.HTML, "jobs-log", value=monitor.log_html([]), show_label=True, container=True)
    return JobsTab(table, select, header, progress, stats, loss, lr, rewards, experts, imbalance, error, log, stop,
                   resume, clone, delete, confirm_row, question, confirm, cancel, action_status,
                   gr.Timer(TICK_S, active=False), gr.State(None), gr.State(None), output, nodes, figures)


# -- views -------------------------------------------------------------------------------------------

def _state(job: Job, lang: str) -> str:
    return t(f"msg-state-{job.state}", lang)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def _progress_cell(job: Job) -> str:
    if job.total_steps:
        return f"{job.step or 0}/{job.total_steps}"
    return ""


def jobs_frame(jobs: list[Job], lang: str) -> pd.DataFrame:
    cols = [t(f"msg-col-{c}", lang) for c in ("name", "state", "progress", "model", "method", "created", "id")]
    rows = []
    for job in jobs:
        summary = job.config_summary
        method = f"{summary.get('method', '')} {summary.get('finetuning.type', '')}".strip()
        model = summary.get("model.name_or_path", "")
        if is_eval_config(summary):
            method, model = t("msg-jobs-evaluation", lang), summary.get("models", "")
        rows.append([job.name, _state(job, lang), _progress_cell(job), model, method, _when(job.created), job.id])
    return pd.DataFrame(rows, columns=cols)


def job_choices(jobs: list[Job], lang: str) -> list[tuple[str, str]]:
    return [(f"{job.name} · {_state(job, lang)}" + ("" if job.name == job.id else f" · {job.id}"), job.id)
            for job in jobs]


def pick_job(jobs: list[Job], current: str | None) -> str | None:
    """The job to show: the current one if it still exists, else a running one, else the newest."""
    ids = [job.id for job in jobs]
    if current in ids:
        return current
    active = [job.id for job in jobs if job.active]
    return active[0] if active else (ids[0] if ids else None)


def header_text(ctx: StudioContext, job: Job, lang: str) -> str:
    summary = job.config_summary
    queue = ""
    if job.waiting:
        waiting = [j.id for j in ctx.store.queue()]
        pos = waiting.index(job.id) + 1 if job.id in waiting else "?"
        try:
            devices = ", ".join(sorted(job_devices(job.paths.read_config())))
        except (OSError, yaml.YAMLError):
            devices = "?"
        queue = t("msg-jobs-queue", lang, pos=pos, devices=devices)
    if is_eval_config(summary):
        models, labels = eval_figures.checkpoints(job.job_dir)
        names = eval_figures.checkpoint_names(models, labels, lang)
        return t("msg-jobs-header-eval", lang, name=job.name, id=job.id, state=_state(job, lang), queue=queue,
                 models=", ".join(names[m] for m in models), data=os.path.basename(str(summary.get("data", ""))),
                 created=_when(job.created))
    method = f"{summary.get('method', '')} {summary.get('finetuning.type', '')}".strip()
    return t("msg-jobs-header", lang, name=job.name, id=job.id, state=_state(job, lang), queue=queue,
             model=summary.get("model.name_or_path", ""), method=method, created=_when(job.created))


def progress_html(job: Job, watch: dict, lang: str) -> str:
    p = monitor.progress(job, watch)
    if p["total"]:
        # an evaluation counts answers as its steps
        key = "msg-jobs-progress-answers" if is_eval_config(job.config_summary) else "msg-jobs-progress"
        text = t(key, lang, step=p["step"], total=p["total"], pct=f"{p['pct']:.0f}",
                 elapsed=monitor.fmt_duration(p["elapsed_s"]),
                 eta=monitor.fmt_duration(p["eta_s"])) + eval_figures.progress_note(job, lang)
    else:
        text = t("msg-jobs-waiting", lang)
    return (f'<div class="studio-progress" data-state="{job.state}" data-pct="{p["pct"]:.1f}">'
            f'<div class="studio-bar"><div class="studio-fill state-{job.state}" style="width:{p["pct"]:.1f}%">'
            f'</div></div><div class="studio-progress-text">{html.escape(text)}</div></div>')


def stats_html(job: Job, watch: dict, lang: str) -> str:
    last = watch.get("last") or {}
    live = monitor.usage(job)
    memory = last.get("memory") or {}
    cards = []
    if isinstance(last.get("loss"), (int, float)):
        cards.append((t("msg-jobs-loss-now", lang), f"{last['loss']:.4f}"))
    if isinstance(last.get("reward_accuracy"), (int, float)):
        cards.append((t("msg-jobs-reward-accuracy", lang), f"{last['reward_accuracy']:.0%}"))
    if isinstance(last.get("tokens_per_s"), (int, float)):
        cards.append((t("msg-jobs-tokens", lang), f"{last['tokens_per_s']:,.0f}"))
    if live:
        cards.append((t("msg-jobs-cpu", lang), f"{live['cpu_percent']:.0f}% / {live['cores'] * 100}%"))
        cards.append((t("msg-jobs-ram", lang), f"{live['rss_mb']:,.0f} MB"))
    elif isinstance(memory.get("rss_mb"), (int, float)):
        cards.append((t("msg-jobs-ram", lang), f"{memory['rss_mb']:,.0f} MB"))
    if isinstance(memory.get("gpu_mb"), (int, float)):
        cards.append((t("msg-jobs-gpu", lang), f"{memory['gpu_mb']:,.0f} MB"))
    items = "".join(f'<div class="studio-card"><div class="studio-card-label">{html.escape(label)}</div>'
                    f'<div class="studio-card-value">{html.escape(value)}</div></div>' for label, value in cards)
    return f'<div class="studio-cards">{items}</div>'


def _changed(watch: dict, name: str, value) -> bool:
    if watch["shown"].get(name) == value:
        return False
    watch["shown"][name] = value
    return True


def render(ctx: StudioContext, job_id: str | None, watch: dict | None, lang: str) -> MonitorView:
    """The monitor of the chosen job; gr.skip() for whatever has not changed since the last render
    in this session."""
    try:
        job = ctx.store.get_job(job_id) if job_id else None
    except JobError:  # gone, or an id no job can have
        job = None
    fresh = watch is None or watch.get("job") != (job.id if job else None) or watch.get("lang") != lang
    if fresh:
        watch = monitor.new_watch(job)
        watch["lang"] = lang
        new_metrics = new_log = True
    elif job is not None:
        new_metrics = monitor.read_new_metrics(watch, job)
        new_log = monitor.read_new_log(watch, job)
    else:
        new_metrics = new_log = False
    if job is None:
        empty = t("msg-jobs-none", lang)
        hidden, off = gr.update(visible=False), gr.update(interactive=False)
        return MonitorView(header=empty if _changed(watch, "header", empty) else gr.skip(), progress="", stats="",
                           loss=gr.update(value=monitor.loss_frame(watch), visible=True),
                           lr=gr.update(value=monitor.lr_frame(watch), visible=True), rewards=hidden,
                           experts=hidden, imbalance=hidden, error=hidden, log=monitor.log_html([]), stop=off,
                           resume=off, clone=off, delete=off, watch=watch)

    def maybe(name, value):
        return value if _changed(watch, name, value) else gr.skip()

    header = maybe("header", header_text(ctx, job, lang))
    prog = maybe("progress", progress_html(job, watch, lang))
    stats = maybe("stats", stats_html(job, watch, lang))
    loss = monitor.loss_frame(watch) if new_metrics else gr.skip()
    lr = monitor.lr_frame(watch) if new_metrics else gr.skip()
    if fresh:  # an evaluation has no curves: its figures show instead (webui.eval_figures)
        training = not is_eval_config(job.config_summary)
        loss, lr = gr.update(value=loss, visible=training), gr.update(value=lr, visible=training)
    rewards = gr.update(value=monitor.reward_frame(watch), visible=bool(watch["rewards"])) if new_metrics \
        else gr.skip()
    if new_metrics:
        heatmap = monitor.expert_heatmap_html(watch["experts"], t("msg-jobs-experts", lang),
                                              (t("msg-jobs-experts-text", lang), t("msg-jobs-experts-vision", lang)))
        experts = gr.update(value=heatmap, visible=bool(heatmap))
        imbalance = gr.update(value=monitor.imbalance_frame(watch), visible=bool(watch["imbalance"]))
    else:
        experts = imbalance = gr.skip()
    error_text = job.error or ""
    error = gr.update(value=error_text, visible=bool(error_text)) if _changed(watch, "error", error_text) \
        else gr.skip()
    log = monitor.log_html(watch["log"]) if new_log else gr.skip()
    resumable = job.state in (STOPPED, FAILED) and job.paths.last_checkpoint() is not None
    enabled = {"stop": job.active or job.waiting, "resume": resumable, "clone": True, "delete": not job.active}
    if _changed(watch, "buttons", tuple(enabled.values())):
        buttons = {name: gr.update(interactive=on) for name, on in enabled.items()}
    else:
        buttons = dict.fromkeys(enabled, gr.skip())
    return MonitorView(header=header, progress=prog, stats=stats, loss=loss, lr=lr, rewards=rewards, experts=experts,
                       imbalance=imbalance, error=error, log=log, **buttons, watch=watch)


def list_view(ctx: StudioContext, current: str | None, table_sig: tuple | None,
              lang: str) -> tuple[JobList, str | None]:
    """The job table and the dropdown's choices, only when they changed; and the job to show."""
    jobs = ctx.store.list_jobs(refresh=False)
    chosen = pick_job(jobs, current)
    sig = (lang, tuple((j.id, j.name, j.state, j.step, j.total_steps) for j in jobs))
    if sig == table_sig:
        return JobList(gr.skip(), gr.skip(), sig), chosen
    return JobList(jobs_frame(jobs, lang), gr.update(choices=job_choices(jobs, lang), value=chosen), sig), chosen


def tick(ctx: StudioContext, tab: JobsTab, current: str | None, watch: dict | None, table_sig: tuple | None,
         lang: str) -> dict:
    """The job list and the monitor of the job to show, each only as far as it changed."""
    listing, chosen = list_view(ctx, current, table_sig, lang)
    shown = render(ctx, chosen, watch, lang)
    return {**tab.updates(listing), **tab.updates(shown),
            **tab.output.updates(job_output.view(ctx, shown.watch, lang)),
            **tab.nodes.updates(nodes_panel.job_view(ctx, shown.watch)),
            **tab.figures.updates(eval_figures.job_view(ctx, shown.watch, lang))}


# -- actions -----------------------------------------------------------------------------------------

def stop(ctx: StudioContext, job_id: str | None) -> str:
    try:
        ctx.store.request_stop(job_id)
    except (JobError, ValueError) as e:
        return said("msg-jobs-failed-action", error=str(e))
    ctx.scheduler.kick()
    return said("msg-jobs-stopping", id=job_id)


def resume(ctx: StudioContext, job_id: str | None) -> str:
    try:
        ctx.store.enqueue_resume(job_id)
    except (JobError, ValueError) as e:
        return said("msg-jobs-failed-action", error=str(e))
    ctx.scheduler.kick()
    return said("msg-jobs-resumed", id=job_id)


def ask_delete(ctx: StudioContext, job_id: str | None, lang: str) -> DeleteQuestion:
    try:
        job = ctx.store.get_job(job_id)
    except (JobError, ValueError) as e:
        return DeleteQuestion(gr.update(visible=False), "", said("msg-jobs-failed-action", error=str(e)))
    return DeleteQuestion(gr.update(visible=True), said("msg-jobs-delete-question", name=job.name, id=job.id), "")


def delete(ctx: StudioContext, job_id: str | None, lang: str) -> Deleted:
    try:
        ctx.store.delete_job(job_id)
    except (JobError, ValueError) as e:
        return Deleted(gr.update(visible=False), said("msg-jobs-failed-action", error=str(e)), gr.skip())
    downloads.forget(ctx.workdir, job_id)
    jobs = ctx.store.list_jobs(refresh=False)
    chosen = pick_job(jobs, None)
    return Deleted(gr.update(visible=False), said("msg-jobs-deleted", id=job_id),
                   gr.update(choices=job_choices(jobs, lang), value=chosen))


def load_config(ctx: StudioContext, job_id: str | None) -> dict:
    job = ctx.store.get_job(job_id)
    return job.paths.read_config()


def connect(ctx: StudioContext, tab: JobsTab, lang: gr.Radio) -> None:
    # One event for the timer and a newly chosen job, so a page's monitor updates one at a time: the
    # watch skips what it last sent, and a slow render of the choice finishing after a tick had
    # shown a later state left the monitor at that earlier state for good (a short job's "running").
    gr.on([tab.timer.tick, tab.select.change], lambda current, watch, sig, lg: tick(ctx, tab, current, watch, sig, lg),
          [tab.select, tab.watch, tab.table_sig, lang], tab.tick_outputs(), show_progress="hidden",
          concurrency_limit=None, trigger_mode="always_last", api_name="tick")  # bench/load_watch.py calls it
    tab.stop.click(partial(stop, ctx), tab.select, tab.action_status)
    tab.resume.click(partial(resume, ctx), tab.select, tab.action_status)
    tab.delete.click(lambda j, lg: tab.updates(ask_delete(ctx, j, lg)), [tab.select, lang],
                     tab.outputs(DeleteQuestion))
    tab.cancel.click(lambda: gr.update(visible=False), None, tab.confirm_row)
    tab.confirm.click(lambda j, lg: tab.updates(delete(ctx, j, lg)), [tab.select, lang], tab.outputs(Deleted))


def on_load(ctx: StudioContext, tab: JobsTab, lang: str) -> dict:
    """The first view of a page (for `tick_outputs`): the job list and the job to watch, a running
    one first."""
    return tick(ctx, tab, None, None, None, lang)
