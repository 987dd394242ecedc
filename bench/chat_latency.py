"""Chat latency on the embedded tiny ERNIE 4.5 MoE model: the KV cache against full recomputation.

One process loads the model once (`models.chat_engine.ChatEngine`, portable MoE dispatch on CPU)
and streams replies through `ChatEngine.stream`, the loop the model server runs, alternating
cached and uncached runs so both see the same machine load. For each prompt length:
    ttft_s       = from `prepare` (template and tokenisation included) to the first streamed text;
    tokens_per_s = generated tokens / time from the first token to the last (decode speed).
Replies are greedy with `ignore_eos`, so every run generates exactly --new-tokens tokens and the
cached and uncached runs produce the same tokens (checked). The median of --runs runs counts.

Run: .venv/bin/python bench/chat_latency.py [--new-tokens N] [--runs R]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = {
    "short": "What is the capital of France?",
    "long": " ".join(["Tell me about the rivers, mountains and cities of the world."] * 20),
}


def timed_reply(engine, text: str, new_tokens: int, use_cache: bool) -> dict:
    from models.chat_request import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    started = time.perf_counter()
    prompt = engine.prepare([{"role": "user", "content": text}], max_tokens=new_tokens)
    first = None
    pieces = []
    for chunk in engine.stream(prompt, params, use_cache=use_cache):
        if first is None and (chunk.content or chunk.reasoning):
            first = time.perf_counter()
        pieces.append(chunk.content)
    ended = time.perf_counter()
    generated = chunk.completion_tokens
    return {"ttft_s": first - started, "tokens_per_s": (generated - 1) / (ended - first),
            "prompt_tokens": len(prompt.ids), "generated": generated, "text": "".join(pieces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("ERNIE_STUDIO_HOME", tempfile.mkdtemp(prefix="bench-chat-"))
    import paddle

    from models.chat_engine import ChatEngine

    paddle.set_device("cpu")
    engine = ChatEngine.load("ernie-4.5-tiny-moe")
    timed_reply(engine, PROMPTS["short"], 8, True)  # warm-up: first-call allocations

    figures = {}
    for label, text in PROMPTS.items():
        runs = {"cache": [], "no_cache": []}
        for _ in range(args.runs):
            runs["cache"].append(timed_reply(engine, text, args.new_tokens, True))
            runs["no_cache"].append(timed_reply(engine, text, args.new_tokens, False))
        assert runs["cache"][0]["text"] == runs["no_cache"][0]["text"], "the KV cache changed the reply"
        row = {"prompt_tokens": runs["cache"][0]["prompt_tokens"], "new_tokens": args.new_tokens}
        for side, results in runs.items():
            row[f"{side}_ttft_s"] = round(statistics.median(r["ttft_s"] for r in results), 4)
            row[f"{side}_tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in results), 1)
        row["speedup_tokens_per_s"] = round(row["cache_tokens_per_s"] / row["no_cache_tokens_per_s"], 2)
        figures[label] = row

    print(f"{'prompt':8s} {'tokens':>6s} {'TTFT cache':>11s} {'TTFT none':>10s} "
          f"{'tok/s cache':>12s} {'tok/s none':>11s} {'speed-up':>9s}")
    for label, row in figures.items():
        print(f"{label:8s} {row['prompt_tokens']:>6d} {row['cache_ttft_s']:>10.3f}s {row['no_cache_ttft_s']:>9.3f}s "
              f"{row['cache_tokens_per_s']:>12.1f} {row['no_cache_tokens_per_s']:>11.1f} "
              f"{row['speedup_tokens_per_s']:>8.2f}x")
    print(json.dumps({
        "bench": "chat_latency",
        "model": "ernie-4.5-tiny-moe",
        "runs": args.runs,
        **figures,
        "target": 2.0,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "paddleformers": version("paddleformers"), "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
