"""`make bench`: run every benchmark in bench/, collect their figures, write the results table.

Each bench/*.py (but this one) runs in its own subprocess from the repository root, its output
shown as it comes; its last stdout line is one JSON object with its figures, its own target(s)
and ratios against a baseline it measured in the same run. This script records the machine and
the library versions next to them in bench/results.json, renders bench/results.md (one row per
figure: value, baseline, ratio, target, pass/fail) and, with --readme, puts the same table into
README.md between the bench:start and bench:end markers of its Performance section.

TABLE below only says which figures of each bench's JSON make its rows and which way its
targets point; the target values stay in the bench scripts.

Run: .venv/bin/python bench/run_all.py [--only NAME ...] [--readme] [--no-run]
With --only, the other benches keep their figures from the previous results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "results.md"
README = REPO / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PACKAGES = ("paddlepaddle", "paddleformers", "gradio", "numpy", "pandas")


@dataclass(frozen=True)
class Row:
    """One table row: dotted keys into a bench's figures. `target` names the bound in the JSON and
    `checks` whether it bounds the "ratio" or the "value"; `op` is the direction of the bound."""

    figure: str
    value: str
    baseline: str | None = None
    ratio: str | None = None
    target: str | None = None
    op: str = "<="
    checks: str = "ratio"


TABLE = {
    "train_throughput": [
        Row("tokens/s: `trainer run` / bare paddleformers Trainer", "studio_tokens_per_s", "bare_tokens_per_s",
            "ratio", "target", ">="),
    ],
    "moe_dispatch": [
        Row("training step s: portable MoE / dense FFN of the same activated width", "moe_step_s",
            "dense_step_s", "moe_over_dense", "target", "<="),
        Row("training step s: naive per-token expert loop / portable MoE", "naive_step_s", "moe_step_s",
            "naive_over_moe"),
    ],
    "chat_latency": [
        *(Row(f"decode tokens/s, {label} prompt: KV cache / full recomputation", f"{label}.cache_tokens_per_s",
              f"{label}.no_cache_tokens_per_s", f"{label}.speedup_tokens_per_s", "target", ">=")
          for label in ("short", "long")),
        *(Row(f"time to first token s, {label} prompt: KV cache / full recomputation", f"{label}.cache_ttft_s",
              f"{label}.no_cache_ttft_s") for label in ("short", "long")),
    ],
    "server_startup": [
        Row("s from `python -m models.serve` to `/health` 200 (tiny MoE)", "startup_s"),
        Row("s for 64 tokens over HTTP: streamed (SSE) / one JSON reply", "stream_s", "plain_s", "stream_over_plain",
            "target", "<="),
        Row("s to the first streamed token", "ttft_s"),
    ],
    "ui_startup": [
        Row("s to the first HTTP 200: `app.py` / bare Gradio Blocks", "studio_s", "bare_s", "ratio", "target", "<="),
    ],
    "data_validation": [
        Row("MB/s on an alpaca JSONL: `data check` / `pandas.read_json`", "ours_mb_per_s", "pandas_mb_per_s",
            "throughput_ratio", "target.throughput_ratio", ">="),
        Row("peak RSS MB: `data check` / `pandas.read_json`", "ours_peak_rss_mb", "pandas_peak_rss_mb",
            "memory_ratio", "target.memory_ratio", "<="),
    ],
    "ui_cpu_share": [
        Row("`app.py` CPU, cores busy: 3 jobs training + 2 pages watching / idle", "load_share", "idle_share",
            "ratio", "target.share", "<=", "value"),
        Row("`app.py` CPU, share of the machine: the same", "machine_share", "idle_machine_share"),
    ],
    "chat_ui": [
        Row("s for two 128-token replies side by side: Chat tab in Chromium / straight from the servers", "page_s",
            "direct_s", "ratio", "target.ratio", "<="),
        Row("longest main-thread task ms in the page while they stream", "longest_task_ms_max", None, None,
            "target.longtask_ms", "<=", "value"),
        Row("main-thread ms in long tasks while they stream", "long_tasks_ms"),
    ],
    "load_watch": [
        Row("Jobs monitor `/tick` p95 ms: 20 clients / 1 client, job training", "p95_ms", "baseline_p95_ms",
            "ratio", "target.p95_ms", "<", "value"),
        Row("Jobs monitor `/tick` p50 ms: 20 clients / 1 client", "p50_ms", "baseline_p50_ms"),
        Row("Jobs monitor `/tick` errors, 20 clients", "errors", None, None, "target.errors", "<=", "value"),
    ],
    "vl_train": [
        Row("training step s, tiny VL, the shipped VL SFT-LoRA (vision frozen): batch with 224x224 images / "
            "text-only batch of the same tokens", "lora.vl_step_s", "lora.text_step_s", "lora.vl_over_text",
            "target", "<="),
        Row("training step s, tiny VL, full fine-tuning of every part, vision too: the same",
            "full.vl_step_s", "full.text_step_s", "full.vl_over_text"),
        Row("images/s: ERNIE-VL image preprocessing, 224x224 photo-like images in memory", "images_per_s"),
        Row("images/s: the same from JPEG files (open and decode included)", "jpeg_images_per_s"),
        Row("time to first token s, tiny VL: one image + question / text-only prompt of the same tokens",
            "image_ttft_s", "text_ttft_s", "ttft_ratio"),
    ],
    "tool_calls": [
        Row("held-out questions called right (function and arguments) via `openai`, tiny MoE: tuned / untuned",
            "accuracy", "untuned_accuracy", None, "bar", ">=", "value"),
    ],
    "quant": [
        *(Row(f"weight bytes, tiny MoE: {width} / bf16", f"weights.{width}.bytes", "weights.bf16_bytes",
              f"weights.{width}.ratio", f"weights.{width}.target") for width in ("wint8", "wint4/8")),
        *(Row(f"weight bytes, tiny MoE's quantizable linear layers: {width} / bf16", f"weights.{width}.linear_bytes",
              "weights.linear_bf16_bytes", f"weights.{width}.linear_ratio", f"weights.{width}.target")
          for width in ("wint8", "wint4/8")),
        *(Row(f"weight GB, released ERNIE-4.5-21B-A3B config, from shapes: {width} / bf16",
              f"projection.21b_a3b.{width}.gb", "projection.21b_a3b.bf16_gb", f"projection.21b_a3b.{width}.ratio",
              f"weights.{width}.target")
          for width in ("wint8", "wint4/8")),
        *(Row(f"perplexity, tuned tiny MoE: {width} (channel-wise) / full precision", f"perplexity.{width}.perplexity",
              "perplexity.full.perplexity", f"perplexity.{width}.ratio", f"perplexity.{width}.target")
          for width in ("wint8", "wint4/8")),
        Row("`models.serve` peak RSS MB, tiny MoE: wint4/8 / full precision", "server.wint4/8.peak_rss_mb",
            "server.full.peak_rss_mb", "server.wint4/8.peak_rss_ratio"),
        *(Row(f"decode tokens/s on CPU, tiny MoE: {width} / full precision", f"decode.{width}.tokens_per_s",
              "decode.full", f"decode.{width}.ratio") for width in ("wint8", "wint4/8")),
        Row("peak RSS MB of SFT-LoRA training, tiny MoE: wint4/8 base / full-precision base",
            "training.wint4/8.peak_rss_mb", "training.full.peak_rss_mb", "training.wint4/8.peak_rss_ratio"),
        Row("allocator peak MB of the same (tensors only)", "training.wint4/8.tensors_peak_mb",
            "training.full.tensors_peak_mb", "training.wint4/8.tensors_peak_ratio"),
    ],
    "eval_throughput": [
        Row("prompts/s, `trainer eval` of 64 sample rows, up to 64 new tokens (tiny MoE): `--batch-size 16` / "
            "`--batch-size 1`", "trainer_eval.batched_prompts_per_s", "trainer_eval.alone_prompts_per_s",
            "trainer_eval.speedup", "trainer_eval.target", ">="),
        Row("`trainer eval` prediction lines the same at both batch sizes", "trainer_eval.same_answers"),
        Row("requests/s, 8 requests of 64 tokens to `models.serve` (tiny MoE): 8 concurrent clients / one after "
            "another", "server.concurrent_requests_per_s", "server.sequential_requests_per_s", "server.speedup",
            "server.target", ">="),
        Row("prompts/s, 64 sample prompts x 64 new tokens in-process: `reply_batch` / `ChatEngine.reply` each",
            "reply_batch.batched_prompts_per_s", "reply_batch.alone_prompts_per_s", "reply_batch.speedup",
            "reply_batch.target", ">="),
    ],
    "memory_estimate": [
        *(Row(f"MB at the peak, {label}: memory estimate / measured peak RSS of `trainer run`", f"{case}.estimate_mb",
              f"{case}.peak_rss_mb", f"{case}.ratio")
          for case, label in (("tiny_sft_full", "tiny MoE full SFT"), ("tiny_sft_lora", "tiny MoE SFT-LoRA"),
                              ("real03b_sft_full", "2-layer real-width 0.3B full SFT"),
                              ("real03b_sft_lora", "2-layer real-width 0.3B SFT-LoRA"))),
        Row("largest abs(estimate / peak RSS - 1), all cases (DPO too)", "max_error", None, None, "target", "<=",
            "value"),
        Row("largest abs(estimate / allocator peak - 1), tensors only", "max_tensors_error", None, None, "target", "<=",
            "value"),
    ],
}

OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b}
SIGNS = {"<=": "≤", "<": "<", ">=": "≥"}


def bench_scripts() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BENCH.glob("*.py")) if p.name != Path(__file__).name}


def machine() -> dict:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        os_name = f"{release.get('PRETTY_NAME', '').strip(chr(34))} ({platform.platform()})"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": os_name}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def run_bench(name: str, script: Path) -> dict:
    """Run one script, echoing its output; its figures, or {"error": ...} when it failed."""
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL)
    last = ""
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.strip():
            last = line.strip()
    code = proc.wait()
    print(f"== {name}: {time.perf_counter() - started:.0f} s, exit status {code}", flush=True)
    if code != 0:
        return {"error": f"exit status {code}"}
    try:
        figures = json.loads(last)
    except json.JSONDecodeError:
        return {"error": f"the last line is not JSON: {last[:200]}"}
    return figures if isinstance(figures, dict) else {"error": f"the last line is not a JSON object: {last[:200]}"}


def lookup(figures: dict, key: str | None):
    """figures["a"]["b"] for key "a.b"; None when the key is None or missing."""
    if key is None:
        return None
    value = figures
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table_rows(name: str, figures: dict) -> list[list[str]]:
    if "error" in figures:
        return [[name, "the bench failed", figures["error"], "", "", "", "FAIL"]]
    rows = []
    for row in TABLE.get(name, []):
        value, ratio = lookup(figures, row.value), lookup(figures, row.ratio)
        bound = lookup(figures, row.target)
        target, verdict = "—", "—"
        if isinstance(bound, (int, float)):
            target = f"{row.checks} {SIGNS[row.op]} {fmt(bound)}"
            checked = ratio if row.checks == "ratio" else value
            if isinstance(checked, (int, float)):
                verdict = "pass" if OPS[row.op](checked, bound) else "FAIL"
        rows.append([name, row.figure, fmt(value), fmt(lookup(figures, row.baseline)), fmt(ratio), target, verdict])
    return rows or [[name, "(no rows defined in bench/run_all.py TABLE; see results.json)", "", "", "", "", "—"]]


def markdown(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    lines = [
        f"Measured {results['generated']} on {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "| bench | figure | value | baseline | ratio | target | pass |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, figures in results["benches"].items():
        lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(name, figures)]
    return "\n".join(lines) + "\n"


def rewrite_readme(body: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {START} ... {END} markers in its Performance section")
    README.write_text(text[: start + len(START)] + "\n" + body + text[end:], encoding="utf-8")


def main() -> int:
    scripts = bench_scripts()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(scripts), metavar="NAME",
                        help=f"run only these benches ({', '.join(scripts)})")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's Performance table too")
    parser.add_argument("--no-run", action="store_true", help="run nothing; render results.json again")
    args = parser.parse_args()

    previous = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"benches": {}}
    if args.no_run:
        results = previous
    else:
        benches = dict(previous["benches"]) if args.only else {}
        for name in args.only or scripts:
            benches[name] = run_bench(name, scripts[name])
        # benches in file order, so a partial run does not reorder the table
        ordered = {name: benches[name] for name in scripts if name in benches}
        results = {"machine": machine(), "versions": versions(), "benches": ordered,
                   "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        RESULTS_JSON.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    body = markdown(results)
    RESULTS_MD.write_text("# Benchmark results\n\nWritten by `make bench` (bench/run_all.py).\n\n" + body)
    if args.readme:
        rewrite_readme(body)
    print()
    print(body)
    failed = [name for name, figures in results["benches"].items() if "error" in figures]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
