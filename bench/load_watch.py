"""Load on the Jobs tab's live monitor: many sessions watching one running training job at once.

`python app.py` serves a temporary workdir in which an SFT-LoRA job on the embedded tiny model
(examples/tiny_sft_lora.yaml, endless max_steps) is queued and left training. Each client is a
Gradio session of its own (its own gr.State) that does what a page's 1-second gr.Timer does: call
the `tick` event (the job list and the monitor of the watched job, sent only as far as they
changed) by the browser's protocol, POST queue/join and then the session's queue/data event
stream up to the event's completion, once a second, the sessions spread evenly over the second.
Latency is the time from the join request to the completion message; a refused request, a failed
event or a broken stream is an error. A session's first tick (a fresh watch, as on page load) is
not counted. All sessions share one asyncio loop: gradio_client polls its queues every 50 ms
(which would add its own latency) and needs threads, which 20 clients on 2 cores cannot afford.

Baseline, measured in the same run on the same job: one session alone for a quarter of the time.
Figures: p50/p95/max latency with N sessions, the error count, p95 over the baseline's p95. The
clients share the machine with the app and the training job, so their own CPU time counts too.

Run: .venv/bin/python bench/load_watch.py [--clients N] [--seconds S]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser_helpers import Studio, wait_until  # noqa: E402

TARGET = {"p95_ms": 500, "errors": 0}
TICK_S = 1.0  # webui/jobs_tab.py TICK_S: how often a page's timer calls /tick
ENDLESS_STEPS = 1_000_000


def training_config(**changes) -> dict:
    """examples/tiny_sft_lora.yaml as a dict, data paths absolute, dotted-key changes applied."""
    import yaml

    from trainer.config import set_key

    config = yaml.safe_load((REPO / "examples" / "tiny_sft_lora.yaml").read_text())
    for entry in config["data"]["train"]:
        entry["path"] = str(REPO / entry["path"])
    for key, value in changes.items():
        set_key(config, key, value)
    return config


def queue_training_jobs(workdir: Path, count: int) -> list[str]:
    """Queue `count` endless SFT-LoRA jobs in the workdir; the app's scheduler starts them."""
    from trainer.jobs import JobStore

    store = JobStore(workdir)
    config = training_config(**{"optim.max_steps": ENDLESS_STEPS, "logging.save_steps": ENDLESS_STEPS})
    return [store.create_job(config, name=f"bench-{i + 1}").id for i in range(count)]


def wait_training(workdir: Path, job_ids: list[str], timeout_s: float = 300) -> None:
    """Until every job runs and has logged its first metrics (start-up over, steps under way)."""
    from trainer.jobs import JobStore

    store = JobStore(workdir)

    def training(job_id: str) -> bool:
        job = store.get_job(job_id)
        if job.state in ("failed", "completed", "stopped"):
            log = job.paths.log.read_text(errors="replace")[-3000:] if job.paths.log.exists() else ""
            raise RuntimeError(f"job {job_id} is {job.state}: {job.error}\n{log}")
        return job.state == "running" and job.paths.metrics.exists() and job.paths.metrics.stat().st_size > 0

    wait_until(lambda: all(training(j) for j in job_ids), timeout_s, f"jobs {', '.join(job_ids)} to train")


