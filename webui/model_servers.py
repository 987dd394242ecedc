"""The checkpoints the studio can chat with, and the model servers it has loaded for them.

A checkpoint is a built-in model, a completed job's output (a full model or a LoRA adapter, served
unmerged) or a job's export. Loading one starts a `python -m models.serve` process
(models.server_process); every browser session shares it, and unloading it, or quitting the app,
ends the process, which is what frees the model's memory. No paddle here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from models.chat_client import ChatClient
from models.checkpoints import ModelNotFound, is_adapter, read_model_config
from models.hub import downloaded_models
from models.quant_spec import QuantError, quantization_of
from models.registry import MODELS
from models.server_process import ModelServer
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobStore
from webui.exports import recorded_export
from webui.i18n import DEFAULT_LANG, t


@dataclass(frozen=True)
class Checkpoint:
    value: str  # what models.serve --model takes: a built-in name or a directory
    label: str


def list_checkpoints(store: JobStore, workdir: Path, lang: str = DEFAULT_LANG) -> list[Checkpoint]:
    """Built-in models (and real ones placed in WORKDIR/models), the hub models downloaded there,
    then each completed job's output and exports (its export/ and export-<width>/, and where the
    Export tab last wrote), newest job first; labels in `lang`, a quantized export's naming its
    quantization."""
    found = [Checkpoint(spec.name, t("msg-ckpt-base", lang, name=spec.name)) for spec in MODELS.values()
             if spec.builtin or (workdir / "models" / spec.name / "config.json").is_file()]
    found += [Checkpoint(repo_id, t("msg-ckpt-base", lang, name=repo_id)) for repo_id in downloaded_models(workdir)]
    for job in store.list_jobs(refresh=False):
        if job.state != COMPLETED:
            continue
        output, export = job.paths.output, job.paths.export
        title = job.name if job.name == job.id else f"{job.name} · {job.id}"
        if (output / "config.json").is_file():
            kind = t("msg-ckpt-adapter" if is_adapter(output) else "msg-ckpt-model", lang)
            found.append(Checkpoint(str(output), t("msg-ckpt-output", lang, title=title, kind=kind)))
        # trainer export writes JOB/export, or JOB/export-<width> when quantized; the Export tab may
        # have written elsewhere (export.json says where)
        own = [export] + sorted(path for path in export.parent.glob(f"{export.name}-*")
                                if path.suffix != ".partial")
        recorded = recorded_export(job.paths)
        elsewhere = Path(recorded["out_dir"]) if recorded else None
        for directory in own + ([elsewhere] if elsewhere and elsewhere not in own else []):
            if (directory / "config.json").is_file():
                found.append(Checkpoint(str(directory), export_label(title, directory, directory not in own, lang)))
    return found


def export_label(title: str, directory: Path, elsewhere: bool, lang: str) -> str:
    """An export as the list names it: its quantization, when it has one, and where it is, when
    that is outside the job's directory."""
    quant = quantization_label(directory)
    key = "msg-ckpt-export" + ("-in" if elsewhere else "") + ("-quant" if quant else "")
    return t(key, lang, title=title, path=directory, quant=quant)


def quantization_label(directory: Path) -> str | None:
    """`wint4/8` (or `wint4 g128`) for a studio-quantized checkpoint; None for full precision, and
    for a config.json that cannot be read, which the server refuses with the reason when loaded."""
    try:
        spec = quantization_of(read_model_config(directory))
    except (ModelNotFound, QuantError):
        return None
    return spec.label if spec else None


class LoadedModels:
    def __init__(self, workdir: Path):
        self.logs = Path(workdir) / "serve_logs"
        self._servers: dict[str, ModelServer] = {}
        self._clients: dict[str, ChatClient] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def load(self, checkpoint: str) -> ChatClient:
        """Start (or reuse) the server for `checkpoint`; blocks until the model is loaded."""
        with self._lock:
            gate = self._loading.setdefault(checkpoint, threading.Lock())
        with gate:
            client = self.client(checkpoint)
            if client is not None:
                return client
            self.logs.mkdir(parents=True, exist_ok=True)
            log_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in checkpoint)[-80:] + ".log"
            server = ModelServer(checkpoint, name=checkpoint, log_path=self.logs / log_name,
                                 extra_args=("--parent-pid", str(os.getpid())))
            client = server.start()
            with self._lock:
                self._servers[checkpoint], self._clients[checkpoint] = server, client
            return client

    def client(self, checkpoint: str) -> ChatClient | None:
        """The client of a loaded, live server; a server that died is forgotten."""
        with self._lock:
            server = self._servers.get(checkpoint)
            if server is None:
                return None
            if not server.alive():
                del self._servers[checkpoint], self._clients[checkpoint]
                return None
            return self._clients[checkpoint]

    def unload(self, checkpoint: str) -> bool:
        with self._lock:
            server = self._servers.pop(checkpoint, None)
            self._clients.pop(checkpoint, None)
        if server is None:
            return False
        server.stop()
        return True

    def loaded(self) -> list[str]:
        with self._lock:
            names = list(self._servers)
        return [name for name in names if self.client(name) is not None]

    def stop_all(self) -> None:
        for checkpoint in list(self._servers):
            self.unload(checkpoint)

