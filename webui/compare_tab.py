"""The Compare tab: two to four training jobs side by side. Their training-loss, eval-loss and DPO
reward curves overlaid, one colour per job; their final figures in one table (with the evaluation
after training, where the job has one); and only the settings they differ in, each named by its
label in the schema.

Everything is read from the job directories when the tab is shown, on Refresh and when the choice
changes, so a running job shows its curves so far; the curves are read as the Jobs tab reads them
(webui.monitor). The views are named tuples whose fields name the CompareTab components they go to.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import gradio as gr
import pandas as pd
import yaml

from trainer.config import iter_fields
from trainer.eval_jobs import after_training_dir, is_eval_config, read_metrics
from trainer.jobs import Job, JobError
from webui import monitor
from webui.context import StudioContext
from webui.eval_figures import AFTER_TRAINING_LABELS, FIGURES, MISSING, checkpoint_names, figure_text
from webui.form import flat_values
from webui.i18n import Phrase, both, field_id, props, said, t
from webui.jobs_tab import job_choices
from webui.views import TabViews

MIN_JOBS, MAX_JOBS = 2, 4
JOB_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#d97706")
# the final-figures table's rows, in order; a row no chosen job has a figure for is left out
ROWS = ("state", "steps", "loss", "best-eval", "final-eval", "reward-accuracy", "reward-margin", "runtime", "tokens")
_ABSENT = object()


class CompareView(NamedTuple):
    """What the chosen jobs look like side by side; a status line says why nothing is shown."""
    status: str
    loss: Any
    evals: Any
    reward_series: Any
    rewards: Any
    metrics: Any
    differ: Any
    same: Any


class JobChoice(NamedTuple):
    jobs: Any


@dataclass
class CompareTab(TabViews):
    jobs: gr.Dropdown
    refresh: gr.Button
    status: gr.Markdown
    loss: gr.LinePlot
    evals: gr.LinePlot
    reward_series: gr.Radio
    rewards: gr.LinePlot
    metrics: gr.Dataframe
    differ: gr.Dataframe
    same: gr.Markdown


@dataclass
class Compared:
    """One chosen job as read for the comparison."""
    job: Job
    name: str  # its column and its curves' key: the job's name, with its id where two chosen share it
    watch: dict  # its whole metrics history, as webui.monitor reads it
    config: dict | None  # dotted schema key -> value; None when config.yaml cannot be read
    evaluation: dict  # the evaluation after training: metrics.json as trainer/evaluate.py writes it, or {}


def _frame(rows: list[tuple], y: str) -> pd.DataFrame:
    # explicit dtypes: the plot picks a numeric or a categorical axis from them, even with no rows
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="float64"),
                         y: pd.Series([r[1] for r in rows], dtype="float64"),
                         "job": pd.Series([r[2] for r in rows], dtype="string")})


def build(ctx: StudioContext) -> CompareTab:
    T = ctx.texts
    T.make(gr.Markdown, "compare-intro")
    with gr.Row(equal_height=False):
        jobs = T.make(gr.Dropdown, "compare-jobs", choices=[], value=[], multiselect=True, scale=5)
        refresh = T.make(gr.Button, "compare-refresh", size="sm", scale=0, min_width=120)
    status = gr.Markdown(elem_id="compare-status")
    with gr.Row():
        loss = T.make(gr.LinePlot, "compare-loss", x="step", y="loss", color="job",
                      value=_frame([], "loss"))
        evals = T.make(gr.LinePlot, "compare-evals", x="step", y="eval_loss", color="job",
                       value=_frame([], "eval_loss"), visible=False)
    reward_series = T.make(gr.Radio, "compare-reward_series", value="margin", visible=False)
    rewards = T.make(gr.LinePlot, "compare-rewards", x="step", y="value", color="job",
                     value=_frame([], "value"), visible=False)
    metrics = T.make(gr.Dataframe, "compare-metrics", interactive=False, wrap=True, visible=False)
    differ = T.make(gr.Dataframe, "compare-differ", interactive=False, wrap=True, visible=False)
    same = gr.Markdown(elem_id="compare-same")
    return CompareTab(jobs, refresh, status, loss, evals, reward_series, rewards, metrics, differ, same)


# -- reading -----------------------------------------------------------------------------------------

def training_jobs(ctx: StudioContext) -> list[Job]:
    """The jobs one can compare: every training run in the store, in any state (not evaluations)."""
    return [job for job in ctx.store.list_jobs(refresh=False) if not is_eval_config(job.config_summary)]


def read_jobs(ctx: StudioContext, job_ids: list[str]) -> tuple[list[Compared], list[Phrase]]:
    """The chosen jobs that can be compared, and what is wrong with the others."""
    notes: list[Phrase] = []
    jobs: list[Job] = []
    for job_id in job_ids:
        try:
            job = ctx.store.get_job(job_id)
        except (JobError, ValueError):
            notes.append(Phrase("msg-compare-gone", {"id": job_id}))
            continue
        if is_eval_config(job.config_summary):
            notes.append(Phrase("msg-compare-not-training", {"name": job.name}))
        else:
            jobs.append(job)
    named = Counter(job.name for job in jobs)
    compared = []
    for job in jobs:
        name = job.name if named[job.name] == 1 else f"{job.name} · {job.id}"
        watch = monitor.new_watch(None)
        monitor.read_new_metrics(watch, job)
        try:
            config = flat_values(job.paths.read_config())
        except (OSError, yaml.YAMLError) as e:
            config = None
            notes.append(Phrase("msg-compare-no-config", {"name": name, "error": str(e)}))
        evaluation = read_metrics(after_training_dir(job.job_dir))
        compared.append(Compared(job, name, watch, config, evaluation if isinstance(evaluation, dict) else {}))
    return compared, notes


# -- curves ------------------------------------------------------------------------------------------

def curves_frame(compared: list[Compared], points_of: Callable[[dict], list], y: str) -> pd.DataFrame:
    """One curve per job (`points_of(watch)`: [step, value] pairs), thinned so the plot draws at
    most about as many points as the Jobs tab's."""
    limit = monitor.MAX_POINTS // max(len(compared), 1)
    rows = []
    for c in compared:
        points = [(step, value) for step, value in points_of(c.watch) if _number(value)]
        rows += [(step, value, c.name) for step, value in monitor.thin(points, limit)]
    return _frame(rows, y)


