"""An evaluation as a job of the queue: its config (the same file `trainer eval --config` reads and
an evaluation directory keeps), the command the job store launches for it, and reading what it wrote
(no paddle: the web UI reads evaluations through this module).

An evaluation job's directory is a job directory (trainer/jobfiles.py: config.yaml, status.json, the
STOP file, its log) that also holds trainer/evaluate.py's files (predictions.jsonl, metrics.json).
Its status counts answers in `step`/`total_steps` (with `unit: "answers"`), so the queue, the job
list and the monitor show its progress and ETA as they do a training run's. A training run with
`eval.after_training` writes the same files into JOB/eval/ (`after_training_dir`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

KIND = "evaluation"
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_BATCH_SIZE = 16
MAX_MODELS = 8


class EvalError(ValueError):
    """The evaluation cannot start as asked, and why."""


def eval_config(models: list[str], data: str, format: str = "auto", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                batch_size: int = DEFAULT_BATCH_SIZE, labels: dict[str, str] | None = None,
                device: str = "cpu") -> dict:
    """The checked config of an evaluation: `models` (built-in names, hub ids, checkpoint, export,
    adapter or job directories) answering `data` (a data file, or a job directory for the rows that
    job evaluated on). `labels` names models for display (e.g. base, tuned)."""
    models = [str(m).strip() for m in models or []]
    if not models or not all(models):
        raise EvalError("models: expected one or more checkpoints (a built-in name, a hub id or a directory)")
    if len(models) > MAX_MODELS:
        raise EvalError(f"models: at most {MAX_MODELS} checkpoints in one evaluation, got {len(models)}")
    repeated = sorted({m for m in models if models.count(m) > 1})
    if repeated:
        raise EvalError(f"models: {', '.join(repeated)} given more than once")
    if not isinstance(data, str) or not data.strip():
        raise EvalError("data: expected a data file, or a job directory for the rows it evaluated on")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EvalError(f"{name}: expected a positive whole number, got {value!r}")
    if device not in ("cpu", "gpu"):
        raise EvalError(f"device: expected cpu or gpu, got {device!r}")
    labels = {str(k): str(v) for k, v in (labels or {}).items() if str(k) in models}
    return {"kind": KIND, "models": models, "labels": labels, "data": data.strip(), "format": format or "auto",
            "decoding": "greedy", "max_new_tokens": max_new_tokens, "batch_size": batch_size,
            "truncation": "auto", "devices": {"device": device}}


def from_mapping(mapping: Any, source: str = "the evaluation config") -> dict:
    """An eval config read from YAML, checked; EvalError names what is wrong."""
    if not is_eval_config(mapping):
        raise EvalError(f"{source}: expected kind: {KIND}")
    unknown = sorted(set(mapping) - {"kind", "models", "labels", "data", "format", "decoding", "max_new_tokens",
                                     "batch_size", "truncation", "devices"})
    if unknown:
        raise EvalError(f"{source}: unknown key(s) {', '.join(unknown)}")
    devices = mapping.get("devices") or {}
    try:
        return eval_config(mapping.get("models") or [], mapping.get("data") or "", mapping.get("format", "auto"),
                           mapping.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
                           mapping.get("batch_size", DEFAULT_BATCH_SIZE), mapping.get("labels"),
                           devices.get("device", "cpu") if isinstance(devices, dict) else devices)
    except EvalError as exc:
        raise EvalError(f"{source}: {exc}") from None


def load_eval_config(path: os.PathLike | str) -> dict:
    """An eval config file, read and checked; EvalError names the file and what is wrong."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EvalError(f"{path}: not valid YAML ({exc})") from None
    return from_mapping(mapping, str(path))


def is_eval_config(config: Any) -> bool:
    return isinstance(config, dict) and config.get("kind") == KIND


def eval_argv(config_path: os.PathLike | str, job_dir: os.PathLike | str) -> list[str]:
    """The command the job store launches for an evaluation job."""
    return [sys.executable, "-m", "trainer", "eval", "--config", str(config_path), "--job-dir", str(job_dir)]


def job_name(config: dict) -> str:
    """A job list name: what is evaluated on what."""
    shown = [config["labels"].get(m) or Path(m).name or m for m in config["models"]]
    return f"eval: {' vs '.join(shown)} on {Path(config['data']).name}"


def create_eval_job(store, config: dict, name: str | None = None):
    """Queue an evaluation in the job store (trainer.jobs.JobStore); the scheduler starts it."""
    config = from_mapping(config)
    summary = {"kind": KIND, "models": ", ".join(config["models"]), "data": config["data"]}
    return store.create_job(config, name=name or job_name(config), summary=summary)


def after_training_dir(job_dir: os.PathLike | str) -> Path:
    """Where a training job's `eval.after_training` evaluation writes its files."""
    return Path(job_dir) / "eval"


def read_metrics(eval_dir: os.PathLike | str) -> dict | None:
    """metrics.json of an evaluation directory, or None before its first checkpoint is done."""
    try:
        return json.loads((Path(eval_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_predictions(eval_dir: os.PathLike | str) -> list[dict]:
    """The whole lines of predictions.jsonl (a line still being written is left for the next read)."""
    try:
        text = (Path(eval_dir) / "predictions.jsonl").read_text(encoding="utf-8")
    except OSError:
        return []
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        lines.append(json.loads(line))
    return lines
