"""Starting and stopping `python -m models.serve` processes (loading and unloading a model).

No paddle here: the web UI and the tests use it. Each server runs in a session of its own on a
free loopback port it picks itself and reports through a port file; stopping it ends the process,
which is what returns the model's memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models.chat_client import ChatClient, ChatError
from plumbing.paths import REPO_ROOT



class ModelServer:
    def __init__(self, model: str, adapter: str | None = None, name: str | None = None,
                 extra_args: tuple[str, ...] = (), log_path: Path | None = None):
        self.model, self.adapter, self.name = model, adapter, name or model
        self.extra_args = tuple(extra_args)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, port_file: Path, port: int = 0) -> list[str]:
        argv = [sys.executable, "-m", "models.serve", "--model", self.model, "--served-model-name", self.name,
                "--port", str(port), "--port-file", str(port_file)]
        if self.adapter:
            argv += ["--adapter", self.adapter]
        return argv + list(self.extra_args)

    def start(self, port: int = 0, timeout: float = 180.0) -> ChatClient:
        """Start the server and wait until the model is loaded; raises ChatError with the server's
        own last words if it exits first."""
        port_file = Path(tempfile.mkdtemp(prefix="ernie-serve-")) / "port"
        self._log = open(self.log_path, "a+b") if self.log_path else tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command(port_file, port), cwd=REPO_ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.process.poll() is not None:
                raise ChatError(f"the model server exited with status {self.process.returncode}: {self.last_words()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ChatError(f"the model server did not start listening within {timeout:.0f} s")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        port_file.unlink()
        port_file.parent.rmdir()
        client = ChatClient(self.base_url)
        try:
            client.wait_ready(max(1.0, deadline - time.monotonic()), alive=lambda: self.process.poll() is None)
        except ChatError as exc:
            words = self.last_words()  # stopping closes the log
            self.stop()
            raise ChatError(f"{exc}: {words}") from None
        return client

    def last_words(self, lines: int = 5) -> str:
        """The last lines the server printed."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", errors="replace")
        return " | ".join(line for line in text.strip().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
