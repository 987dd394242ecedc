"""Zip archives of a job's output or export, offered for download (trainer.archive builds them).

They are built inside Gradio's file cache (app.py puts it at WORKDIR/tmp/uploads): Gradio serves a
file from there as it is, where a file anywhere else would first be hashed and copied into the
cache, which for a model of many GB doubles the disk used and the wait. Each job has a folder of
its own, removed with the job. No paddle here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from trainer.archive import ArchiveError, archive_name, checkpoint_members, describe, is_fresh, job_archive
from trainer.jobs import Job, JobError, JobStore
from webui.dataset_store import human_size
from webui.i18n import said


def downloads_dir(workdir: Path) -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(workdir) / "tmp") / "downloads"


def job_folder(workdir: Path, job: Job) -> Path:
    return downloads_dir(workdir) / job.id


def _label(job: Job) -> str:
    return job.name if job.name == job.id else f"{job.name}-{job.id}"


def archive(store: JobStore, job_id: str, export_dir: Path | None = None) -> Path:
    """The zip of a completed job's output (or of `export_dir`, its export), built when missing or
    older than what it holds; ArchiveError says why there is none."""
    job = store.get_job(job_id)
    return job_archive(job.job_dir, job_folder(store.workdir, job), name=_label(job), export_dir=export_dir)


def ready(store: JobStore, job: Job, export_dir: Path | None = None) -> Path | None:
    """The job's archive when it is already built and up to date, else None; builds nothing."""
    source = Path(export_dir) if export_dir is not None else job.paths.output
    kind = "export" if export_dir is not None else describe(source)[0]
    target = job_folder(store.workdir, job) / archive_name(_label(job), kind)
    try:
        members = checkpoint_members(source, job.paths.config)
    except ArchiveError:
        return None
    return target if is_fresh(target, members) else None


def forget(workdir: Path, job_id: str) -> None:
    """Remove a deleted job's archives."""
    shutil.rmtree(downloads_dir(workdir) / job_id, ignore_errors=True)


def button(path: Path | None):
    """A download button's update: offering `path`, or hidden when there is nothing to offer."""
    return gr.update(value=str(path), visible=True) if path else gr.update(value=None, visible=False)


def zip_steps(make: Callable[[], Path]) -> Iterator[tuple[str, Any]]:
    """(note, download button) while `make` builds an archive, then once it is ready or failed."""
    yield said("msg-zip-building"), button(None)
    try:
        path = make()
    except (ArchiveError, JobError, ValueError) as e:
        yield said("msg-zip-failed", error=str(e)), gr.skip()
        return
    yield said("msg-zip-ready", name=path.name, size=human_size(path.stat().st_size)), button(path)
