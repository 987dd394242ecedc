"""CPU share of the studio's UI process while jobs train and browsers watch, against the same app idle.

One `python app.py --max-jobs-per-device 3` on a temporary workdir. The clock and the app
process's own CPU time (user + system, psutil; its children, the trainers, are not counted) are
read every second for --seconds, twice:
    idle:   a few seconds after start-up, with no job and no browser (the baseline);
    load:   three endless SFT-LoRA jobs on the embedded tiny model training at once (queued in the
            workdir's store, started by the app's scheduler), and two headless Chromium pages on
            the Jobs tab, each watching the running job its monitor picks, through the 1-second timer.
CPU share = CPU seconds / wall seconds (1.0 = one core busy); the share of the machine divides it
by the core count. The peak is the busiest 1-second sample.

Run: .venv/bin/python bench/ui_cpu_share.py [--seconds S]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load_watch import queue_training_jobs, stop_jobs, wait_training  # noqa: E402
from tests.browser_helpers import Studio, launch_browser  # noqa: E402

# The UI must leave the cores to training: under this load, at most a tenth of a core per watching page.
TARGET = {"share": 0.2}
JOBS = 3
PAGES = 2
SETTLE_S = 5


def sample_cpu(pid: int, seconds: float) -> dict:
    """CPU share of process `pid` (its own time, not its children's) over `seconds`, and the busiest second."""
    import psutil

    proc = psutil.Process(pid)

    def used() -> float:
        times = proc.cpu_times()
        return times.user + times.system

    start_wall, start_cpu = time.perf_counter(), used()
    prev_wall, prev_cpu, peak = start_wall, start_cpu, 0.0
    while (now := time.perf_counter()) - start_wall < seconds:
        time.sleep(min(1.0, seconds - (now - start_wall)))
        wall, cpu = time.perf_counter(), used()
        peak = max(peak, (cpu - prev_cpu) / (wall - prev_wall))
        prev_wall, prev_cpu = wall, cpu
    return {"cpu_s": prev_cpu - start_cpu, "wall_s": prev_wall - start_wall,
            "share": (prev_cpu - start_cpu) / (prev_wall - start_wall), "peak_1s_share": peak}


def load_model_once(workdir: Path) -> None:
    """Build the tiny model in the workdir and load it once before three jobs load it together.

    paddleformers writes `flex-ckpt.auto_generated.metadata` into a checkpoint directory the first
    time it loads it; jobs that load a never-loaded model at the same moment can read that file
    half-written and fail (EOFError). That race is a bug of its own; here it must not end the run.
    """
    code = ("import sys; from pathlib import Path; from models.tiny import ensure_built; "
            "from models.loader import load_model; load_model(ensure_built('ernie-4.5-tiny-moe', Path(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(workdir / "models")], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, ERNIE_STUDIO_HOME=str(workdir)), stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"loading the tiny model failed:\n{done.stderr[-3000:]}")


def open_jobs_tab(browser, url: str):
    """A page of its own (browser context) on the Jobs tab, watching the job the monitor picks."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#data-list")
    page.get_by_role("tab", name="Jobs").click()
    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'running'")
    return page


def measure(workdir: Path, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    studio = Studio(workdir, extra=["--max-jobs-per-device", str(JOBS)]).start()
    job_ids: list[str] = []
    try:
        time.sleep(SETTLE_S)
        print(f"idle: sampling the app for {seconds:.0f} s ...", flush=True)
        idle = sample_cpu(studio.proc.pid, seconds)
        load_model_once(workdir)
        job_ids = queue_training_jobs(workdir, JOBS)
        wait_training(workdir, job_ids)
        with sync_playwright() as p:
            browser = launch_browser(p)
            try:
                pages = [open_jobs_tab(browser, studio.url) for _ in range(PAGES)]
                time.sleep(SETTLE_S)
                print(f"load: {JOBS} jobs training, {PAGES} pages watching; sampling for {seconds:.0f} s ...",
                      flush=True)
                load = sample_cpu(studio.proc.pid, seconds)
                for page in pages:
                    if "running" not in page.locator("#jobs-header").text_content():
                        raise RuntimeError("a page stopped showing a running job during the run")
            finally:
                browser.close()
        if studio.proc.poll() is not None:
            raise RuntimeError(f"the app exited during the run:\n{studio.log()[-3000:]}")
        return {"idle": idle, "load": load}
    finally:
        studio.stop()
        stop_jobs(workdir, job_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="sampling time of each phase")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be positive")

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        result = measure(Path(tmp) / "studio", args.seconds)
    idle, load = result["idle"], result["load"]
    ratio = load["share"] / idle["share"] if idle["share"] > 0 else float("inf")
    machine_share = load["share"] / cores
    print()
    print(f"{'app process':14s} {'cpu s':>8s} {'wall s':>8s} {'share':>8s} {'of machine':>11s} {'peak 1 s':>9s}")
    for name, row in (("idle", idle), ("load", load)):
        print(f"{name:14s} {row['cpu_s']:>8.2f} {row['wall_s']:>8.1f} {row['share']:>8.3f} "
              f"{row['share'] / cores:>10.1%} {row['peak_1s_share']:>9.3f}")
    ok = load["share"] <= TARGET["share"]
    print(f"load / idle: {ratio:.1f}x; the app kept {load['share']:.3f} cores busy, {machine_share:.1%} of {cores} "
          f"(target <= {TARGET['share']} cores) {'OK' if ok else 'ABOVE TARGET'}")
    print(json.dumps({
        "bench": "ui_cpu_share",
        "jobs": JOBS, "pages": PAGES, "seconds": args.seconds,
        "load_share": round(load["share"], 4), "idle_share": round(idle["share"], 4),
        "machine_share": round(machine_share, 4), "idle_machine_share": round(idle["share"] / cores, 4),
        "load_peak_1s_share": round(load["peak_1s_share"], 3), "idle_peak_1s_share": round(idle["peak_1s_share"], 3),
        "ratio": round(ratio, 2),
        "target": TARGET,
        "machine": {"cpu_count": cores, "platform": platform.platform(),
                    "python": platform.python_version(), "gradio": version("gradio"),
                    "playwright": version("playwright"),
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
