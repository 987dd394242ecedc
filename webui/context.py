"""What every tab of the studio shares: the workdir, the job store and queue, the dataset store,
the export runner, the loaded chat models, the upload limit and the registry of translated texts.

One StudioContext exists per app process; it holds server-side truth only (jobs, datasets,
exports). Per-browser-session state (form values, the job being watched, the language) lives in
Gradio components and gr.State, never here, so two tabs never overwrite each other.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from trainer.jobs import JobStore
from trainer.scheduler import JobScheduler
from webui.dataset_store import DatasetStore
from webui.exports import ExportRunner
from webui.i18n import Texts
from webui.model_servers import LoadedModels

DEFAULT_MAX_UPLOAD_MB = 1024


@dataclass
class StudioContext:
    workdir: Path
    store: JobStore
    scheduler: JobScheduler
    datasets: DatasetStore
    exports: ExportRunner
    models: LoadedModels
    max_upload_bytes: int
    python: str = sys.executable
    texts: Texts = field(default_factory=Texts)


def make_context(workdir: str | Path, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 max_jobs_per_device: int = 1) -> StudioContext:
    """The context of a studio on `workdir` (created if missing). Its scheduler is not started."""
    workdir = Path(workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store = JobStore(workdir)
    max_bytes = int(max_upload_mb * 2**20)
    return StudioContext(
        workdir=workdir, store=store, scheduler=JobScheduler(store, max_per_device=max_jobs_per_device),
        datasets=DatasetStore(workdir, max_bytes), exports=ExportRunner(store), models=LoadedModels(workdir),
        max_upload_bytes=max_bytes,
    )
