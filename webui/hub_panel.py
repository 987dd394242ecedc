"""The Train tab's hub download: when the model field holds a hub repo id (owner/name) that is not
downloaded, a Download button (with the hub to fetch from) appears beside it. The download runs as
`python -m trainer model download` in a detached subprocess (models.hub does the work; nothing here
imports paddle or a hub client), whose progress this panel reads from the download's state.json
once a second while it runs, so a reloaded page, or a download started from the command line,
shows the same progress. Once done, the repo id is listed among the models like any local
checkpoint.
"""

from __future__ import annotations

import html
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from models import hub
from models.registry import MODELS
from plumbing.files import atomic_write_json, directory_size, tail_text
from trainer.processes import create_time, process_alive, spawn_detached
from webui.context import StudioContext
from webui.dataset_store import human_size
from webui.i18n import both, said, t

NONE, RUNNING, ENDED, FAILED, DONE = "none", "running", "ended", "failed", "done"
_START_LOCK = threading.Lock()


@dataclass
class HubPanel:
    row: gr.Row  # the hub, Download and Stop: shown while the model field holds a repo id not yet downloaded
    hub: gr.Dropdown
    download: gr.Button
    stop: gr.Button
    status: gr.Markdown
    timer: gr.Timer
    finished: gr.State  # the repo id whose download finished last; its change redraws the preview
    listed: gr.State  # the models the page's model list shows (form.py starts it with the registry's)

    @property
    def outputs(self) -> list:
        return [self.row, self.download, self.stop, self.status, self.timer]


def build(ctx: StudioContext) -> HubPanel:
    T = ctx.texts
    with gr.Row(visible=False, equal_height=True) as row:
        source = T.make(gr.Dropdown, "train-hub-source", choices=[(name, key) for key, name in hub.HUBS.items()],
                        value=hub.default_hub(), scale=2, min_width=160)
        download = T.make(gr.Button, "train-hub-download", variant="secondary", scale=1, min_width=120)
        stop = T.make(gr.Button, "train-hub-stop", variant="stop", visible=False, scale=1, min_width=120)
    status = gr.Markdown(elem_id="train-hub-status")
    return HubPanel(row, source, download, stop, status, gr.Timer(1.0, active=False), gr.State(""),
                    gr.State(list(MODELS)))


def model_choices(ctx: StudioContext) -> list[str]:
    """The model field's list: the registry's models, then the repo ids downloaded into the workdir."""
    return list(MODELS) + hub.downloaded_models(ctx.workdir)


# -- the download process --------------------------------------------------------------------------

def phase(ctx: StudioContext, repo_id: str) -> tuple[str, dict]:
    """(NONE, RUNNING, ENDED: its process is gone mid-download, FAILED or DONE; the state.json)."""
    state = hub.read_state(ctx.workdir, repo_id)
    if hub.downloaded_dir(ctx.workdir, repo_id):
        return DONE, state
    if state.get("state") == hub.DOWNLOADING:
        return (RUNNING if process_alive(state.get("pid"), state.get("create_time")) else ENDED), state
    return (FAILED if state.get("state") == hub.FAILED else NONE), state


def start(ctx: StudioContext, repo_id: str, source: str) -> None:
    """Start downloading `repo_id` from hub `source`; HubError when it cannot start."""
    if not hub.is_repo_id(repo_id):
        raise hub.HubError(f"{repo_id!r} is not a hub repo id (owner/name)")
    if source not in hub.HUBS:
        raise hub.HubError(f"unknown hub {source!r}; expected one of {', '.join(hub.HUBS)}")
    repo_id = repo_id.strip()
    with _START_LOCK:
        now, state = phase(ctx, repo_id)
        if now == RUNNING:
            raise hub.HubError(f"{repo_id} is already being downloaded (pid {state.get('pid')})")
        hub.log_file(ctx.workdir, repo_id).parent.mkdir(parents=True, exist_ok=True)
        argv = [ctx.python, "-m", "trainer", "model", "download", repo_id, "--hub", source,
                "--workdir", str(ctx.workdir)]
        proc = spawn_detached(argv, hub.log_file(ctx.workdir, repo_id), append=False,
                              env={"ERNIE_STUDIO_HOME": str(ctx.workdir)})
        # Until the command writes its own state (a second or so), this one shows it as started,
        # keeping what an earlier run had measured.
        atomic_write_json(hub.state_file(ctx.workdir, repo_id),
                          {**state, "repo_id": repo_id, "hub": source, "state": hub.DOWNLOADING, "error": "",
                           "pid": proc.pid, "create_time": create_time(proc.pid)})
        threading.Thread(target=proc.wait, daemon=True, name=f"download-{repo_id}").start()


def stop(ctx: StudioContext, repo_id: str) -> None:
    """End a running download (it records itself as stopped; what arrived is kept)."""
    now, state = phase(ctx, repo_id)
    if now == RUNNING:
        os.kill(state["pid"], signal.SIGTERM)


# -- what the panel shows ----------------------------------------------------------------------------

