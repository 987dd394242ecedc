"""Batched generation against one prompt at a time, on the embedded tiny ERNIE 4.5 MoE model (CPU).

Each half measures its baseline in the same run, on the same prompts (the user turns of
assets/sample_sft.jsonl), greedy (the first two with `ignore_eos`, so every reply is exactly
--new-tokens tokens), and checks that batching changed no reply:
    server       `python -m models.serve` (a fresh subprocess, `--max-num-seqs 8`): --clients
                 requests sent by that many concurrent clients, against the same requests sent
                 one after another (requests/s over the whole set; the median of --runs runs, the
                 two ways alternating). `largest_batch` is the most requests the server's log says
                 it decoded together.
    reply_batch  `models.batch_generate.reply_batch` over --prompts prompts (at most --max-rows
                 rows together) against `ChatEngine.reply` on each in turn, in this process
                 (prompts/s).
    trainer_eval `trainer eval`'s prediction phase (`trainer.evaluate.predict`, called in this process
                 on one engine loaded as `evaluate_model` loads it) over --prompts rows of the sample
                 set with a reference (repeated past its end) at --max-rows rows together, against
                 the same rows at `--batch-size 1` (prompts/s). It decodes as `trainer eval` does:
                 greedy, ending at the end of turn, so a reply may be shorter than --new-tokens
                 (`completion_tokens` counts what was decoded); `same_answers` says whether every
                 prediction line came out the same both ways.

Run: .venv/bin/python bench/eval_throughput.py [--only server reply_batch trainer_eval] [--new-tokens N]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL = "ernie-4.5-tiny-moe"
SAMPLE = REPO / "assets" / "sample_sft.jsonl"


def questions(count: int) -> list[list[dict]]:
    """The first `count` conversations of the sample set without their answers (repeated past its end)."""
    rows = [json.loads(line)["messages"][:-1] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)] for i in range(count)]


def server_half(args) -> dict:
    from models.server_process import ModelServer

    log = Path(tempfile.mkdtemp(prefix="bench-eval-")) / "serve.log"
    server = ModelServer(MODEL, name=MODEL, log_path=log,
                         extra_args=("--device", "cpu", "--max-num-seqs", str(args.clients)))
    server.start()
    bodies = [{"messages": q, "temperature": 0, "max_tokens": args.new_tokens, "ignore_eos": True}
              for q in questions(args.clients)]
    try:
        with httpx.Client(base_url=server.base_url, timeout=300) as client:
            def ask(body: dict) -> str:
                response = client.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]

            ask(bodies[0])  # warm-up: first-call allocations
            sequential, concurrent = [], []
            with ThreadPoolExecutor(args.clients) as pool:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    alone = [ask(body) for body in bodies]
                    sequential.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    together = list(pool.map(ask, bodies))
                    concurrent.append(time.perf_counter() - started)
                    assert together == alone, "a reply decoded in a batch differs from the same reply alone"
    finally:
        server.stop()
    sizes = [int(n) for n in re.findall(r"batch: (\d+) requests decoding together", log.read_text())]
    sequential_s, concurrent_s = statistics.median(sequential), statistics.median(concurrent)
    return {"clients": args.clients, "new_tokens": args.new_tokens, "runs": args.runs,
            "sequential_s": round(sequential_s, 3), "concurrent_s": round(concurrent_s, 3),
            "sequential_requests_per_s": round(args.clients / sequential_s, 2),
            "concurrent_requests_per_s": round(args.clients / concurrent_s, 2),
            "speedup": round(sequential_s / concurrent_s, 2), "largest_batch": max(sizes, default=1),
            "target": 2.0}


def reply_batch_half(args) -> dict:
    import paddle

    from models.batch_generate import reply_batch
    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams

    paddle.set_device("cpu")
    engine = ChatEngine.load(MODEL)
    conversations = questions(args.prompts)
    params = SamplingParams(temperature=0, max_tokens=args.new_tokens, ignore_eos=True)
    reply_batch(engine, conversations[:2], params)  # warm-up: first-call allocations
    started = time.perf_counter()
    batched = reply_batch(engine, conversations, params, max_rows=args.max_rows)
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    alone = [engine.reply(c, params) for c in conversations]
    alone_s = time.perf_counter() - started
    assert batched == alone, "reply_batch changed a reply"
    return {"prompts": args.prompts, "new_tokens": args.new_tokens, "max_rows": args.max_rows,
            "batched_s": round(batched_s, 2), "alone_s": round(alone_s, 2),
            "batched_prompts_per_s": round(args.prompts / batched_s, 2),
            "alone_prompts_per_s": round(args.prompts / alone_s, 2),
            "speedup": round(alone_s / batched_s, 2), "target": 3.0}


def trainer_eval_half(args) -> dict:
    import dataclasses
    import threading

    import paddle

    from models.chat_engine import ChatEngine
    from trainer.evaluate import checkpoint_of, predict, read_rows

    paddle.set_device("cpu")
    _, rows, _ = read_rows(SAMPLE)
    rows = [row for row in rows if row.reference is not None]
    rows = [dataclasses.replace(rows[i % len(rows)], index=i) for i in range(args.prompts)]
    engine = ChatEngine.load(checkpoint_of(MODEL), name=MODEL)

    def run(batch_size: int, subset: list) -> tuple[float, list[dict]]:
        lines = []
        started = time.perf_counter()
        counts = predict(engine, subset, MODEL, args.new_tokens, batch_size, threading.Event(), lines.append)
        elapsed = time.perf_counter() - started
        assert counts["answered"] == len(subset), counts
        return elapsed, sorted(lines, key=lambda line: line["index"])

    # warm-up: first-call allocations, and jieba's dictionary for the scores (row 2 is Chinese)
    run(args.max_rows, rows[:2])
    batched_s, batched = run(args.max_rows, rows)
    alone_s, alone = run(1, rows)
    return {"prompts": args.prompts, "new_tokens": args.new_tokens, "batch_size": args.max_rows,
            "completion_tokens": sum(line["completion_tokens"] for line in batched),
            "batched_s": round(batched_s, 2), "alone_s": round(alone_s, 2),
            "batched_prompts_per_s": round(args.prompts / batched_s, 2),
            "alone_prompts_per_s": round(args.prompts / alone_s, 2),
            "speedup": round(alone_s / batched_s, 2), "same_answers": batched == alone, "target": 3.0}


HALVES = {"server": server_half, "reply_batch": reply_batch_half, "trainer_eval": trainer_eval_half}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(HALVES), default=list(HALVES))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-rows", type=int, default=16)
    args = parser.parse_args()

    os.environ.setdefault("ERNIE_STUDIO_HOME", tempfile.mkdtemp(prefix="bench-eval-"))
    figures = {}
    for name in args.only:
        figures[name] = HALVES[name](args)
        print(f"{name}: {figures[name]}", flush=True)
    print(json.dumps({
        "bench": "eval_throughput",
        "model": MODEL,
        **figures,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "paddleformers": version("paddleformers"), "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
