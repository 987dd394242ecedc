"""Helpers for the browser tests: a studio server (`python app.py`) on a free port, Debian's
chromium driven by Playwright's sync API, and waits that say what they were waiting for."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 300.0, proc: subprocess.Popen | None = None) -> float:
    """Seconds until `url` answers 200; fails early if `proc` exits. The limit only catches a server
    that never comes up: a busy machine can take minutes to start one."""
    start = time.monotonic()
    while True:
        try:
            # a server still starting may be slow to answer its first request
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering {url}")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")
        time.sleep(0.1)


class Studio:
    """`python app.py --workdir WORKDIR --port PORT` in a subprocess, with its output in a log file."""

    def __init__(self, workdir: Path, port: int | None = None, extra: list[str] | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"app-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 300.0) -> "Studio":
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ERNIE_STUDIO_HOME=str(self.workdir), PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--workdir", str(self.workdir), "--port", str(self.port), *self.extra],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_http(self.url, timeout_s, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"studio did not start; its log:\n{self.log()}") from None
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def reload_page(page, url: str, timeout_s: float = 300.0) -> None:
    """Reload `page` once the server at `url` answers. A Gradio page that lost its server reloads
    itself when it finds the server again, and a reload made at that moment is aborted
    (net::ERR_ABORTED, or interrupted by the page's own navigation): that one is tried again."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_s
    while True:
        wait_http(url, max(1.0, deadline - time.monotonic()))
        try:
            page.reload(timeout=max(1.0, deadline - time.monotonic()) * 1000)
            return
        except Error as e:
            aborted = "ERR_ABORTED" in str(e) or "interrupted by another navigation" in str(e)
            if not aborted or time.monotonic() > deadline:
                raise


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
