"""What the Jobs tab shows about one job, read from its directory: curves from metrics.jsonl and
the log tail, both followed by byte offset (a tick reads only what was appended), progress with
elapsed time and ETA, and the live CPU and memory use of the job's processes.

A `Watch` is one browser session's view of one job; it is a plain dict so it can live in gr.State.
Nothing here imports gradio.
"""

from __future__ import annotations

import html
import math
import os
import re
import threading
import time
from typing import Any

import pandas as pd
import psutil

from plumbing.files import tail_text
from trainer.jobfiles import COMPLETED, JobFileError, LogTail, MetricsTail, read_status
from trainer.jobs import Job

LOG_LINES = 200
MAX_POINTS = 1500

_procs: dict[int, psutil.Process] = {}
_procs_lock = threading.Lock()


def new_watch(job: Job | None) -> dict:
    """Start watching a job: its whole metrics history once, the last lines of its log, then offsets."""
    watch: dict[str, Any] = {"job": None, "metrics_offset": 0, "log_offset": 0, "loss": [], "eval": [],
                             "lr": [], "rewards": [], "imbalance": [], "experts": None, "experts_offset": 0, "last": {},
                             "log": [], "bad_lines": 0, "shown": {}}
    if job is None:
        return watch
    watch["job"] = job.id
    read_new_metrics(watch, job)
    text = tail_text(job.paths.log, max_bytes=64_000, max_lines=LOG_LINES)
    watch["log"] = text.splitlines()
    try:
        watch["log_offset"] = job.paths.log.stat().st_size
    except FileNotFoundError:
        watch["log_offset"] = 0
    return watch


def read_new_metrics(watch: dict, job: Job) -> bool:
    """Append the records written since the last read; True if there were any."""
    tail = MetricsTail(job.paths.metrics, offset=watch["metrics_offset"])
    records = tail.read()
    watch["metrics_offset"] = tail.offset
    watch["bad_lines"] += tail.bad_lines
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)):
            continue
        if "loss" in record:
            watch["loss"].append([step, record["loss"]])
            if "lr" in record:
                watch["lr"].append([step, record["lr"]])
            if "expert_imbalance" in record:
                watch["imbalance"].append([step, record["expert_imbalance"]])
            if "reward_accuracy" in record:
                watch["rewards"].append([step, *(record.get(f"reward_{name}") for name in REWARD_SERIES)])
            watch["last"] = record
        if "eval_loss" in record:
            watch["eval"].append([step, record["eval_loss"]])
    experts = MetricsTail(job.paths.expert_load, offset=watch["experts_offset"])
    loads = experts.read()
    watch["experts_offset"] = experts.offset
    if loads:
        watch["experts"] = loads[-1]
    return bool(records or loads)


def read_new_log(watch: dict, job: Job) -> bool:
    tail = LogTail(job.paths.log, offset=watch["log_offset"])
    lines = tail.read()
    watch["log_offset"] = tail.offset
    if lines:
        watch["log"] = (watch["log"] + lines)[-LOG_LINES:]
    return bool(lines)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_html(lines: list[str]) -> str:
    """Log lines in a box that stays scrolled to its end (a column-reverse flex container), with no
    script, whether or not its tab was visible when the lines arrived; colour codes removed."""
    text = html.escape(_ANSI.sub("", "\n".join(lines)))
    return f'<div class="studio-log"><pre>{text}</pre></div>'


def thin(points: list, limit: int = MAX_POINTS) -> list:
    """At most `limit` + 1 of a curve's points: evenly spaced, and always the last one."""
    if len(points) <= limit:
        return points
    every = -(-len(points) // limit)
    return points[::every] + ([points[-1]] if (len(points) - 1) % every else [])


# Series keys are fixed and the frame always names both: the plot fixes its colour domain from the
# data it is first drawn with, and a line whose key is not in that domain is not drawn at all.
SERIES = ("train", "eval")
SERIES_COLORS = {"train": "#2563eb", "eval": "#dc2626"}


def loss_frame(watch: dict) -> pd.DataFrame:
    train, evals = thin(watch["loss"]), thin(watch["eval"])
    anchors = [(math.nan, math.nan)] * len(SERIES)
    points = anchors + train + evals
    # explicit dtypes: the plot picks a numeric or a categorical axis from them, even with no rows
    return pd.DataFrame({
        "step": pd.Series([s for s, _ in points], dtype="float64"),
        "loss": pd.Series([v for _, v in points], dtype="float64"),
        "series": pd.Series([*SERIES, *["train"] * len(train), *["eval"] * len(evals)], dtype="string"),
    })


# A DPO job's metrics: the rewards of the chosen and rejected replies, their margin, and the share
# of pairs where the chosen reply wins (reward accuracy, between 0 and 1).
REWARD_SERIES = ("chosen", "rejected", "margin", "accuracy")
REWARD_COLORS = {"chosen": "#16a34a", "rejected": "#dc2626", "margin": "#2563eb", "accuracy": "#d97706"}


def reward_frame(watch: dict) -> pd.DataFrame:
    points = thin(watch["rewards"])
    rows = [(math.nan, math.nan, name) for name in REWARD_SERIES]
    rows += [(row[0], value, name) for row in points for name, value in zip(REWARD_SERIES, row[1:])
             if isinstance(value, (int, float))]
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="float64"),
                         "value": pd.Series([r[1] for r in rows], dtype="float64"),
                         "series": pd.Series([r[2] for r in rows], dtype="string")})


