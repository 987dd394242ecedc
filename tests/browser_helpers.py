"""Helpers for the browser tests: a studio server (`python app.py`) on a free port, Debian's
chromium driven by Playwright's sync API, and waits that say what they were waiting for."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
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


@contextmanager
def studio_running(workdir: Path):
    """A started studio on `workdir`; at the end it stops, and so does any job a failed test left
    running (jobs are detached from the app)."""
    from trainer.jobs import JobStore

    server = Studio(workdir).start()
    try:
        yield server
    finally:
        server.stop()
        store = JobStore(server.workdir)
        for job in store.list_jobs():
            if job.active:
                store.stop_job(job.id, grace_s=5)


@contextmanager
def chromium():
    """Debian's chromium under Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, **options):
    """A page in a context of its own, 1400x1000, with limits for a slow machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.set_default_navigation_timeout(180_000)
    return page


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def reload_page(page, url: str, timeout_s: float = 300.0) -> None:
    """Reload `page` once the server at `url` answers. A Gradio page that lost its server reloads
    itself when it finds the server again, and a reload made at that moment is aborted
    (net::ERR_ABORTED, interrupted by the page's own navigation, or sent while the page's target
    is being swapped: "Not attached to an active page"): that one is tried again."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_s
    while True:
        wait_http(url, max(1.0, deadline - time.monotonic()))
        try:
            page.reload(timeout=max(1.0, deadline - time.monotonic()) * 1000)
            return
        except Error as e:
            aborted = any(text in str(e) for text in ("ERR_ABORTED", "interrupted by another navigation",
                                                      "Not attached to an active page"))
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


# Words a Chinese page keeps as they are: names of things (the product, the model family, formats,
# methods, units) and values the schema itself spells in English (choices such as cosine or cpu).
KEPT_WORDS = {
    "ERNIE", "Studio", "ERNIEKit", "LoRA", "rsLoRA", "DPO", "SFT", "MoE", "YAML", "JSON", "JSONL", "CSV",
    "Parquet", "ShareGPT", "OpenAI", "alpaca", "messages", "sharegpt", "src", "tgt", "KB", "MB", "GB",
    "GiB", "MiB", "CPU", "GPU", "RAM", "ETA", "tokens", "alpha", "beta", "top", "sigmoid", "ipo", "hinge",
    "cosine", "linear", "constant", "cpu", "gpu", "auto", "lora", "full", "sft", "dpo", "ernie", "tiny",
    "moe", "dense", "base", "output", "think", "bf16", "fp16", "fp32", "wint8", "wint4", "zip", "Paddle",
    "PaddlePaddle", "paddleformers", "API", "Gradio", "ZeRO", "AdamW", "adamw", "NCCL", "CUDA", "MTP", "token",
    "safetensors", "TSV", "ID", "sqrt", "English",  # the language switch names each language in its own
    "PNG", "JPEG", "SVG", "PIL",  # image formats and the library that reads them
    "FastDeploy",  # the serving engine an export is deployed with
    "BLEU", "ROUGE",  # the names of the evaluation metrics
    "SimPO", "ORPO", "KTO", "log",  # the preference losses, named and written as their papers do
}
# Paths, file names, config keys, model names and numbers with units: anything with / . _ or a digit.
_TECHNICAL = re.compile(r"\S*[/._\\\d]\S*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]+")


def english_words(text: str, kept: set[str] = frozenset()) -> list[str]:
    """The English words of `text` a translated page should not show (technical tokens aside)."""
    allowed = KEPT_WORDS | set(kept)
    words = _WORD.findall(_TECHNICAL.sub(" ", text))
    return [w for w in words if w not in allowed and w.lower() not in {a.lower() for a in allowed}]


def train_in_studio(workdir: Path, jobs: dict[str, dict], data: Path, limit_s: float = 300.0) -> list:
    """Queue a job per name in `jobs` (the default model's sft-lora preset with that name's dotted-key
    changes, on `data`) in the studio at `workdir`, let its scheduler train them, and return them
    completed. The limit only catches a hang: each takes seconds."""
    from models.registry import DEFAULT_MODEL, MODELS
    from plumbing.files import tail_text
    from trainer.config import from_dict, set_key, to_dict
    from trainer.jobfiles import COMPLETED, FAILED, STOPPED
    from trainer.jobs import JobStore

    store = JobStore(workdir)
    queued = []
    for name, changes in jobs.items():
        config: dict = {"model": {"name_or_path": DEFAULT_MODEL},
                        "data": {"train": [{"path": str(data), "format": "messages"}]}}
        for key, value in {**MODELS[DEFAULT_MODEL].presets["sft-lora"], **changes}.items():
            set_key(config, key, value)
        queued.append(store.create_job(to_dict(from_dict(config, local=False)), name=name))

    def finished(job_id: str):
        job = store.refresh(job_id)
        return job.state in (COMPLETED, FAILED, STOPPED) and job

    done = [wait_until(lambda: finished(job.id), limit_s, f"job {job.name} to finish") for job in queued]
    for job in done:
        assert job.state == COMPLETED, f"{job.error}\n{tail_text(job.paths.log, max_lines=40)}"
    return done
