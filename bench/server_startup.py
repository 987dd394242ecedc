"""Model server start-up and one streamed reply, through HTTP, on the embedded tiny ERNIE 4.5 MoE model.

Each start is a fresh `python -m models.serve --model ernie-4.5-tiny-moe --port 0 --port-file F`
subprocess (cwd = the repository root of this script, CPU, a temporary ERNIE_STUDIO_HOME in
which one unmeasured start has built the model and warmed the file caches). For each run:
    startup_s    = from the spawn to the first 200 on GET /health (polled every 20 ms);
then, on the server of the last run, --requests replies (greedy, `ignore_eos`, --new-tokens tokens):
    ttft_s       = a streamed request, from sending it to the first event with text;
    stream_s     = the same request, from sending it to `data: [DONE]`;
    plain_s      = the same reply not streamed, from sending it to the whole JSON answer.
Medians count. The script measures the code of the tree it sits in, so an older tree is measured
by copying this file into its bench/ directory; there is no baseline inside one run.

Run: .venv/bin/python bench/server_startup.py [--runs R] [--requests N] [--new-tokens T]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MODEL = "ernie-4.5-tiny-moe"
TIMEOUT_S = 180
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


class Server:
    """One server process, from its spawn to its first 200 on /health."""

    def __init__(self, env: dict, log: Path):
        self.port_file = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "port"
        self.log = open(log, "ab")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "models.serve", "--model", MODEL, "--device", "cpu", "--port", "0",
             "--port-file", str(self.port_file)],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.startup_s = self._wait_healthy()

    def _wait_healthy(self) -> float:
        while not self.port_file.exists():
            self._check_alive()
            time.sleep(0.005)
        self.url = f"http://127.0.0.1:{int(self.port_file.read_text())}"
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            self._check_alive()
            time.sleep(0.02)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log.name}")
        if time.perf_counter() - self.started > TIMEOUT_S:
            raise RuntimeError(f"no 200 on /health within {TIMEOUT_S} s; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def timed_replies(url: str, new_tokens: int) -> dict:
    body = {"messages": PROMPT, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
    with httpx.Client(timeout=120) as client:
        started = time.perf_counter()
        first = None
        with client.stream("POST", f"{url}/v1/chat/completions", json=dict(body, stream=True)) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    break
                if first is None and line.startswith("data: "):
                    delta = (json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {})
                    if delta.get("content") or delta.get("reasoning_content"):
                        first = time.perf_counter()
        streamed = time.perf_counter()
        reply = client.post(f"{url}/v1/chat/completions", json=body).json()
        plain = time.perf_counter()
    assert reply["usage"]["completion_tokens"] == new_tokens, reply
    return {"ttft_s": first - started, "stream_s": streamed - started, "plain_s": plain - streamed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-server-startup-"))
    env = dict(os.environ, ERNIE_STUDIO_HOME=str(home), PYTHONUNBUFFERED="1")
    log = home / "serve.log"
    Server(env, log).stop()  # builds the tiny model, warms the file caches

    startups = []
    for run in range(args.runs):
        server = Server(env, log)
        startups.append(server.startup_s)
        print(f"start {run + 1}: {server.startup_s:.3f} s to /health 200", flush=True)
        if run < args.runs - 1:
            server.stop()
    try:
        timed_replies(server.url, 8)  # warm-up: first-call allocations
        replies = [timed_replies(server.url, args.new_tokens) for _ in range(args.requests)]
    finally:
        server.stop()

    figures = {"startup_s": round(statistics.median(startups), 3)}
    for key in ("ttft_s", "stream_s", "plain_s"):
        figures[key] = round(statistics.median(r[key] for r in replies), 4)
    # streaming costs one SSE event per token on top of the same generation
    figures["stream_over_plain"] = round(figures["stream_s"] / figures["plain_s"], 3)
    figures["target"] = 1.25
    print(f"start-up to /health 200: {figures['startup_s']:.3f} s (median of {args.runs}); "
          f"{args.new_tokens} tokens: TTFT {figures['ttft_s']:.3f} s, streamed {figures['stream_s']:.3f} s, "
          f"plain {figures['plain_s']:.3f} s (medians of {args.requests})")
    print(json.dumps({
        "bench": "server_startup",
        "model": MODEL,
        "runs": args.runs,
        "requests": args.requests,
        "new_tokens": args.new_tokens,
        **figures,
        "startup_runs_s": [round(s, 3) for s in startups],
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
