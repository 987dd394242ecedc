"""The job queue: starts queued jobs, oldest first, when the devices they need are free.

The queue itself is rows of the job store (trainer/jobs.py), so an app restarted later picks it up
where it was; this module only decides when each waiting job starts. Never imports paddle.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import yaml

from plumbing.locking import exclusive
from trainer.jobs import Job, JobError, JobStateError, JobStore


def job_devices(config: Any) -> frozenset[str]:
    """The devices a job occupies on this machine: {"cpu"}, or {"gpu:0", "gpu:1"} for devices.gpu_ids 0,1."""
    devices = config.get("devices") if isinstance(config, dict) else None
    devices = devices if isinstance(devices, dict) else {}
    if devices.get("device") == "gpu":
        ids = [part.strip() for part in str(devices.get("gpu_ids") or "").split(",") if part.strip()]
        return frozenset(f"gpu:{i}" for i in ids) or frozenset({"gpu"})
    return frozenset({"cpu"})


class JobScheduler:
    """Starts queued jobs, oldest first, when the devices they need are free.

    `tick()` is one pass: it reconciles active jobs (deaths, stop deadlines), counts the jobs on each
    device, and starts every waiting job whose devices all have room (`max_per_device` jobs each). A
    waiting job reserves its devices, so a later job cannot overtake it on them. Ticks are serialised
    across processes by a lock file, so two apps on one WORKDIR never start a job twice.
    `start()` runs ticks in a daemon thread every `interval_s`, and at once after `kick()`.
    """

    def __init__(self, store: JobStore, max_per_device: int = 1, interval_s: float = 1.0):
        if max_per_device < 1:
            raise ValueError(f"max_per_device must be at least 1, got {max_per_device}")
        self.store = store
        self.max_per_device = max_per_device
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_path = store.workdir / "scheduler.lock"

    def tick(self) -> list[Job]:
        """One scheduling pass; returns the jobs it started."""
        with exclusive(self._lock_path):
            return self._tick()

    def _tick(self) -> list[Job]:
        busy: Counter = Counter()
        for job in self.store.reap():
            try:
                busy.update(job_devices(job.paths.read_config()))
            except (OSError, yaml.YAMLError):
                busy.update({"cpu"})
        started = []
        for job in self.store.queue():
            try:
                devices = job_devices(job.paths.read_config())
            except (OSError, yaml.YAMLError) as e:
                self.store.fail_waiting(job.id, f"cannot read {job.paths.config}: {e}")
                continue
            if any(busy[d] >= self.max_per_device for d in devices):
                for d in devices:
                    busy[d] = max(busy[d], self.max_per_device)
                continue
            try:
                started.append(self.store.start_job(job.id))
            except JobStateError as e:
                self.store.fail_waiting(job.id, str(e))
                continue
            except JobError:
                continue  # start_job has marked it failed with the reason
            busy.update(devices)
        return started

    def kick(self) -> None:
        """Run a tick now (after a job was queued, stopped or finished)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the scheduler must outlive one bad pass
                print(f"[studio] scheduler pass failed: {e.__class__.__name__}: {e}", flush=True)
            self._wake.wait(self.interval_s)
            self._wake.clear()
