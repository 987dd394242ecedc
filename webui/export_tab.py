"""The Export tab: merge a completed job's LoRA adapter into its base model (or copy a full model)
and write a self-contained checkpoint, in a `python -m trainer export` subprocess (webui.exports);
shows where it went and its size, and follows a running export across page reloads.

The views are named tuples whose fields are named after the ExportTab components they go to
(`ExportTab.updates` turns one into `{component: value}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

from trainer.jobfiles import COMPLETED
from trainer.jobs import JobError
from webui.context import StudioContext
from webui.dataset_store import human_size
from webui.exports import ExportError
from webui.i18n import t
from webui.monitor import log_html
from webui.views import TabViews

POLL_S = 1.0


class ExportView(NamedTuple):
    """The status line and the log box of a job's last export."""
    status: str
    log: Any


class ExportChoice(NamedTuple):
    """The completed jobs to choose from, and the chosen one's export."""
    job: Any
    status: str
    log: Any


@dataclass
class ExportTab(TabViews):
    job: gr.Dropdown
    out_dir: gr.Textbox
    start: gr.Button
    status: gr.Markdown
    log: gr.HTML
    timer: gr.Timer
    shown: gr.State  # what the poll last sent this session



def build(ctx: StudioContext) -> ExportTab:
    T = ctx.texts
    T.make(gr.Markdown, "export-intro")
    with gr.Row(equal_height=True):
        job = T.make(gr.Dropdown, "export-job", choices=[], value=None, scale=2)
        out_dir = T.make(gr.Textbox, "export-dir", max_lines=1, scale=2)
        start = T.make(gr.Button, "export-start", variant="primary", scale=0, min_width=120)
    status = gr.Markdown(elem_id="export-status")
    log = T.make(gr.HTML, "export-log", value=log_html([]), show_label=True, container=True)
    return ExportTab(job, out_dir, start, status, log, gr.Timer(POLL_S), gr.State(None))


def completed_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    return [(job.name if job.name == job.id else f"{job.name} · {job.id}", job.id)
            for job in ctx.store.list_jobs(refresh=False) if job.state == COMPLETED]


def status_view(ctx: StudioContext, job_id: str | None, lang: str) -> ExportView:
    """The status line and the log box of the job's last export."""
    if not job_id:
        return ExportView(t("msg-export-none", lang) if not completed_choices(ctx) else "", log_html([]))
    try:
        status = ctx.exports.status(job_id)
    except (JobError, ValueError):
        return ExportView("", log_html([]))
    log = log_html(status.log.splitlines())
    if status.state == "none":
        return ExportView(t("msg-export-not-yet", lang), log)
    if status.state == "running":
        return ExportView(t("msg-export-running", lang, dir=status.out_dir), log)
    if status.state == "done":
        return ExportView(t("msg-export-done", lang, dir=status.out_dir, size=human_size(status.size)), log)
    return ExportView(t("msg-export-failed", lang, error=status.error), log)


def refresh(ctx: StudioContext, current: str | None, lang: str) -> ExportChoice:
    choices = completed_choices(ctx)
    ids = [value for _, value in choices]
    chosen = current if current in ids else (ids[0] if ids else None)
    view = status_view(ctx, chosen, lang)
    return ExportChoice(gr.update(choices=choices, value=chosen), view.status, view.log)


def start(ctx: StudioContext, job_id: str | None, out_text: str, lang: str) -> ExportView:
    if not job_id:
        return ExportView(t("msg-export-none", lang), gr.skip())
    try:
        ctx.exports.start(job_id, out_text)
    except (ExportError, JobError, ValueError) as e:
        return ExportView(t("msg-export-refused", lang, error=str(e)), gr.skip())
    return status_view(ctx, job_id, lang)


def connect(ctx: StudioContext, tab: ExportTab, lang: gr.Radio) -> None:
    def poll(job_id, shown, lang_value):
        view = status_view(ctx, job_id, lang_value)
        key = (job_id, lang_value, *view)
        if key == shown:
            return gr.skip()
        return {**tab.updates(view), tab.shown: key}

    tab.timer.tick(poll, [tab.job, tab.shown, lang], [*tab.outputs(ExportView), tab.shown], show_progress="hidden",
                   concurrency_limit=None)
    tab.job.input(lambda j, lg: tab.updates(status_view(ctx, j, lg)), [tab.job, lang], tab.outputs(ExportView))
    tab.start.click(lambda j, d, lg: tab.updates(start(ctx, j, d, lg)), [tab.job, tab.out_dir, lang],
                    tab.outputs(ExportView))
