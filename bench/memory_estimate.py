"""The memory estimate (models/memory.py, as the Train tab shows it) against the measured peaks of
`python -m trainer run`.

Cases, all on CPU in fp32, each 3 optimizer steps with a checkpoint at step 2 and the final save,
on rows long enough that every batch is max_seq_len wide (the estimate is for the widest batch):
full SFT, SFT-LoRA (all-linear, rank 16), full DPO and DPO-LoRA on the embedded tiny MoE (batch 8,
256 tokens), and, when ../shared/real_ernie is there, full SFT and SFT-LoRA on a 2-layer
random-weight ERNIE-4.5-0.3B at full width (hidden 1024, vocabulary 103,424; built with
paddleformers from the released config.json, with the released tokenizer; batch 2, 256 tokens).

Measured, each run in its own process started as the job launcher starts one:
    peak RSS  the trainer process's own ru_maxrss (plumbing.peak_memory): the most memory it ever held resident,
              runtime, tokenizer, loading and saving included. This is what must fit in the
              machine's RAM, so it is what the estimate is checked against.
    tensors   the peak of paddle's allocator during training (metrics.jsonl memory.tensors_peak_mb,
              reset when training begins): the tensors alone, without the runtime; compared with the
              estimate's training step and checkpoint save, it checks the per-tensor inventory on its
              own, which the runtime's few hundred MB would otherwise hide on the tiny model.
The runtime constants of models/memory.py are measured again here (an idle process with the same
imports, then with each tokenizer loaded) and printed beside them.

Run: .venv/bin/python bench/memory_estimate.py [--skip-real]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plumbing.peak_memory import run_with_peak  # noqa: E402
from models.memory import CPU_PROCESS, MiB, TOKENIZER_BYTES_PER_ENTRY  # noqa: E402

REAL = REPO.parent / "shared" / "real_ernie"
REAL_03B = REAL / "ERNIE-4.5-0.3B-Base-PT"
TINY = "ernie-4.5-tiny-moe"
TARGET = 0.25  # the estimate within 25% of the measured peak
STEPS = 3
PARTS = ("weights", "gradients", "optimizer", "reference", "activations", "runtime")
STORY = "The quick brown fox jumps over the lazy dog while the river flows past the old mill. "

IDLE = """
import json, sys, psutil
import paddle
import paddleformers.peft, paddleformers.trainer, paddleformers.transformers
from paddleformers.cli.train.dpo.dpo_trainer import DPOTrainer
import trainer.callbacks, trainer.datasets, trainer.train
from models.loader import load_tokenizer
rss = lambda: psutil.Process().memory_info().rss
idle = rss()
out = {"idle": idle, "tokenizers": {}}
for path in sys.argv[1:]:
    before = rss()
    tokenizer = load_tokenizer(path)
    out["tokenizers"][path] = [rss() - before, json.load(open(f"{path}/config.json"))["vocab_size"]]
print(json.dumps(out))
"""

BUILD_03B = """
import json, shutil, sys
from pathlib import Path
from models.tiny import build_weights
real, out = Path(sys.argv[1]), Path(sys.argv[2])
config = json.loads((real / "ERNIE-4.5-0.3B-Base-PT" / "config.json").read_text())
config["num_hidden_layers"] = 2
out.mkdir(parents=True)
build_weights(config, out)
for name in ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json"):
    shutil.copy(real / "ERNIE-4.5-0.3B-Base-PT" / name, out / name)
