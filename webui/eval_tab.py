"""The Evaluate tab: checkpoints (built-in models, completed jobs' outputs and exports, as the Chat tab
lists them, or any directory or hub id) answer a data set (a stored dataset, a training job's
evaluation rows, a file) as an evaluation job of the queue (trainer.eval_jobs); the chosen
evaluation's progress with Stop, its figures per checkpoint (webui.eval_figures) and its answers side
by side with filters and downloads (webui.eval_results).

The evaluations are the store's evaluation jobs and the training jobs' evaluations after training
(JOB/eval), newest first. A timer ticks once a second while the tab is shown (webui.app turns it on
and off); each tick sends only what changed since the last, which the session's `shown` state
records. The views are named tuples whose fields name the EvalTab components they go to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import yaml

from models.hub import is_repo_id, not_downloaded
from models.registry import MODELS
from plumbing.paddle_build import installed_build
from trainer.eval_jobs import (DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, KIND, EvalError, after_training_dir,
                               create_eval_job, eval_config, is_eval_config, read_metrics, read_predictions)
from trainer.jobfiles import ACTIVE_STATES, COMPLETED, FAILED, STOPPED, JobFileError, read_status
from trainer.jobs import Job, JobError
from webui import downloads, eval_figures, eval_results, monitor
from webui.context import StudioContext
from webui.data_tab import dataset_choices
from webui.i18n import DEFAULT_LANG, Phrase, both, said, t
from webui.jobs_tab import job_choices, progress_html
from webui.model_servers import list_checkpoints
from webui.views import TabViews

TICK_S = 1.0
JOB_DATA = "job:"  # the data choice of a training job's evaluation rows: "job:<id>"
AFTER = "/eval"  # the choice of a training job's evaluation after training: "<id>/eval"


@dataclass
class EvalTab(TabViews):
    models: gr.Dropdown
    other: gr.Textbox
    data: gr.Dropdown
    max_new_tokens: gr.Number
    batch_size: gr.Number
    device: gr.Radio
    start: gr.Button
    start_status: gr.Markdown
    evaluation: gr.Dropdown
    stop: gr.Button
    note: gr.Markdown  # what Stop did
    progress: gr.HTML
    status: gr.Markdown  # the data read, a failure
    metrics: gr.Dataframe
    filter: gr.Radio
    model_a: gr.Dropdown
    model_b: gr.Dropdown
    examples: gr.HTML
    csv: gr.DownloadButton
    jsonl: gr.DownloadButton
    timer: gr.Timer
    shown: gr.State  # what this session's page shows, so a tick sends only what changed


class Picks(NamedTuple):
    """The checkpoint and data lists, read anew."""
    models: Any
    data: Any


class Filled(NamedTuple):
    """An evaluation's config put back into the form (Clone in the Jobs tab)."""
    models: Any
    other: Any
    data: Any
    max_new_tokens: Any
    batch_size: Any
    device: Any
    start_status: Any


class Started(NamedTuple):
    start_status: str
    evaluation: Any


class Shown(NamedTuple):
    """The chosen evaluation; gr.skip() for what has not changed since the session's last tick."""
    evaluation: Any
    stop: Any
    progress: Any
    status: Any
    metrics: Any
    model_a: Any
    model_b: Any
    examples: Any
    csv: Any
    jsonl: Any
    shown: dict


def _default_device() -> str:
    build = installed_build()
    return "gpu" if build is not None and build.has_cuda else "cpu"


