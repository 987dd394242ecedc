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
from models.checkpoints import is_adapter
from models.hub import downloaded_models
from models.registry import MODELS
from models.server_process import ModelServer
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobStore
from webui.i18n import DEFAULT_LANG, t


@dataclass(frozen=True)
class Checkpoint:
    value: str  # what models.serve --model takes: a built-in name or a directory
    label: str


def list_checkpoints(store: JobStore, workdir: Path, lang: str = DEFAULT_LANG) -> list[Checkpoint]:
    """Built-in models (and real ones placed in WORKDIR/models), the hub models downloaded there,
    then each completed job's output and export, newest job first; labels in `lang`."""
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
        if (export / "config.json").is_file():
            found.append(Checkpoint(str(export), t("msg-ckpt-export", lang, title=title)))
    return found


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

