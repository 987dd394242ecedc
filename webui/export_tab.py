"""The Export tab: merge a completed job's LoRA adapter into its base model (or copy a full model)
and write a self-contained checkpoint, quantized if chosen, in a `python -m trainer export`
subprocess (webui.exports); shows where it went and its size, a quantized export's quality report,
and the FastDeploy command that serves the export; follows a running export across page reloads,
and offers a finished export as a zip to download (webui.downloads).

The views are named tuples whose fields are named after the ExportTab components they go to
(`ExportTab.updates` turns one into `{component: value}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

from trainer.eval_jobs import is_eval_config
from trainer.export_facts import fastdeploy_command, read_report, report_notes, report_table
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobError
from webui import downloads
from webui.context import StudioContext
from webui.dataset_store import human_size
from webui.export_texts import NO_QUANTIZATION
from webui.exports import ExportError, ExportStatus
from webui.i18n import both, said
from webui.monitor import log_html
from webui.views import TabViews

POLL_S = 1.0


class ExportView(NamedTuple):
    """The status line and the log box of a job's last export; once it is done, its quality report
    (a quantized export) and the FastDeploy command that serves it."""
    status: str
    log: Any
    quality: str
    serve_note: str
    serve: Any


def unfinished(status: str, log: Any) -> ExportView:
    """The view of an export that has nothing to report yet: no quality report, no command."""
    return ExportView(status, log, "", "", gr.update(value="", visible=False))


class ExportDownload(NamedTuple):
    """The zip button, shown once the export has finished, and the download of a zip already built."""
    zip: Any
    download: Any


class Zipped(NamedTuple):
    zip_note: Any
    download: Any


class ExportChoice(NamedTuple):
    """The completed jobs to choose from, and the chosen one's export."""
    job: Any
    status: str
    log: Any
    quality: str
    serve_note: str
    serve: Any


@dataclass
class ExportTab(TabViews):
    job: gr.Dropdown
    out_dir: gr.Textbox
    quant: gr.Dropdown
    group: gr.Dropdown
    start: gr.Button
    status: gr.Markdown
    quality: gr.Markdown
    serve_note: gr.Markdown
    serve: gr.Code
    log: gr.HTML
    timer: gr.Timer
    shown: gr.State  # what the poll last sent this session
    zip: gr.Button
    download: gr.DownloadButton
    zip_note: gr.Markdown



def build(ctx: StudioContext) -> ExportTab:
    T = ctx.texts
    T.make(gr.Markdown, "export-intro")
    with gr.Row(equal_height=True):
        job = T.make(gr.Dropdown, "export-job", choices=[], value=None, scale=2)
        out_dir = T.make(gr.Textbox, "export-dir", max_lines=1, scale=2)
        start = T.make(gr.Button, "export-start", variant="primary", scale=0, min_width=120)
    with gr.Row(equal_height=True):
        quant = T.make(gr.Dropdown, "export-quant", value=NO_QUANTIZATION, scale=2)
        group = T.make(gr.Dropdown, "export-group", value="-1", scale=2)
    status = gr.Markdown(elem_id="export-status")
    quality = gr.Markdown(elem_id="export-quality")
    serve_note = gr.Markdown(elem_id="export-serve_note")
    serve = T.make(gr.Code, "export-serve", language="shell", interactive=False, visible=False, lines=1, max_lines=3)
    with gr.Row():
        zip_button = T.make(gr.Button, "export-zip", size="sm", visible=False)
        download = T.make(gr.DownloadButton, "export-download", size="sm", visible=False)
    zip_note = gr.Markdown(elem_id="export-zip_note")
    log = T.make(gr.HTML, "export-log", value=log_html([]), show_label=True, container=True)
    return ExportTab(job, out_dir, quant, group, start, status, quality, serve_note, serve, log,
                     gr.Timer(POLL_S, active=False), gr.State(None), zip_button, download, zip_note)


def completed_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    """The completed training jobs (an evaluation has no model to export)."""
    return [(job.name if job.name == job.id else f"{job.name} · {job.id}", job.id)
            for job in ctx.store.list_jobs(refresh=False)
            if job.state == COMPLETED and not is_eval_config(job.config_summary)]