def build(ctx: StudioContext) -> EvalTab:
    T = ctx.texts
    T.make(gr.Markdown, "eval-intro")
    with gr.Row(equal_height=False):
        models = T.make(gr.Dropdown, "eval-models", choices=checkpoint_choices(ctx), value=[], multiselect=True,
                        scale=3)
        other = T.make(gr.Textbox, "eval-other", lines=2, scale=2)
    with gr.Row(equal_height=True):
        data = T.make(gr.Dropdown, "eval-data", choices=data_choices(ctx), value=None, allow_custom_value=True,
                      scale=3)
        # no `minimum`: Gradio would refuse a 0 with an error toast; Start says what is wrong instead
        max_new_tokens = T.make(gr.Number, "eval-max_new_tokens", value=DEFAULT_MAX_NEW_TOKENS, precision=0, scale=1,
                                min_width=140)
        batch_size = T.make(gr.Number, "eval-batch_size", value=DEFAULT_BATCH_SIZE, precision=0, scale=1,
                            min_width=120)
        device = T.make(gr.Radio, "eval-device", choices=["cpu", "gpu"], value=_default_device(), scale=1,
                        min_width=140)
    start = T.make(gr.Button, "eval-start", variant="primary")
    start_status = gr.Markdown(elem_id="eval-start_status")
    with gr.Row(equal_height=False):
        evaluation = T.make(gr.Dropdown, "eval-select", choices=[], value=None, scale=5)
        with gr.Column(scale=1, min_width=120):
            stop = T.make(gr.Button, "eval-stop", variant="stop", size="sm", interactive=False)
    note = gr.Markdown(elem_id="eval-note")
    progress = gr.HTML(elem_id="eval-progress")
    status = gr.Markdown(elem_id="eval-status")
    metrics = T.make(gr.Dataframe, "eval-metrics", interactive=False, wrap=True, visible=False)
    with gr.Row(equal_height=True):
        filter_ = T.make(gr.Radio, "eval-filter", value="all", scale=3)
        model_a = T.make(gr.Dropdown, "eval-model_a", choices=[], value=None, scale=1, min_width=160)
        model_b = T.make(gr.Dropdown, "eval-model_b", choices=[], value=None, scale=1, min_width=160)
    examples = T.make(gr.HTML, "eval-examples", show_label=True, container=True)
    with gr.Row():
        csv = T.make(gr.DownloadButton, "eval-csv", size="sm", visible=False)
        jsonl = T.make(gr.DownloadButton, "eval-jsonl", size="sm", visible=False)
    return EvalTab(models, other, data, max_new_tokens, batch_size, device, start, start_status, evaluation, stop,
                   note, progress, status, metrics, filter_, model_a, model_b, examples, csv, jsonl,
                   gr.Timer(TICK_S, active=False), gr.State({}))


# -- what can be evaluated, on what --------------------------------------------------------------------

def checkpoint_choices(ctx: StudioContext, lang: str = DEFAULT_LANG) -> list[tuple[str, str]]:
    return [(c.label, c.value) for c in list_checkpoints(ctx.store, ctx.workdir, lang)]


def _has_eval_rows(job: Job) -> bool:
    try:
        data = job.paths.read_config().get("data") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    split = data.get("eval_split")
    return bool(data.get("eval")) or (isinstance(split, (int, float)) and split > 0)


def data_choices(ctx: StudioContext, lang: str = DEFAULT_LANG) -> list[tuple[str, str]]:
    """Stored datasets (by id, as the Data tab lists them), then each training job with evaluation
    rows (data.eval, or data.eval_split held out)."""
    jobs = [job for job in ctx.store.list_jobs(refresh=False)
            if not is_eval_config(job.config_summary) and _has_eval_rows(job)]
    return [*dataset_choices(ctx), *((t("msg-eval-job-rows", lang, name=job.name, id=job.id), JOB_DATA + job.id)
                                     for job in jobs)]


def picks(ctx: StudioContext, lang: str) -> Picks:
    return Picks(gr.update(choices=checkpoint_choices(ctx, lang)), gr.update(choices=data_choices(ctx, lang)))


def _data_path(ctx: StudioContext, choice: str) -> str | Phrase:
    """The data path of a choice (a stored dataset's id, a job's evaluation rows, a path typed in),
    or why there is none."""
    choice = (choice or "").strip()
    if not choice:
        return Phrase("msg-eval-pick-data")
    if choice.startswith(JOB_DATA):
        try:
            return str(ctx.store.get_job(choice[len(JOB_DATA):]).job_dir)
        except (JobError, ValueError):
            return Phrase("msg-eval-gone", {"what": choice[len(JOB_DATA):]})
    dataset = ctx.datasets.find(choice)
    if dataset is not None:
        return str(dataset.path)
    if not Path(choice).expanduser().exists():
        return Phrase("msg-eval-no-such-data", {"data": choice})
    return str(Path(choice).expanduser())


def _other_problem(ctx: StudioContext, model: str) -> Phrase | None:
    """Why a checkpoint written in by hand cannot be evaluated, before it is queued."""
    if model in MODELS or Path(model).expanduser().exists():
        return None
    if is_repo_id(model):
        missing = not_downloaded(model, ctx.workdir)
        return Phrase("msg-eval-refused", {"error": missing}) if missing else None
    return Phrase("msg-eval-no-such-checkpoint", {"path": model})