def stop_jobs(workdir: Path, job_ids: list[str]) -> None:
    from trainer.jobs import JobStore

    store = JobStore(workdir)
    for job_id in job_ids:  # all at once, then wait for each
        store.request_stop(job_id, grace_s=10)
    for job_id in job_ids:
        store.stop_job(job_id, grace_s=10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Endpoint:
    """The Jobs tab timer's event: its fn_index, the timer's id, and what each input is."""

    fn_index: int
    trigger_id: int
    inputs: tuple[str, ...]  # "job" (the job dropdown), "lang", or "state" (kept by the server)

    def data(self, job_id: str | None) -> list:
        return [{"job": job_id, "lang": "en", "state": None}[kind] for kind in self.inputs]


def tick_endpoint(url: str) -> Endpoint:
    """The event with api name "tick", read from the app's config as the page reads it."""
    import httpx

    config = httpx.get(f"{url}config", timeout=30).raise_for_status().json()
    components = {c["id"]: c for c in config["components"]}
    kinds = {"jobs-select": "job", "app-lang": "lang"}
    for dep in config["dependencies"]:
        if dep.get("api_name") == "tick":
            inputs = []
            for component in (components[i] for i in dep["inputs"]):
                kind = "state" if component["type"] == "state" else kinds.get(component["props"].get("elem_id"))
                if kind is None:
                    raise RuntimeError(f"the tick event has an input this bench does not know: {component}")
                inputs.append(kind)
            return Endpoint(dep["id"], dep["targets"][0][0], tuple(inputs))
    raise RuntimeError(f"{url} has no event with api_name 'tick'")


async def tick(client, url: str, session: str, endpoint: Endpoint, job_id: str | None) -> dict:
    """One timer tick as the page sends it: join the queue, then read the session's event stream
    until this event completes. Returns the completion message; raises on any failure."""
    joined = await client.post(f"{url}gradio_api/queue/join", json={
        "data": endpoint.data(job_id), "event_data": None, "fn_index": endpoint.fn_index,
        "trigger_id": endpoint.trigger_id, "session_hash": session})
    event_id = joined.raise_for_status().json()["event_id"]
    async with client.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "unexpected_error":
                raise RuntimeError(f"unexpected_error: {message.get('message')}")
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                if not message.get("success"):
                    raise RuntimeError(f"the event failed: {str(message.get('output'))[:300]}")
                return message
    raise RuntimeError("the event stream ended before the event completed")


async def _watch_load(url: str, job_id: str, clients: int, seconds: float) -> dict:
    import httpx

    endpoint = tick_endpoint(url)
    sessions = [uuid.uuid4().hex for _ in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=4 * clients)) as client:
        # A session's first tick, with no job chosen, picks the running job and renders its whole
        # watch, as the page-load handler does; it also gives the session's dropdown its choices,
        # without which Gradio refuses the job id. Not counted.
        first = await asyncio.gather(*(tick(client, url, s, endpoint, None) for s in sessions))
        if any(job_id not in json.dumps(m["output"]) for m in first):
            raise RuntimeError(f"the first tick did not pick job {job_id}")

        start = time.perf_counter() + 0.5
        deadline = start + seconds

        async def run(index: int, session: str) -> None:
            due = start + index * TICK_S / clients
            while True:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                if time.perf_counter() >= deadline:
                    return
                sent = time.perf_counter()
                try:
                    await tick(client, url, session, endpoint, job_id)
                    latencies.append(time.perf_counter() - sent)
                except Exception as e:  # noqa: BLE001 - every failed call is a figure, not a crash
                    errors.append(f"{e.__class__.__name__}: {e}")
                # the page's timer ticks a second after the previous tick, not after the response
                due = max(due + TICK_S, time.perf_counter())

        await asyncio.gather(*(run(i, s) for i, s in enumerate(sessions)))
    if not latencies:
        raise RuntimeError(f"no call succeeded; first error: {errors[0] if errors else 'none'}")
    return {
        "clients": clients, "seconds": seconds, "calls": len(latencies) + len(errors), "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "max_ms": round(1000 * max(latencies), 1),
    }


def watch_load(url: str, job_id: str, clients: int, seconds: float) -> dict:
    """`clients` sessions calling /tick for `job_id` once a second for `seconds`; latency figures."""
    return asyncio.run(_watch_load(url, job_id, clients, seconds))


def measure(workdir: Path, clients: int, seconds: float, baseline_s: float | None) -> dict:
    """Start the app on `workdir`, queue one training job, and measure the baseline (one client,
    when baseline_s is given) and then `clients` clients watching it."""
    studio = Studio(workdir).start()
    job_ids: list[str] = []
    try:
        job_ids = queue_training_jobs(workdir, 1)
        wait_training(workdir, job_ids)
        result = {}
        if baseline_s:
            result["baseline"] = watch_load(studio.url, job_ids[0], 1, baseline_s)
        result["load"] = watch_load(studio.url, job_ids[0], clients, seconds)
        if studio.proc.poll() is not None:
            raise RuntimeError(f"the app exited during the run:\n{studio.log()[-3000:]}")
        return result
    finally:
        studio.stop()
        stop_jobs(workdir, job_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients watch")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        result = measure(Path(tmp) / "studio", args.clients, args.seconds, baseline_s=args.seconds / 4)
    base, load = result["baseline"], result["load"]
    ratio = load["p95_ms"] / base["p95_ms"]
    print()
    print(f"{'clients':>8s} {'calls':>6s} {'errors':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for row in (base, load):
        print(f"{row['clients']:>8d} {row['calls']:>6d} {row['errors']:>6d} {row['p50_ms']:>8.1f} "
              f"{row['p95_ms']:>8.1f} {row['max_ms']:>8.1f}")
    for error in load["first_errors"]:
        print(f"error: {error}")
    ok = load["p95_ms"] < TARGET["p95_ms"] and load["errors"] <= TARGET["errors"]
    print(f"p95 with {args.clients} clients: {load['p95_ms']:.0f} ms, {ratio:.2f}x one client's "
          f"(target p95 < {TARGET['p95_ms']} ms, {TARGET['errors']} errors) {'OK' if ok else 'ABOVE TARGET'}")
    print(json.dumps({
        "bench": "load_watch",
        "clients": args.clients, "seconds": args.seconds,
        "p50_ms": load["p50_ms"], "p95_ms": load["p95_ms"], "max_ms": load["max_ms"],
        "errors": load["errors"], "calls": load["calls"],
        "baseline_p50_ms": base["p50_ms"], "baseline_p95_ms": base["p95_ms"], "baseline_calls": base["calls"],
        "ratio": round(ratio, 3),
        "target": TARGET,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "gradio": version("gradio"),
                    "httpx": version("httpx"),
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
