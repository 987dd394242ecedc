"""An evaluation's figures as the Evaluate and Jobs tabs show them: its checkpoints and the names
they are shown by, the metrics table (one column per checkpoint), the progress note of an
evaluation under way (the model it is on; a training run's evaluation after training), and the
Jobs tab's panel of a job's figures (an evaluation job's own, a training job's JOB/eval).

Everything is read from the evaluation directory trainer/evaluate.py writes (config.yaml,
metrics.json, status.json), through trainer.eval_jobs; nothing here imports paddle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd
import yaml

from trainer.eval_jobs import after_training_dir, is_eval_config, read_metrics
from trainer.eval_metrics import METRICS
from trainer.jobfiles import JobFileError, read_status
from trainer.jobs import Job, JobError
from webui.context import StudioContext
from webui.i18n import said, t
from webui.views import TabViews

MISSING = "—"
FIGURES = (*METRICS, "perplexity")
# the labels trainer/evaluate.py's after_training gives, shown in the page's language
AFTER_TRAINING_LABELS = ("base", "tuned")


def checkpoints(eval_dir: os.PathLike | str) -> tuple[list[str], dict[str, str]]:
    """The evaluation's checkpoints in its order and their labels: its config.yaml's, else what
    metrics.json has so far; ([], {}) before either is written."""
    try:
        config = yaml.safe_load((Path(eval_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        config = None
    if is_eval_config(config) and isinstance(config.get("models"), list):
        labels = config.get("labels") if isinstance(config.get("labels"), dict) else {}
        return [str(m) for m in config["models"]], {str(k): str(v) for k, v in labels.items()}
    metrics = read_metrics(eval_dir) or {}
    models = metrics.get("models") if isinstance(metrics.get("models"), dict) else {}
    labels = metrics.get("labels") if isinstance(metrics.get("labels"), dict) else {}
    return list(models), {str(k): str(v) for k, v in labels.items()}


def checkpoint_names(models: list[str], labels: dict[str, str], lang: str | None = None) -> dict[str, str]:
    """model -> the name it is shown by: its label (`base` and `tuned` in `lang`, as they are with
    no language), else the last part of its path, else the model as given; a name two models share
    gives way to the models themselves."""
    def name(model: str) -> str:
        label = labels.get(model)
        if label in AFTER_TRAINING_LABELS and lang:
            return t(f"msg-compare-{label}", lang)
        return label or Path(model).name or model

    names = {model: name(model) for model in models}
    taken = [names[m] for m in models]
    return {m: names[m] if taken.count(names[m]) == 1 else m for m in models}


def figure_text(metric: str, value: float) -> str:
    """A metric as the tables show it: exact match as a share, ROUGE and BLEU (0-100) with two
    decimals, perplexity with four significant digits."""
    if metric == "exact_match":
        return f"{value:.1%}"
    return f"{value:.4g}" if metric == "perplexity" else f"{value:.2f}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(figures: Any, metric: str, lang: str) -> str:
    if not isinstance(figures, dict) or "error" in figures:
        return MISSING
    if _number(figures.get(metric)):
        return figure_text(metric, figures[metric])
    why = (figures.get("not_computed") or {}).get(metric)
    return t("msg-eval-not-computed", lang, why=why) if why else MISSING


def _count(figures: Any, key: str) -> str:
    if not isinstance(figures, dict) or not _number(figures.get(key)):
        return MISSING
    if key == "answered" and _number(figures.get("rows")):
        return f"{figures['answered']} / {figures['rows']}"
    return str(figures[key])


def metrics_frame(metrics: dict, models: list[str], names: dict[str, str], lang: str) -> pd.DataFrame:
    """The figures of each checkpoint, one column each: the metrics (or why one was not computed),
    the answered, shortened and skipped prompts, and a failed checkpoint's error. A checkpoint not
    evaluated yet shows MISSING."""
    results = metrics.get("models") if isinstance(metrics.get("models"), dict) else {}
    shown = [results.get(model) for model in models]
    rows = [[t(f"msg-compare-metric-{metric}", lang), *(_cell(f, metric, lang) for f in shown)] for metric in FIGURES]
    for key, text in (("answered", "msg-eval-row-answered"), ("prompts_truncated", "msg-eval-row-truncated"),
                      ("prompts_skipped", "msg-eval-row-skipped")):
        rows.append([t(text, lang), *(_count(f, key) for f in shown)])
    errors = [str(f["error"]) if isinstance(f, dict) and "error" in f else "" for f in shown]
    if any(errors):
        rows.append([t("msg-eval-row-error", lang), *(error or MISSING for error in errors)])
    return pd.DataFrame(rows, columns=[t("msg-compare-col-figure", lang), *(names[m] for m in models)])


def figures_table(eval_dir: os.PathLike | str, lang: str) -> pd.DataFrame | None:
    """The metrics table of an evaluation directory, or None before its metrics.json is written."""
    metrics = read_metrics(eval_dir)
    if not isinstance(metrics, dict):
        return None
    models, labels = checkpoints(eval_dir)
    return metrics_frame(metrics, models, checkpoint_names(models, labels, lang), lang)


def progress_note(job: Job, lang: str) -> str:
    """What a progress line adds while `job` runs: the checkpoint an evaluation is on, or a training
    run's evaluation after training and its answers so far; "" otherwise."""
    if not job.active:
        return ""
    try:
        status = read_status(job.job_dir)
    except JobFileError:
        return ""
    if is_eval_config(job.config_summary):
        model = status.get("model")
        if not model:
            return ""
        models, labels = checkpoints(job.job_dir)
        return t("msg-eval-now", lang, model=checkpoint_names(models, labels, lang).get(model, model))
    if status.get("phase") != "evaluating":
        return ""
    try:
        evaluation = read_status(after_training_dir(job.job_dir))
    except JobFileError:
        evaluation = {}
    return t("msg-jobs-evaluating", lang, step=evaluation.get("step") or 0, total=evaluation.get("total_steps") or "?")