def checkpoint_labels(ctx: StudioContext, models: list[str]) -> dict[str, str]:
    """Labels for the checkpoints that are a job's: its name for its directory or output, with the
    folder's name for an export in it; a label two of them share gets the job's id."""
    jobs = {job.job_dir.resolve(): job for job in ctx.store.list_jobs(refresh=False)}
    labels: dict[str, tuple[str, str]] = {}
    for model in models:
        path = Path(model).expanduser()
        try:
            path = path.resolve()
        except (OSError, RuntimeError):
            continue
        job = jobs.get(path) or jobs.get(path.parent)
        if job is None:
            continue
        inside = path.parent == job.job_dir.resolve() and path.name != "output"
        labels[model] = (f"{job.name} ({path.name})" if inside else job.name, job.id)
    shown = [label for label, _ in labels.values()]
    return {model: label if shown.count(label) == 1 else f"{label} · {job_id}"
            for model, (label, job_id) in labels.items()}


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def start(ctx: StudioContext, models: list[str] | None, other: str | None, data: str | None, max_new_tokens: Any,
          batch_size: Any, device: str, lang: str) -> Started:
    """Queue the evaluation the form describes, or say why it cannot be."""
    typed = [line.strip() for line in (other or "").splitlines() if line.strip()]
    chosen = [*(models or []), *typed]
    if not chosen:
        return Started(said("msg-eval-pick-models"), gr.skip())
    for model in typed:
        problem = _other_problem(ctx, model)
        if problem is not None:
            return Started(said(problem.key, **problem.fields), gr.skip())
    path = _data_path(ctx, data)
    if isinstance(path, Phrase):
        return Started(said(path.key, **path.fields), gr.skip())
    try:
        config = eval_config(chosen, path, max_new_tokens=_whole(max_new_tokens), batch_size=_whole(batch_size),
                             labels=checkpoint_labels(ctx, chosen), device=device or "cpu")
        job = create_eval_job(ctx.store, config)
    except (EvalError, JobError) as e:
        return Started(said("msg-eval-refused", error=str(e)), gr.skip())
    ctx.scheduler.kick()
    return Started(said("msg-eval-queued", name=job.name, id=job.id),
                   gr.update(choices=evaluation_choices(list_evaluations(ctx), lang), value=job.id))


def fill(ctx: StudioContext, job_id: str, config: dict, lang: str) -> Filled:
    """The form holding an evaluation's config: the listed checkpoints chosen, the others written
    in, the data by its choice where it has one."""
    offered = {value for _, value in checkpoint_choices(ctx, lang)}
    models = [str(m) for m in config.get("models") or []]
    data = str(config.get("data") or "")
    dataset = ctx.datasets.by_path(data) if data else None
    jobs = {str(job.job_dir): job.id for job in ctx.store.list_jobs(refresh=False)}
    choice = dataset.id if dataset else JOB_DATA + jobs[data] if data in jobs else data
    return Filled(gr.update(choices=checkpoint_choices(ctx, lang), value=[m for m in models if m in offered]),
                  "\n".join(m for m in models if m not in offered),
                  gr.update(choices=data_choices(ctx, lang), value=choice),
                  config.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), config.get("batch_size", DEFAULT_BATCH_SIZE),
                  (config.get("devices") or {}).get("device", "cpu"), said("msg-eval-cloned", id=job_id))


# -- the evaluations -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    value: str  # its choice: an evaluation job's id, or "<training job id>/eval"
    job: Job  # its progress as a job's (for an evaluation after training, read from JOB/eval/status.json)
    owner: Job  # the job of the queue that runs it: Stop stops this one
    directory: Path


def _after_training(owner: Job) -> Evaluation | None:
    directory = after_training_dir(owner.job_dir)
    try:
        status = read_status(directory)
    except JobFileError:
        return None
    if not status:
        return None
    state, error = status.get("state", FAILED), status.get("error")
    if state in ACTIVE_STATES and not owner.active:  # the run ended (killed, failed) before its evaluation did
        state, error = (FAILED, owner.error) if owner.state == FAILED else (STOPPED, error)
    job = Job(id=owner.id, name=owner.name, state=state, job_dir=directory, created=owner.created,
              step=status.get("step"), total_steps=status.get("total_steps"), started=status.get("started"),
              ended=status.get("ended"), updated=status.get("updated"), error=error, config_summary={"kind": KIND})
    return Evaluation(owner.id + AFTER, job, owner, directory)