def reward_points(series: str) -> Callable[[dict], list]:
    """A DPO curve (a monitor.REWARD_SERIES name) as [step, value] pairs of a watch."""
    column = 1 + monitor.REWARD_SERIES.index(series)
    return lambda watch: [[row[0], row[column]] for row in watch["rewards"]]


def _plot(frame: pd.DataFrame, colours: dict[str, str], visible: bool = True) -> dict:
    # A new colour map makes the plot draw itself again with the chosen jobs as its colour domain:
    # it keeps the domain of the data it was drawn with, and leaves out lines whose key is not in it.
    return gr.update(value=frame, color_map=colours, visible=visible)


# -- the final figures -------------------------------------------------------------------------------

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def figures(c: Compared, lang: str) -> dict[Any, str]:
    """What the final-figures table shows of one job: a ROWS name or (metric, checkpoint) of the
    evaluation after training -> the figure as shown. A figure the job lacks is left out."""
    last, p = c.watch["last"], monitor.progress(c.job, c.watch)
    out: dict[Any, str] = {"state": t(f"msg-state-{c.job.state}", lang),
                           "steps": f"{p['step']}/{p['total']}" if p["total"] else str(p["step"])}
    if _number(last.get("loss")):
        out["loss"] = f"{last['loss']:.4f}"
    evals = [value for _, value in c.watch["eval"] if _number(value)]
    if evals:
        out["best-eval"], out["final-eval"] = f"{min(evals):.4f}", f"{evals[-1]:.4f}"
    if _number(last.get("reward_accuracy")):
        out["reward-accuracy"] = f"{last['reward_accuracy']:.1%}"
    if _number(last.get("reward_margin")):
        out["reward-margin"] = f"{last['reward_margin']:.4f}"
    if p["elapsed_s"] is not None:
        out["runtime"] = monitor.fmt_duration(p["elapsed_s"])
    if _number(last.get("tokens_per_s")):
        out["tokens"] = f"{last['tokens_per_s']:,.0f}"
    models, labels = c.evaluation.get("models"), c.evaluation.get("labels")
    models = models if isinstance(models, dict) else {}
    names = checkpoint_names(list(models), labels if isinstance(labels, dict) else {})  # in no language yet
    for model, results in models.items():
        for metric in FIGURES:
            if isinstance(results, dict) and _number(results.get(metric)):
                out[(metric, names[model])] = figure_text(metric, results[metric])
    return out


def _row_label(row: Any, lang: str) -> str:
    if isinstance(row, str):
        return t(f"msg-compare-row-{row}", lang)
    metric, model = row
    if model in AFTER_TRAINING_LABELS:
        model = t(f"msg-compare-{model}", lang)
    return t("msg-compare-row-eval", lang, metric=t(f"msg-compare-metric-{metric}", lang), model=model)


def metrics_frame(compared: list[Compared], lang: str) -> pd.DataFrame:
    """Final figures, one column per job; a job's missing figure shows as MISSING."""
    shown = [figures(c, lang) for c in compared]
    models = list(dict.fromkeys(row[1] for f in shown for row in f if isinstance(row, tuple)))
    after = AFTER_TRAINING_LABELS
    models.sort(key=lambda model: after.index(model) if model in after else len(after))  # base, tuned, the rest
    rows = [row for row in ROWS if any(row in f for f in shown)]
    rows += [(metric, model) for metric in FIGURES for model in models if any((metric, model) in f for f in shown)]
    return pd.DataFrame([[_row_label(row, lang), *(f.get(row, MISSING) for f in shown)] for row in rows],
                        columns=[t("msg-compare-col-figure", lang), *(c.name for c in compared)])