def status_view(ctx: StudioContext, job_id: str | None) -> ExportView:
    """The job's last export: its status line and log, and once done what finished_view shows."""
    if not job_id:
        return unfinished(said("msg-export-none") if not completed_choices(ctx) else "", log_html([]))
    try:
        status = ctx.exports.status(job_id)
    except (JobError, ValueError):
        return unfinished("", log_html([]))
    log = log_html(status.log.splitlines())
    if status.state == "none":
        return unfinished(said("msg-export-not-yet"), log)
    if status.state == "running":
        return unfinished(said("msg-export-running", dir=status.out_dir), log)
    if status.state == "done":
        return ExportView(said("msg-export-done", dir=status.out_dir, size=human_size(status.size)), log,
                          *finished_view(ctx.store.get_job(job_id).job_dir, status))
    return unfinished(said("msg-export-failed", error=status.error), log)


def report_markdown(report: dict, lang: str) -> str:
    """A quality report as the tab shows it: what it was measured on, then its table."""
    headers, rows = report_table(report, lang)
    title, *notes = report_notes(report)
    lines = [f"**{title.text(lang)}**", "", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + [""] + [note.text(lang) for note in notes])


def finished_view(job_dir, status: ExportStatus) -> tuple[str, str, Any]:
    """(quality report, serving notes, FastDeploy command) of a finished export."""
    report = read_report(status.out_dir) if status.width else None
    command = fastdeploy_command(status.out_dir, job_dir, status.width, status.group_size)
    return (both(lambda lang: report_markdown(report, lang)) if report else "",
            both(lambda lang: "\n\n".join(note.text(lang) for note in command.notes)),
            gr.update(value=command.text, visible=True))


def download_view(ctx: StudioContext, job_id: str | None) -> ExportDownload:
    try:
        status = ctx.exports.status(job_id) if job_id else None
    except (JobError, ValueError):
        status = None
    if status is None or status.state != "done":
        return ExportDownload(gr.update(visible=False), downloads.button(None))
    job = ctx.store.get_job(job_id)
    return ExportDownload(gr.update(visible=True), downloads.button(downloads.ready(ctx.store, job, status.out_dir)))


def make_zip(ctx: StudioContext, job_id: str | None):
    """The zip of the job's finished export, step by step (webui.downloads.zip_steps)."""
    def archive():
        status = ctx.exports.status(job_id) if job_id else None
        if status is None or status.state != "done":
            raise ValueError(f"job {job_id} has no finished export")
        return downloads.archive(ctx.store, job_id, export_dir=status.out_dir)

    for note, download in downloads.zip_steps(archive):
        yield Zipped(note, download)


def refresh(ctx: StudioContext, current: str | None) -> ExportChoice:
    choices = completed_choices(ctx)
    ids = [value for _, value in choices]
    chosen = current if current in ids else (ids[0] if ids else None)
    view = status_view(ctx, chosen)
    return ExportChoice(gr.update(choices=choices, value=chosen), *view)


def start(ctx: StudioContext, job_id: str | None, out_text: str, width: str = NO_QUANTIZATION,
          group_size: str = "-1") -> ExportView:
    if not job_id:
        return ExportView(said("msg-export-none"), *[gr.skip()] * 4)
    try:
        ctx.exports.start(job_id, out_text, None if width in (None, NO_QUANTIZATION) else width, group_size)
    except (ExportError, JobError, ValueError) as e:
        return ExportView(said("msg-export-refused", error=str(e)), *[gr.skip()] * 4)
    return status_view(ctx, job_id)


def connect(ctx: StudioContext, tab: ExportTab, lang: gr.Radio) -> None:
    def poll(job_id, shown):
        # the download offer walks the export's files: only when the export's status has changed
        view = status_view(ctx, job_id)
        key = (job_id, *view)
        if key == shown:
            return gr.skip()
        return {**tab.updates(view), **tab.updates(download_view(ctx, job_id)), tab.shown: key}

    def zipped(job_id):
        for step in make_zip(ctx, job_id):
            yield tab.updates(step)

    polled = [*tab.outputs(ExportView), *tab.outputs(ExportDownload), tab.shown]
    tab.timer.tick(poll, [tab.job, tab.shown], polled, show_progress="hidden", concurrency_limit=None)
    tab.job.input(lambda j: {**tab.updates(status_view(ctx, j)), **tab.updates(download_view(ctx, j)),
                                 tab.zip_note: ""},
                  tab.job, [*tab.outputs(ExportView), *tab.outputs(ExportDownload), tab.zip_note])
    # archives are written one at a time: several at once would only share the disk's speed
    tab.zip.click(zipped, tab.job, tab.outputs(Zipped), concurrency_id="archive", concurrency_limit=1)
    tab.start.click(lambda j, d, w, g: tab.updates(start(ctx, j, d, w, g)), [tab.job, tab.out_dir, tab.quant, tab.group],
                    tab.outputs(ExportView))