# -- the Jobs tab's panel --------------------------------------------------------------------------------

class FiguresView(NamedTuple):
    """The watched job's evaluation figures; gr.skip() everywhere while they are as last shown."""
    box: Any
    note: Any
    table: Any


@dataclass
class FiguresPanel(TabViews):
    box: gr.Column
    note: gr.Markdown
    table: gr.Dataframe


def build(ctx: StudioContext) -> FiguresPanel:
    with gr.Column(visible=False, elem_id="jobs-eval") as box:
        note = gr.Markdown(elem_id="jobs-eval_note")
        table = ctx.texts.make(gr.Dataframe, "jobs-eval_table", interactive=False, wrap=True)
    return FiguresPanel(box, note, table)


def file_stamp(path: Path) -> tuple | None:
    """(modification time, size) of a file the evaluation rewrites or appends to; None while missing."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def job_view(ctx: StudioContext, watch: dict, lang: str) -> FiguresView:
    """The figures of the job the Jobs tab's monitor `watch` shows: an evaluation job's own, or a
    training job's evaluation after training; hidden for a job with neither (yet)."""
    try:
        job = ctx.store.get_job(watch["job"]) if watch["job"] else None
    except JobError:
        job = None
    own = job is not None and is_eval_config(job.config_summary)
    eval_dir = None if job is None else job.job_dir if own else after_training_dir(job.job_dir)
    key = (watch["job"], lang, eval_dir and file_stamp(eval_dir / "metrics.json"))
    if watch["shown"].get("eval") == key:
        return FiguresView(gr.skip(), gr.skip(), gr.skip())
    watch["shown"]["eval"] = key
    table = figures_table(eval_dir, lang) if eval_dir is not None else None
    if table is None:
        return FiguresView(gr.update(visible=False), "", gr.skip())
    return FiguresView(gr.update(visible=True), said("msg-jobs-eval-own" if own else "msg-jobs-eval-after"), table)