# -- the settings ------------------------------------------------------------------------------------

def differing_keys(configs: list[dict | None]) -> list[str]:
    """Schema keys, in schema order, whose value is not the same in every readable config; a key
    that some of them lack differs."""
    readable = [config for config in configs if config is not None]
    present = {key for config in readable for key in config}
    keys = []
    for spec in iter_fields():
        if spec.key in present:
            values = [config.get(spec.key, _ABSENT) for config in readable]
            if any(value != values[0] for value in values[1:]):
                keys.append(spec.key)
    return keys


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value, ensure_ascii=False, default=str)


def config_frame(compared: list[Compared], lang: str) -> pd.DataFrame:
    """The settings the jobs differ in: the field's label and key, then one column per job."""
    rows = [[props(field_id(key), lang)["label"], key,
             *(_setting(c.config[key]) if c.config and key in c.config else MISSING for c in compared)]
            for key in differing_keys([c.config for c in compared])]
    return pd.DataFrame(rows, columns=[t("msg-compare-col-setting", lang), t("msg-compare-col-key", lang),
                                       *(c.name for c in compared)])


# -- the view ----------------------------------------------------------------------------------------

def _notes(notes: list[Phrase]) -> str:
    return both(lambda lang: "\n\n".join(note.text(lang) for note in notes))


def _refused(status: str) -> CompareView:
    hidden = gr.update(visible=False)
    return CompareView(status=status, loss=_plot(_frame([], "loss"), {}), evals=hidden, reward_series=hidden,
                       rewards=hidden, metrics=hidden, differ=hidden, same="")


def compare(ctx: StudioContext, job_ids: list[str] | None, series: str | None, lang: str) -> CompareView:
    """The chosen jobs side by side, or why they cannot be (fewer than two, more than four, gone)."""
    job_ids = list(dict.fromkeys(job_ids or []))
    if len(job_ids) > MAX_JOBS:
        return _refused(said("msg-compare-too-many", count=len(job_ids)))
    if len(job_ids) < MIN_JOBS:
        return _refused(said("msg-compare-too-few", count=len(job_ids)))
    compared, notes = read_jobs(ctx, job_ids)
    if len(compared) < MIN_JOBS:  # some are gone, or are evaluations
        return _refused(_notes([*notes, Phrase("msg-compare-too-few", {"count": len(compared)})]))
    colours = {c.name: colour for c, colour in zip(compared, JOB_COLORS)}
    series = series if series in monitor.REWARD_SERIES else "margin"
    has_eval = any(c.watch["eval"] for c in compared)
    has_rewards = any(c.watch["rewards"] for c in compared)
    differ = config_frame(compared, lang)
    # with one config readable there is nothing to set it against (the status says which one is not)
    same = differ.empty and sum(c.config is not None for c in compared) >= MIN_JOBS
    return CompareView(
        status=_notes(notes),
        loss=_plot(curves_frame(compared, lambda watch: watch["loss"], "loss"), colours),
        evals=_plot(curves_frame(compared, lambda watch: watch["eval"], "eval_loss"), colours, has_eval),
        reward_series=gr.update(value=series, visible=has_rewards),
        rewards=_plot(curves_frame(compared, reward_points(series), "value"), colours, has_rewards),
        metrics=gr.update(value=metrics_frame(compared, lang), visible=True),
        differ=gr.update(value=differ, visible=not differ.empty),
        same=said("msg-compare-same") if same else "")


def refresh(ctx: StudioContext, tab: CompareTab, chosen: list[str] | None, series: str | None, lang: str) -> dict:
    """The job list again (keeping the chosen jobs that still exist) and the comparison drawn anew."""
    jobs = training_jobs(ctx)
    ids = {job.id for job in jobs}
    kept = [job_id for job_id in chosen or [] if job_id in ids]
    return {**tab.updates(JobChoice(gr.update(choices=job_choices(jobs, lang), value=kept))),
            **tab.updates(compare(ctx, kept, series, lang))}


def connect(ctx: StudioContext, tab: CompareTab, lang: gr.Radio) -> None:
    # `input`, not `change`: a refresh sets the choice itself and draws the comparison in the same step
    draw_inputs = [tab.jobs, tab.reward_series, lang]
    for changed in (tab.jobs.input, tab.reward_series.input):
        changed(lambda ids, series, lg: tab.updates(compare(ctx, ids, series, lg)), draw_inputs,
                tab.outputs(CompareView), show_progress="hidden")
    redraw_on(ctx, tab, lang, tab.refresh.click)


def redraw_on(ctx: StudioContext, tab: CompareTab, lang: gr.Radio, *triggers: Callable) -> None:
    """Refresh the job list and the comparison on each trigger (the tab shown, a language switch)."""
    for trigger in triggers:
        trigger(lambda ids, series, lg: refresh(ctx, tab, ids, series, lg), [tab.jobs, tab.reward_series, lang],
                [*tab.outputs(JobChoice), *tab.outputs(CompareView)], show_progress="hidden")