def list_evaluations(ctx: StudioContext) -> list[Evaluation]:
    """The evaluation jobs and the evaluations after training, newest job first."""
    found = []
    for job in ctx.store.list_jobs(refresh=False):
        if is_eval_config(job.config_summary):
            found.append(Evaluation(job.id, job, job, job.job_dir))
        else:
            after = _after_training(job)
            if after is not None:
                found.append(after)
    return found


def evaluation_choices(evaluations: list[Evaluation], lang: str) -> list[tuple[str, str]]:
    return [job_choices([e.job], lang)[0] if e.value == e.job.id else
            (t("msg-eval-after", lang, name=e.job.name, state=t(f"msg-state-{e.job.state}", lang), id=e.job.id),
             e.value) for e in evaluations]


def _status_line(evaluation: Evaluation) -> str:
    metrics = read_metrics(evaluation.directory) or {}
    parts = []
    if evaluation.job.state == FAILED and evaluation.job.error:
        parts.append(Phrase("msg-eval-failed", {"error": evaluation.job.error}))
    if metrics.get("rows"):
        parts.append(Phrase("msg-eval-rows", {"data": Path(str(metrics.get("data", ""))).name,
                                              "format": metrics.get("format", "?"), "rows": metrics["rows"]}))
    if metrics.get("rows_with_images_left_out"):
        parts.append(Phrase("msg-eval-images-left-out", {"count": metrics["rows_with_images_left_out"]}))
    if not metrics and evaluation.job.state not in (FAILED, STOPPED):
        parts.append(Phrase("msg-eval-waiting"))
    return both(lambda lang: "\n\n".join(part.text(lang) for part in parts))


def _results(ctx: StudioContext, evaluation: Evaluation, mode: str, a: str | None, b: str | None,
             lang: str) -> dict:
    """The figures, the A/B choices, the answers table and the downloads of one evaluation."""
    models, labels = eval_figures.checkpoints(evaluation.directory)
    names = eval_figures.checkpoint_names(models, labels, lang)
    default_a, default_b = eval_results.default_pair(models, labels)
    a = a if a in models else default_a
    b = b if b in models else default_b
    metrics = read_metrics(evaluation.directory)
    table = eval_figures.metrics_frame(metrics, models, names, lang) if isinstance(metrics, dict) else None
    rows = eval_results.example_rows(read_predictions(evaluation.directory))
    kept = eval_results.filtered(rows, mode, a, b)
    results = metrics.get("models") if isinstance(metrics, dict) and isinstance(metrics.get("models"), dict) else {}
    failed = frozenset(m for m, figures in results.items() if isinstance(figures, dict) and "error" in figures)
    files = None
    if evaluation.job.state in (COMPLETED, STOPPED, FAILED):  # the predictions are final
        stem = "evaluation-" + evaluation.owner.id + ("-after-training" if evaluation.value.endswith(AFTER) else "")
        files = eval_results.write_downloads(downloads.job_folder(ctx.workdir, evaluation.owner), stem,
                                             evaluation.directory / "predictions.jsonl", rows, models,
                                             eval_figures.checkpoint_names(models, labels))
    choices = [(names[m], m) for m in models]
    return {"metrics": gr.update(value=table, visible=True) if table is not None else gr.update(visible=False),
            "model_a": gr.update(choices=choices, value=a), "model_b": gr.update(choices=choices, value=b),
            "examples": eval_results.table_html(kept, len(rows), models, names, lang, failed) if rows else "",
            "csv": downloads.button(files[0] if files else None),
            "jsonl": downloads.button(files[1] if files else None)}


