"""Exports of finished jobs: `python -m trainer export JOB --merge -o DIR` in a subprocess, with
`--quantize W --group-size N --report` for a quantized one.

The merge loads the model (paddle), so it never runs in the UI process. Each export writes its
output to JOB/export.log and its state to JOB/export.json (out_dir, width, pid, exit code), so a reloaded
page or a restarted app still shows where the last export went, or that it is still running.
Nothing here imports gradio or paddle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.quant_spec import QuantError, parse_spec
from plumbing.files import atomic_write_json, directory_size, tail_text
from plumbing.paths import REPO_ROOT
from trainer.export_facts import default_export_dir
from trainer.jobfiles import COMPLETED, JobPaths
from trainer.jobs import JobStore
from trainer.processes import create_time, process_alive, spawn_detached


class ExportError(Exception):
    """An export that cannot be started, and why."""


@dataclass
class ExportStatus:
    state: str  # none | running | done | failed
    out_dir: Path | None = None
    size: int = 0
    error: str = ""
    log: str = ""
    width: str | None = None  # the quantization, None for full precision
    group_size: int = -1


def recorded_export(paths: JobPaths) -> dict | None:
    """The job's export.json (the last export the UI started), None when there is none."""
    try:
        return json.loads(paths.export_state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


class ExportRunner:
    def __init__(self, store: JobStore, python: str | None = None):
        self.store = store
        self.python = python or sys.executable
        self._lock = threading.Lock()

    def default_dir(self, job_id: str) -> Path:
        return self.store.get_job(job_id).paths.export

    def resolve_output(self, job_id: str, text: str, width: str | None = None, group_size: int = -1) -> Path:
        """The directory an export may write, from what the user typed (relative to the workdir;
        empty: JOB/export, or JOB/export-WIDTH for a quantized export).

        The exporter replaces the directory it is given, so anything that is not new, empty or an
        earlier export is refused, as are the workdir, the repository and the job's own files."""
        job = self.store.get_job(job_id)
        text = (text or "").strip()
        if not text:
            return default_export_dir(job.job_dir, width, group_size)
        out = Path(text).expanduser()
        out = (out if out.is_absolute() else self.store.workdir / out).resolve()
        protected = [self.store.workdir, REPO_ROOT, Path.home().resolve(), job.job_dir]
        for guarded in protected:
            if _is_within(guarded, out):
                raise ExportError(f"{out} holds {guarded}; choose a new directory for the export")
        for inside in (job.paths.output, job.paths.checkpoints, self.store.workdir / "datasets",
                       self.store.workdir / "models"):
            if _is_within(out, inside):
                raise ExportError(f"{out} is inside {inside}; choose a directory of its own for the export")
        try:
            if out.exists():
                if not out.is_dir():
                    raise ExportError(f"{out} exists and is not a directory")
                if any(out.iterdir()) and not (out / "config.json").is_file():
                    raise ExportError(f"{out} is not empty and is not an earlier export; the export replaces "
                                      f"its directory, so choose a new or empty one")
        except OSError as e:  # a name too long, a directory we may not read
            raise ExportError(f"cannot use {text[:80]!r} as the export directory: {e.strerror}") from None
        return out

    def start(self, job_id: str, out_text: str = "", width: str | None = None, group_size="-1") -> Path:
        """Start exporting a completed job, quantized as `width` (None: full precision) with its
        quality report; returns the directory it will write."""
        spec = None
        if width is not None:
            try:
                spec = parse_spec(width, group_size)
            except QuantError as e:
                raise ExportError(str(e)) from None
        with self._lock:
            job = self.store.refresh(job_id)
            if job.state != COMPLETED:
                raise ExportError(f"job {job_id} is {job.state}; only a completed job can be exported")
            if self.status(job_id).state == "running":
                raise ExportError(f"job {job_id} is already being exported")
            out = self.resolve_output(job_id, out_text, *((spec.width, spec.group_size) if spec else ()))
            argv = [self.python, "-m", "trainer", "export", str(job.job_dir), "--merge", "-o", str(out)]
            if spec is not None:
                argv += ["--quantize", spec.width, "--group-size", str(spec.group_size), "--report"]
            proc = spawn_detached(argv, job.paths.export_log, env={"ERNIE_STUDIO_HOME": str(self.store.workdir)},
                                  append=False)
            state = {"out_dir": str(out), "width": spec and spec.width, "group_size": spec.group_size if spec else -1,
                     "pid": proc.pid, "create_time": create_time(proc.pid),
                     "started": time.time(), "exit_code": None}
            atomic_write_json(job.paths.export_state, state)
            threading.Thread(target=self._wait, args=(job.paths, proc, state), daemon=True,
                             name=f"export-{job_id}").start()
            return out

    @staticmethod
    def _wait(paths: JobPaths, proc: subprocess.Popen, state: dict) -> None:
        code = proc.wait()
        atomic_write_json(paths.export_state, {**state, "exit_code": code, "ended": time.time()})

    def status(self, job_id: str) -> ExportStatus:
        job = self.store.get_job(job_id)
        state = recorded_export(job.paths)
        if state is None:
            return ExportStatus("none")
        out = Path(state["out_dir"])
        quant = {"width": state.get("width"), "group_size": state.get("group_size", -1)}
        log = tail_text(job.paths.export_log, max_bytes=12000, max_lines=60)
        code = state.get("exit_code")
        if code is None:
            if process_alive(state.get("pid"), state.get("create_time")):
                return ExportStatus("running", out, log=log, **quant)
            # The app that waited for it is gone; the exporter's own last line says how it ended.
            code = 0 if f"exported to {out}" in log else 1
        if code == 0 and out.is_dir():
            return ExportStatus("done", out, directory_size(out), log=log, **quant)
        lines = [line for line in log.splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "export failed" in line or "Error" in line),
                     lines[-1] if lines else f"exit status {code}")
        return ExportStatus("failed", out, error=error, log=log, **quant)