def imbalance_frame(watch: dict) -> pd.DataFrame:
    points = thin(watch["imbalance"])
    return pd.DataFrame({"step": pd.Series([s for s, _ in points], dtype="float64"),
                         "imbalance": pd.Series([v for _, v in points], dtype="float64")})


def expert_heatmap_html(record: dict | None, title: str, group_names: tuple[str, ...] = ()) -> str:
    """Layers by experts, each cell shaded by the share of its expert group's tokens in that layer
    the expert received in the last logging window (an even share is the palest blue that is not
    white). A VL model's text and vision experts (`groups` of the record) are headed apart, named
    by `group_names`, with a border between them."""
    if not record:
        return ""
    experts = len(record["tokens"][0])
    sizes = record.get("groups") or [experts]
    starts = [sum(sizes[:g]) for g in range(len(sizes))]
    group_of = [g for g, size in enumerate(sizes) for _ in range(size)]
    rows = []
    for layer, tokens, imbalance in zip(record["layers"], record["tokens"], record["imbalance"]):
        totals = [max(sum(tokens[start:start + size]), 1) for start, size in zip(starts, sizes)]
        cells = []
        for expert, count in enumerate(tokens):
            group = group_of[expert]
            share = count / totals[group]
            strength = min(1.0, share * sizes[group] / 4)  # 4x an even share is full colour
            edge = " border-left: 3px solid #334155;" if group and expert == starts[group] else ""
            cells.append(f'<td title="layer {layer}, expert {expert}: {count} tokens" '
                         f'style="background: rgba(37, 99, 235, {strength:.3f}); color: '
                         f'{"#fff" if strength > 0.55 else "inherit"};{edge}">{share:.0%}</td>')
        rows.append(f'<tr><th>L{layer}</th>{"".join(cells)}<td class="studio-imbalance">{imbalance:.2f}</td></tr>')
    head = "".join(f"<th>E{e}</th>" for e in range(experts))
    groups = ""
    if len(sizes) > 1:
        groups = "<tr><th></th>" + "".join(
            f'<th colspan="{size}" class="studio-expert-group">{html.escape(name)}</th>'
            for size, name in zip(sizes, group_names or [f"G{g}" for g in range(len(sizes))])) + "<th></th></tr>"
    return (f'<div class="studio-experts" data-step="{record["step"]}"><div class="studio-card-label">'
            f'{html.escape(title.format(step=record["step"]))}</div><table>{groups}<tr><th></th>{head}'
            f'<th>max/mean</th></tr>{"".join(rows)}</table></div>')


def lr_frame(watch: dict) -> pd.DataFrame:
    points = thin(watch["lr"])
    return pd.DataFrame({"step": pd.Series([s for s, _ in points], dtype="float64"),
                         "lr": pd.Series([v for _, v in points], dtype="float64")})


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress(job: Job, watch: dict) -> dict:
    """step, total, pct, elapsed_s and eta_s (None where unknown)."""
    step, total = job.step or 0, job.total_steps
    if job.state == COMPLETED and total:
        step = total
    pct = min(100.0, 100.0 * step / total) if total else 0.0
    now = time.time()
    elapsed = None
    if job.started:
        elapsed = (job.ended or now) - job.started
    eta = None
    last = watch.get("last") or {}
    if job.state == COMPLETED:
        eta = 0.0
    elif job.active and isinstance(last.get("eta_s"), (int, float)):
        try:
            written = job.paths.metrics.stat().st_mtime  # when the last record was appended
        except FileNotFoundError:
            written = now
        eta = max(0.0, last["eta_s"] - (now - written))
    elif job.active:  # an evaluation writes no metrics: its ETA is in status.json, as of `updated`
        eta = _status_eta(job, now)
    return {"step": step, "total": total, "pct": pct, "elapsed_s": elapsed, "eta_s": eta}


def _status_eta(job: Job, now: float) -> float | None:
    try:
        status = read_status(job.job_dir)
    except JobFileError:
        return None
    eta, written = status.get("eta_s"), status.get("updated")
    if not isinstance(eta, (int, float)):
        return None
    return max(0.0, eta - (now - written)) if isinstance(written, (int, float)) else eta


def _job_pids(status: dict) -> list[int]:
    pid = status.get("launcher_pid", status.get("pid"))
    return [pid] if isinstance(pid, int) and pid > 0 else []


def usage(job: Job) -> dict:
    """CPU % (100 = one core) and resident memory of the job's process tree; empty when not running."""
    if not job.active:
        return {}
    try:
        status = read_status(job.job_dir)
    except JobFileError:
        return {}
    found: list[psutil.Process] = []
    for pid in _job_pids(status):
        try:
            root = _cached(pid)
            found += [root] + [_cached(child.pid) for child in root.children(recursive=True)]
        except psutil.Error:
            continue
    cpu = rss = 0.0
    for proc in found:
        try:
            cpu += proc.cpu_percent(None)
            rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return {"cpu_percent": cpu, "rss_mb": rss / 2**20, "cores": os.cpu_count() or 1} if found else {}


def _cached(pid: int) -> psutil.Process:
    """One Process object per pid, so cpu_percent measures since the previous tick."""
    with _procs_lock:
        for gone in [p for p, cached in _procs.items() if not cached.is_running()]:
            del _procs[gone]
        proc = _procs.get(pid)
        if proc is None or not proc.is_running():
            proc = _procs[pid] = psutil.Process(pid)
            proc.cpu_percent(None)
        return proc