def tick(ctx: StudioContext, chosen: str | None, mode: str | None, a: str | None, b: str | None, shown: dict | None,
         lang: str) -> Shown:
    """The evaluation list and the chosen evaluation, each part only as far as it changed."""
    shown = dict(shown or {})
    evaluations = list_evaluations(ctx)
    by_value = {e.value: e for e in evaluations}
    chosen = chosen if chosen in by_value else (evaluations[0].value if evaluations else None)
    listing = (lang, chosen, tuple((e.value, e.job.name, e.job.state) for e in evaluations))
    evaluation_update = gr.skip()
    if shown.get("list") != listing:
        shown["list"] = listing
        evaluation_update = gr.update(choices=evaluation_choices(evaluations, lang), value=chosen)

    def changed(name: str, key: Any) -> bool:
        if shown.get(name) == key:
            return False
        shown[name] = key
        return True

    def maybe(name: str, value: Any) -> Any:
        return value if changed(name, value) else gr.skip()

    evaluation = by_value.get(chosen)
    if evaluation is None:
        if shown.get("results") == ("none", lang):
            return Shown(evaluation_update, *[gr.skip()] * 9, shown)
        shown.update(results=("none", lang), stop=False, progress="", status=None, metrics=None, pair=None, csv=None,
                     jsonl=None)
        return Shown(evaluation_update, gr.update(interactive=False), "", said("msg-eval-none"),
                     gr.update(visible=False), gr.update(choices=[], value=None), gr.update(choices=[], value=None), "",
                     downloads.button(None), downloads.button(None), shown)
    stoppable = (evaluation.owner.active or evaluation.owner.waiting) and \
        (evaluation.job.active or evaluation.value == evaluation.job.id)
    stop = gr.update(interactive=stoppable) if changed("stop", stoppable) else gr.skip()
    progress = maybe("progress", progress_html(evaluation.job, monitor.new_watch(None), lang))
    status = maybe("status", _status_line(evaluation))
    results_key = (chosen, lang, mode, a, b, evaluation.job.state,
                   *(eval_figures.file_stamp(evaluation.directory / name) for name in ("metrics.json",
                                                                                        "predictions.jsonl")))
    if shown.get("results") == results_key:
        return Shown(evaluation_update, stop, progress, status, *[gr.skip()] * 6, shown)
    results = _results(ctx, evaluation, mode or "all", a, b, lang)
    # the key is of the choice as drawn: a default A or B shown now is what the next tick gets
    shown["results"] = (*results_key[:3], results["model_a"]["value"], results["model_b"]["value"], *results_key[5:])
    # while answers come, only the answers table changes: an open dropdown is not redrawn under the pointer
    metrics = results["metrics"] if changed("metrics", (chosen, lang, results_key[6])) else gr.skip()
    pair = changed("pair", (results["model_a"]["choices"], results["model_a"]["value"], results["model_b"]["value"]))
    return Shown(evaluation_update, stop, progress, status, metrics, results["model_a"] if pair else gr.skip(),
                 results["model_b"] if pair else gr.skip(), results["examples"], maybe("csv", results["csv"]),
                 maybe("jsonl", results["jsonl"]), shown)


def stop(ctx: StudioContext, chosen: str | None) -> str:
    """Stop the chosen evaluation: its job, or the training job evaluating after training."""
    owner_id = (chosen or "").removesuffix(AFTER)
    try:
        job = ctx.store.get_job(owner_id)
        ctx.store.request_stop(owner_id)
    except (JobError, ValueError) as e:
        return said("msg-eval-failed-action", error=str(e))
    ctx.scheduler.kick()
    return said("msg-eval-stopping", name=job.name)


def connect(ctx: StudioContext, tab: EvalTab, lang: gr.Radio) -> None:
    def started(*values):
        return tab.updates(start(ctx, *values))

    tab.start.click(started, [tab.models, tab.other, tab.data, tab.max_new_tokens, tab.batch_size, tab.device, lang],
                    tab.outputs(Started))
    # One event for the timer and every choice, so a page's view updates one at a time (the `shown`
    # state of one tick is what the next one compares with).
    gr.on([tab.timer.tick, tab.evaluation.input, tab.filter.input, tab.model_a.input, tab.model_b.input],
          lambda *values: tab.updates(tick(ctx, *values)),
          [tab.evaluation, tab.filter, tab.model_a, tab.model_b, tab.shown, lang], tab.outputs(Shown),
          show_progress="hidden", concurrency_limit=None, trigger_mode="always_last")
    tab.stop.click(lambda chosen: stop(ctx, chosen), tab.evaluation, tab.note)


def redraw_on(ctx: StudioContext, tab: EvalTab, lang: gr.Radio, *triggers) -> None:
    """The checkpoint and data lists read anew on each trigger (the tab shown, a language switch)."""
    for trigger in triggers:
        trigger(lambda lg: tab.updates(picks(ctx, lg)), lang, tab.outputs(Picks), show_progress="hidden")