shutil.copy(real / "tokenizer" / "tokenizer.model", out / "tokenizer.model")
"""


def run_python(code_or_argv, env: dict, what: str) -> str:
    argv = [sys.executable, "-c", code_or_argv] if isinstance(code_or_argv, str) else code_or_argv
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout


def write_data(root: Path) -> dict[str, Path]:
    """SFT rows and preference pairs much longer than max_seq_len, so each batch is as wide as it gets."""
    sft, dpo = root / "long_sft.jsonl", root / "long_dpo.jsonl"
    with open(sft, "w", encoding="utf-8") as f:
        for i in range(32):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me story {i}."},
                                             {"role": "assistant", "content": STORY * 40}]}) + "\n")
    with open(dpo, "w", encoding="utf-8") as f:
        for i in range(32):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me story {i}."}],
                                "chosen": STORY * 30, "rejected": STORY[::-1] * 30}) + "\n")
    return {"sft": sft, "dpo": dpo}


def case_config(model: str, method: str, kind: str, batch: int, data: Path) -> dict:
    config = {
        "model": {"name_or_path": model},
        "method": method,
        "finetuning": {"type": kind, "lora": {"rank": 16, "alpha": 32, "target_modules": ["all-linear"]}},
        "data": {"train": [{"path": str(data), "format": "messages_dpo" if method == "dpo" else "messages"}],
                 "max_seq_len": 256, "max_prompt_len": 64, "truncation": "truncate_end"},
        "optim": {"learning_rate": 1e-4, "max_steps": STEPS, "per_device_batch_size": batch},
        "logging": {"logging_steps": 1, "save_steps": 2},
        "devices": {"device": "cpu"},
    }
    if method == "dpo":
        config["data"]["truncation"] = "drop_oldest_turns"
    return config


def train_measured(job: Path, config: dict, env: dict, overrides: tuple[str, ...] = ()) -> tuple[float, list[dict]]:
    """`python -m trainer run` of `config` (with `KEY=VALUE` overrides) into the new directory `job`,
    started as the job launcher starts one: its own peak RSS in MB and its metrics lines."""
    job.mkdir(parents=True)
    (job / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [sys.executable, "-m", "trainer", "run", str(job / "config.yaml"), "--job-dir", str(job), *overrides]
    with open(job / "train.log", "wb") as log:
        code, peak_rss = run_with_peak(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
    if code != 0:
        tail = (job / "train.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{job.name}: trainer exited with {code}:\n{tail}")
    return peak_rss, [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines() if line.strip()]


def measure(name: str, config: dict, root: Path, env: dict) -> dict:
    """Train one case; its measured peaks and the estimate for its config."""
    from trainer.config import from_dict
    from trainer.memory import estimate_run

    peak_rss, lines = train_measured(root / "jobs" / name, config, env)
    tensors = max(line["memory"]["tensors_peak_mb"] for line in lines if "memory" in line)
    found = estimate_run(from_dict(config))
    tensors_estimate = max(found.step, found.saving) / MiB
    return {"estimate_mb": round(found.peak / MiB, 1), "peak_rss_mb": round(peak_rss, 1),
            "ratio": round(found.peak / MiB / peak_rss, 3), "phase": found.phase,
            "tensors_estimate_mb": round(tensors_estimate, 1), "tensors_peak_mb": tensors,
            "tensors_ratio": round(tensors_estimate / tensors, 3),
            "parts_mb": {part: round(getattr(found, part) / MiB, 1) for part in PARTS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-real", action="store_true", help="only the tiny model's cases")
    args = parser.parse_args()
    real = REAL_03B.is_dir() and not args.skip_real
    if not real:
        print(f"skipping the 2-layer real-width 0.3B: {REAL_03B} is not here" if not args.skip_real else
              "skipping the 2-layer real-width 0.3B (--skip-real)", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, ERNIE_STUDIO_HOME=str(root / "home"), PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        data = write_data(root)
        print(f"building {TINY} ...", flush=True)
        run_python("import os; from pathlib import Path; from models.tiny import ensure_built; "
                   f"print(ensure_built({TINY!r}, Path(os.environ['ERNIE_STUDIO_HOME']) / 'models'))", env, "building")
        tiny_dir = root / "home" / "models" / TINY
        cases = {f"tiny_{method}_{kind}": (TINY, method, kind, 8)
                 for method in ("sft", "dpo") for kind in ("full", "lora")}
        tokenizers = [str(tiny_dir)]
        if real:
            real_dir = root / "ernie-4.5-0.3b-2layers"
            print("building a 2-layer ERNIE-4.5-0.3B at full width ...", flush=True)
            run_python([sys.executable, "-c", BUILD_03B, str(REAL), str(real_dir)], env, "building the 0.3B")
            cases.update({f"real03b_sft_{kind}": (str(real_dir), "sft", kind, 2) for kind in ("full", "lora")})
            tokenizers.append(str(real_dir))

        idle = json.loads(run_python([sys.executable, "-c", IDLE, *tokenizers], env, "the idle process")
                          .splitlines()[-1])
        # per entry of config.json's vocab_size, as the estimate counts; the tiny one is too small to tell
        runtime = {"idle_process_mb": round(idle["idle"] / MiB, 1),
                   "model_idle_process_mb": round(CPU_PROCESS / MiB, 1),
                   "tokenizer_bytes_per_entry": {Path(p).name: round(rss / vocab) for p, (rss, vocab)
                                                 in idle["tokenizers"].items() if vocab > 10000},
                   "model_tokenizer_bytes_per_entry": TOKENIZER_BYTES_PER_ENTRY}
        print(f"runtime: idle process {runtime['idle_process_mb']} MB (models/memory.py: "
              f"{runtime['model_idle_process_mb']}); tokenizer bytes per entry {runtime['tokenizer_bytes_per_entry']} "
              f"(models/memory.py: {TOKENIZER_BYTES_PER_ENTRY})", flush=True)

        results = {}
        for name, (model, method, kind, batch) in cases.items():
            config = case_config(model, method, kind, batch, data[method])
            r = results[name] = measure(name, config, root, env)
            print(f"{name:18s} estimate {r['estimate_mb']:8.0f} MB ({r['phase']:8s}) "
                  f"peak RSS {r['peak_rss_mb']:8.0f} MB ratio {r['ratio']:.3f} | "
                  f"tensors: estimate {r['tensors_estimate_mb']:7.0f} MB, allocator peak {r['tensors_peak_mb']:7.0f} MB, ratio {r['tensors_ratio']:.3f}", flush=True)

    worst = max(abs(r["ratio"] - 1) for r in results.values())
    worst_tensors = max(abs(r["tensors_ratio"] - 1) for r in results.values())
    print(f"largest |estimate / measured - 1|: peak RSS {worst:.3f}, tensors {worst_tensors:.3f} "
          f"(target <= {TARGET}) {'OK' if max(worst, worst_tensors) <= TARGET else 'ABOVE TARGET'}")
    print(json.dumps({"bench": "memory_estimate", **results, "max_error": round(worst, 3),
                      "max_tensors_error": round(worst_tensors, 3), "target": TARGET, "real_width": real,
                      "runtime": runtime, "wall_s": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