def _bar(pct: float, css_state: str, text: str) -> str:
    return (f'<div class="studio-progress"><div class="studio-bar"><div class="studio-fill state-{css_state}" '
            f'style="width:{pct:.1f}%"></div></div><div class="studio-progress-text">{html.escape(text)}</div></div>')


def _measured(state: dict) -> tuple[float, dict]:
    done, total = state.get("bytes_done") or 0, state.get("bytes_total") or 0
    pct = 100 * min(done, total) / total if total else 0.0
    return pct, {"pct": f"{pct:.0f}%", "done": human_size(done), "total": human_size(total) if total else "?",
                 "files_done": state.get("files_done") or 0, "files_total": state.get("files_total") or "?",
                 "speed": human_size(state.get("bytes_per_s") or 0)}


def status_text(ctx: StudioContext, repo_id: str) -> tuple[str, str]:
    """(the phase, the status line: both languages, with a progress bar while it runs)."""
    now, state = phase(ctx, repo_id)
    source = hub.HUBS.get(state.get("hub") or "", "")
    if now == DONE:
        target = hub.model_dir(ctx.workdir, repo_id)
        return now, said("msg-hub-done", repo=repo_id, dir=target, size=human_size(directory_size(target)))
    if now == NONE:
        return now, said("msg-hub-missing", repo=repo_id, dir=hub.model_dir(ctx.workdir, repo_id),
                         command=hub.command_line(repo_id))
    pct, fields = _measured(state)
    if now == RUNNING:
        key = "msg-hub-progress" if state.get("bytes_total") else "msg-hub-starting"
        return now, both(lambda lg: _bar(pct, "running", t(key, lg, repo=repo_id, hub=source, **fields)))
    lines = [line for line in tail_text(hub.log_file(ctx.workdir, repo_id), 4000).splitlines() if line.strip()]
    last = lines[-1][:300] if lines else ""

    def failed(lg: str) -> str:
        # a process that ended without saying why (killed): its log's last line is the best clue
        reason = (t("msg-hub-process-ended", lg, pct=fields["pct"], last=last) if now == ENDED
                  else state.get("error") or "?")
        return _bar(pct, "stopped" if now == ENDED else "failed", t("msg-hub-failed", lg, repo=repo_id, error=reason))

    return now, both(failed)


def view(ctx: StudioContext, panel: HubPanel, model: str | None) -> dict:
    """The panel for the model field's value: hidden unless it is a repo id."""
    if not hub.is_repo_id(model):
        return {panel.row: gr.update(visible=False), panel.status: "", panel.timer: gr.Timer(active=False)}
    now, text = status_text(ctx, model.strip())
    running = now == RUNNING
    return {panel.row: gr.update(visible=now != DONE), panel.download: gr.update(visible=not running),
            panel.stop: gr.update(visible=running), panel.status: text, panel.timer: gr.Timer(active=running)}


# -- events ------------------------------------------------------------------------------------------

def connect(ctx: StudioContext, panel: HubPanel, model: gr.Dropdown, redraw: Callable) -> None:
    """Wire the panel to the model field. `redraw(event)` chains the Train tab's preview after
    `event`: a finished download turns the field's "not downloaded" problem into a valid model."""
    model.change(lambda m: view(ctx, panel, m), model, panel.outputs, show_progress="hidden")
    def relist(listed: list[str]) -> dict:
        # only a changed list is sent: redrawing an open list under the pointer could lose a click
        now = model_choices(ctx)
        # Gradio refuses an empty dict as a reply: an unchanged list sends only the (same) state
        return {panel.listed: listed} if now == listed else {model: gr.update(choices=now), panel.listed: now}

    # a download finished elsewhere (the command line, another page) appears when the list is opened
    model.focus(relist, panel.listed, [model, panel.listed], show_progress="hidden", queue=False)

    def on_download(m: str, source: str) -> dict:
        try:
            start(ctx, m, source)
        except hub.HubError as exc:
            return {**view(ctx, panel, m), panel.status: said("msg-hub-refused", error=str(exc))}
        return view(ctx, panel, m)

    def on_stop(m: str) -> dict:
        stop(ctx, (m or "").strip())
        return view(ctx, panel, m)

    def on_tick(m: str, finished: str, listed: list[str]) -> dict:
        updates = view(ctx, panel, m)
        repo_id = (m or "").strip()
        if hub.is_repo_id(repo_id) and hub.downloaded_dir(ctx.workdir, repo_id) and finished != repo_id:
            updates.update(relist(listed))
            updates[panel.finished] = repo_id
        return updates

    panel.download.click(on_download, [model, panel.hub], panel.outputs, show_progress="hidden")
    panel.stop.click(on_stop, model, panel.outputs, show_progress="hidden")
    panel.timer.tick(on_tick, [model, panel.finished, panel.listed],
                     [*panel.outputs, model, panel.finished, panel.listed], show_progress="hidden")
    redraw(panel.finished.change(lambda: None, None, None, show_progress="hidden"))
