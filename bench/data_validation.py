"""Dataset validation speed and peak memory: our validator against pandas reading the same file.

A deterministic alpaca JSONL (instruction / input / output rows of varied length, English and
Chinese words, about a third with an empty input) of --size-mb MB is written to a temporary
directory. Each side then runs in a fresh subprocess, the clock going from the spawn to the exit:
    ours:   `python -m trainer data check FILE --json`, the command the Data tab runs (every row
            validated and converted, statistics collected; no tokenizer);
    pandas: `pandas.read_json(FILE, lines=True)`, the usual way to load a JSONL whole.
Peak memory is the child's peak resident set (its own ru_maxrss: plumbing.peak_memory). Each side also runs
once on a one-row file, so the table shows how much of its peak is start-up and how much the data.
The runs alternate (ours, pandas, ours, ...) and the best of --runs counts.

Run: .venv/bin/python bench/data_validation.py [--size-mb N] [--runs R]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plumbing.peak_memory import run_with_peak  # noqa: E402

# Ours against pandas: validating every row should not be slower than pandas merely loading the
# file, and streaming should keep the peak to a small part of pandas' (which holds the whole file).
TARGET = {"throughput_ratio": 1.0, "memory_ratio": 0.1}
SEED = 1234

WORDS = ("the model learns from examples of questions and answers written by people who know the "
         "subject well so that its replies become clear short correct and useful for the reader "
         "explain describe compare list summarise translate why how when where which river mountain "
         "city language history science music number table value function data file line").split()
WORDS_ZH = list("模型从人们写下的问题和答案中学习使回答更加清楚准确简短有用"
                "请解释描述比较列出总结翻译为什么怎样城市河流山语言历史科学音乐")

OURS = [sys.executable, "-m", "trainer", "data", "check", "{path}", "--json"]
PANDAS = [sys.executable, "-c",
          "import sys, pandas; frame = pandas.read_json(sys.argv[1], lines=True); print(len(frame))", "{path}"]


def sentence(rng: random.Random, low: int, high: int) -> str:
    n = rng.randint(low, high)
    if rng.random() < 0.2:
        return "".join(rng.choices(WORDS_ZH, k=n * 2))
    return " ".join(rng.choices(WORDS, k=n)).capitalize() + "."


def write_alpaca(path: Path, size_mb: float) -> int:
    """Rows until the file reaches `size_mb` MB; returns the row count."""
    rng = random.Random(SEED)
    limit = int(size_mb * 2**20)
    written = rows = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < limit:
            chunk = []
            for _ in range(1000):
                row = {"instruction": sentence(rng, 4, 30),
                       "input": "" if rng.random() < 0.35 else sentence(rng, 5, 80),
                       "output": " ".join(sentence(rng, 5, 40) for _ in range(rng.randint(1, 8)))}
                chunk.append(json.dumps(row, ensure_ascii=False))
            text = "\n".join(chunk) + "\n"
            f.write(text)
            written += len(text.encode("utf-8"))
            rows += len(chunk)
    return rows


def run_child(argv: list[str], path: Path) -> dict:
    """Wall seconds and peak RSS (MB) of one fresh child, with the last line it printed."""
    argv = [a.replace("{path}", str(path)) for a in argv]
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        code, peak_rss = run_with_peak(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {code}:\n{text[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": peak_rss, "last_line": text.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200, help="size of the generated JSONL")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side, alternated; the best counts")
    args = parser.parse_args()
    if args.size_mb <= 0 or args.runs < 1:
        parser.error("--size-mb and --runs must be positive")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        data = Path(tmp) / "alpaca.jsonl"
        started = time.perf_counter()
        rows = write_alpaca(data, args.size_mb)
        size_mb = data.stat().st_size / 2**20
        print(f"wrote {rows:,} rows, {size_mb:.1f} MB in {time.perf_counter() - started:.1f} s", flush=True)
        one_row = Path(tmp) / "one.jsonl"
        one_row.write_text(data.open(encoding="utf-8").readline(), encoding="utf-8")

        sides = {"ours": OURS, "pandas": PANDAS}
        startup = {name: run_child(argv, one_row) for name, argv in sides.items()}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for i in range(args.runs):
            for name, argv in sides.items():
                r = run_child(argv, data)
                runs[name].append(r)
                print(f"run {i + 1}/{args.runs} {name:6s}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:,.0f} MB",
                      flush=True)

    report = json.loads(runs["ours"][0]["last_line"])
    if report.get("rows_total") != rows or not report.get("ok"):
        raise RuntimeError(f"the validator did not accept all {rows} rows: {runs['ours'][0]['last_line'][:500]}")
    if int(runs["pandas"][0]["last_line"]) != rows:
        raise RuntimeError(f"pandas read {runs['pandas'][0]['last_line']} rows, not {rows}")

    best = {name: min(results, key=lambda r: r["seconds"]) for name, results in runs.items()}
    peak = {name: min(r["peak_rss_mb"] for r in results) for name, results in runs.items()}
    mb_s = {name: size_mb / best[name]["seconds"] for name in best}
    throughput_ratio = mb_s["ours"] / mb_s["pandas"]
    memory_ratio = peak["ours"] / peak["pandas"]
    print()
    print(f"{size_mb:.0f} MB, {rows:,} rows {'ours':>10s} {'pandas':>10s}")
    print(f"{'seconds':22s} {best['ours']['seconds']:>10.2f} {best['pandas']['seconds']:>10.2f}")
    print(f"{'MB/s':22s} {mb_s['ours']:>10.1f} {mb_s['pandas']:>10.1f}")
    print(f"{'peak RSS MB':22s} {peak['ours']:>10.0f} {peak['pandas']:>10.0f}")
    print(f"{'  on a one-row file':22s} {startup['ours']['peak_rss_mb']:>10.0f} "
          f"{startup['pandas']['peak_rss_mb']:>10.0f}")
    print(f"{'  start-up seconds':22s} {startup['ours']['seconds']:>10.2f} {startup['pandas']['seconds']:>10.2f}")
    ok = throughput_ratio >= TARGET["throughput_ratio"] and memory_ratio <= TARGET["memory_ratio"]
    print(f"ours / pandas: throughput {throughput_ratio:.2f} (target >= {TARGET['throughput_ratio']}), "
          f"peak memory {memory_ratio:.3f} (target <= {TARGET['memory_ratio']}) {'OK' if ok else 'OFF TARGET'}")
    print(json.dumps({
        "bench": "data_validation",
        "size_mb": round(size_mb, 1), "rows": rows,
        "ours_mb_per_s": round(mb_s["ours"], 1), "pandas_mb_per_s": round(mb_s["pandas"], 1),
        "ours_peak_rss_mb": round(peak["ours"], 1), "pandas_peak_rss_mb": round(peak["pandas"], 1),
        "throughput_ratio": round(throughput_ratio, 4), "memory_ratio": round(memory_ratio, 4),
        "target": TARGET,
        "ours_startup_rss_mb": round(startup["ours"]["peak_rss_mb"], 1),
        "pandas_startup_rss_mb": round(startup["pandas"]["peak_rss_mb"], 1),
        "ours_startup_s": round(startup["ours"]["seconds"], 3),
        "pandas_startup_s": round(startup["pandas"]["seconds"], 3),
        "runs": args.runs,
        "ours_runs_s": [round(r["seconds"], 2) for r in runs["ours"]],
        "pandas_runs_s": [round(r["seconds"], 2) for r in runs["pandas"]],
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "pandas": version("pandas"),
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
