"""The Jobs tab's output panel: for a completed job, where its output is, how big it is and what it
is (a LoRA adapter of its base, or a full model), with Chat with it (the Chat tab, that checkpoint
chosen), Export it (the Export tab, that job chosen) and a zip of it to download (webui.downloads).

The panel is part of the monitor's tick (webui.jobs_tab), recomputed only when the watched job or
its state changes; the watch's `shown` record says what it last showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import gradio as gr

from plumbing.files import directory_size
from trainer.archive import describe
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobError
from webui import downloads, export_tab
from webui.context import StudioContext
from webui.dataset_store import human_size
from webui.i18n import Phrase, said
from webui.model_servers import list_checkpoints
from webui.views import TabViews


class OutputView(NamedTuple):
    """The panel of the watched job; gr.skip() everywhere while it shows that job as it is."""
    box: Any
    info: Any
    download: Any
    note: Any


class Zipped(NamedTuple):
    note: Any
    download: Any


@dataclass
class OutputPanel(TabViews):
    box: gr.Column
    info: gr.Markdown
    chat: gr.Button
    export: gr.Button
    zip: gr.Button
    download: gr.DownloadButton
    note: gr.Markdown


def build(ctx: StudioContext) -> OutputPanel:
    T = ctx.texts
    with gr.Column(visible=False, variant="panel", elem_id="jobs-output") as box:
        info = gr.Markdown(elem_id="jobs-output_info")
        with gr.Row():
            chat = T.make(gr.Button, "jobs-chat_with", variant="primary", size="sm")
            export = T.make(gr.Button, "jobs-export_it", size="sm")
            zip_button = T.make(gr.Button, "jobs-zip", size="sm")
            download = T.make(gr.DownloadButton, "jobs-download", size="sm", visible=False)
        note = gr.Markdown(elem_id="jobs-output_note")
    return OutputPanel(box, info, chat, export, zip_button, download, note)


def view(ctx: StudioContext, watch: dict, lang: str) -> OutputView:
    """The panel of the job the monitor's `watch` shows: visible for a completed job with an output.

    The monitor's header names the job and its state, so while it is unchanged so is the panel,
    and a tick reads nothing more."""
    key = (watch["job"], watch["shown"].get("header"))
    if "output" in watch["shown"] and watch["shown"]["output"] == key:
        return OutputView(gr.skip(), gr.skip(), gr.skip(), gr.skip())
    watch["shown"]["output"] = key
    try:
        job = ctx.store.get_job(watch["job"]) if watch["job"] else None
    except JobError:
        job = None
    output = job.paths.output if job else None
    if job is None or job.state != COMPLETED or not output.is_dir():
        return OutputView(gr.update(visible=False), "", downloads.button(None), "")
    kind, base = describe(output)
    what = Phrase("msg-output-adapter", {"base": base}) if kind == "adapter" else Phrase("msg-output-model")
    info = said("msg-output-info", what=what, size=human_size(directory_size(output)), path=output)
    return OutputView(gr.update(visible=True), info, downloads.button(downloads.ready(ctx.store, job)), "")


def chat_with(ctx: StudioContext, job_id: str | None, lang: str) -> tuple[Any, Any, str]:
    """(tabs, chat model dropdown, note): the Chat tab with the job's output chosen."""
    try:
        output = str(ctx.store.get_job(job_id).paths.output)
    except (JobError, ValueError) as e:
        return gr.skip(), gr.skip(), said("msg-jobs-failed-action", error=str(e))
    choices = [(c.label, c.value) for c in list_checkpoints(ctx.store, ctx.workdir, lang)]
    if output not in {value for _, value in choices}:
        return gr.skip(), gr.skip(), said("msg-output-not-offered", path=output)
    return gr.Tabs(selected="chat"), gr.update(choices=choices, value=output), ""


def make_zip(ctx: StudioContext, job_id: str | None):
    for note, download in downloads.zip_steps(partial(downloads.archive, ctx.store, job_id)):
        yield Zipped(note, download)


def connect(ctx: StudioContext, panel: OutputPanel, job: gr.Dropdown, jobs_timer: gr.Timer, lang: gr.Radio,
            tabs: gr.Tabs, chat_model: gr.Dropdown, export: export_tab.ExportTab) -> None:
    """The panel's buttons; `job` is the Jobs tab's job chooser and `jobs_timer` its monitor's,
    `chat_model` the Chat tab's first model dropdown, `export` the Export tab."""
    # a tab chosen by a handler fires no select event, so the monitors' timers are set here: each
    # polls only while its tab is shown
    def chat(job_id, lang_value):
        selected, model, note = chat_with(ctx, job_id, lang_value)
        timers = {jobs_timer: gr.Timer(active=False), export.timer: gr.Timer(active=False)} if note == "" else {}
        return {tabs: selected, chat_model: model, panel.note: note, **timers}

    def export_it(job_id):
        return {tabs: gr.Tabs(selected="export"), **export.updates(export_tab.refresh(ctx, job_id)),
                jobs_timer: gr.Timer(active=False), export.timer: gr.Timer(active=True)}

    def zipped(job_id):
        for step in make_zip(ctx, job_id):
            yield panel.updates(step)

    panel.chat.click(chat, [job, lang], [tabs, chat_model, panel.note, jobs_timer, export.timer])
    panel.export.click(export_it, job, [tabs, *export.outputs(export_tab.ExportChoice), jobs_timer,
                                                export.timer])
    # archives are written one at a time: several at once would only share the disk's speed
    panel.zip.click(zipped, job, panel.outputs(Zipped), concurrency_id="archive", concurrency_limit=1)
