"""Function calling learnt by the embedded tiny ERNIE 4.5 MoE (issue 18's bar: at least 80% of
held-out questions answered by a call to the right function with the right arguments, the untuned
model at most 5%), for runs longer than a test has.

All on CPU, in a temporary ERNIE_STUDIO_HOME:
    set          trainer/data/tool_set.write_tool_set: --train-rows rows ending with their call,
                 --held-out questions never asked in training (docs/function_calling.md)
    training     `python -m trainer run` on examples/tiny_sft_lora.yaml with that set: --steps steps of
                 --batch rows at --lr (constant), LoRA (rank --rank, all linear layers) or, with
                 --full, every weight; a checkpoint every --every steps
    asking       each checkpoint and the output served by `python -m models.serve` (the untuned model
                 too), each held-out question asked alone through the official `openai` client with
                 the set's tools, greedy; calls read from `message.tool_calls`
                 (tool_set.api_call_accuracy): shares that open a call, hold one, call the right
                 function, and call it with exactly the right arguments, and that last per function

Run: .venv/bin/python bench/tool_calls.py [--steps S] [--full] [--lr LR] ...
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BAR, UNTUNED_BAR = 0.8, 0.05


def train(job_dir: Path, train_file: Path, args) -> float:
    """Seconds `trainer run` took, the model's build and loading included."""
    config = yaml.safe_load((REPO / "examples" / "tiny_sft_lora.yaml").read_text())
    config["data"]["train"] = [{"path": str(train_file), "format": "messages"}]
    config["finetuning"]["type"] = "full" if args.full else "lora"
    config["finetuning"]["lora"].update(rank=args.rank, alpha=2 * args.rank)
    config["optim"].update(max_steps=args.steps, learning_rate=args.lr, lr_scheduler="constant",
                           per_device_batch_size=args.batch)
    config["logging"].update(logging_steps=20, save_steps=args.every, save_total_limit=args.steps // args.every + 1)
    job_dir.mkdir(parents=True)
    (job_dir / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "trainer", "run", str(job_dir / "config.yaml"), "--job-dir",
                             str(job_dir)], cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"training failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return time.monotonic() - start


def ask(model: str, adapter: str | None, held_out: Path, logs: Path) -> dict:
    import openai

    from models.server_process import ModelServer
    from trainer.data.tool_set import api_call_accuracy

    server = ModelServer(model, adapter=adapter, name="tiny", log_path=logs / f"serve-{time.monotonic_ns()}.log")
    server.start()
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        found = api_call_accuracy(client, "tiny", held_out)
    finally:
        server.stop()
    return {key: value for key, value in found.items() if key != "replies"} | {"replies": found["replies"][:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=600)
    parser.add_argument("--held-out", type=int, default=54)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=200, help="checkpoint (and ask) every this many steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default 2e-3 for LoRA, 1e-3 for --full")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    args = parser.parse_args()
    args.lr = args.lr or (1e-3 if args.full else 2e-3)
    home = Path(tempfile.mkdtemp(prefix="bench-tools-"))
    os.environ["ERNIE_STUDIO_HOME"] = str(home)
    try:
        measure(home, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(home: Path, args) -> None:
    from models.tiny import ensure_built
    from trainer.data.tool_set import write_tool_set

    base = ensure_built("ernie-4.5-tiny-moe", home / "models")
    train_file, held_out = write_tool_set(home / "set", args.train_rows, args.held_out, answers=False)
    untuned = ask(str(base), None, held_out, home)
    print(f"untuned: {untuned}", flush=True)
    job_dir = home / "job"
    seconds = train(job_dir, train_file, args)
    print(f"trained {args.steps} steps in {seconds:.0f} s", flush=True)
    steps = {}
    for step in range(args.every, args.steps, args.every):
        checkpoint = job_dir / "checkpoints" / f"checkpoint-{step}"
        steps[step] = ask(str(base), str(checkpoint), held_out, home) if not args.full else \
            ask(str(checkpoint), None, held_out, home)
        print(f"step {step}: {steps[step]}", flush=True)
    steps[args.steps] = ask(str(job_dir / "output"), None, held_out, home)
    print(f"step {args.steps}: {steps[args.steps]}", flush=True)
    met = [step for step, found in steps.items() if found["accuracy"] >= BAR]
    print(json.dumps({
        "finetuning": "full" if args.full else f"lora rank {args.rank}", "steps": args.steps, "batch": args.batch,
        "lr": args.lr, "train_rows": args.train_rows, "held_out": args.held_out, "train_s": round(seconds, 1),
        "accuracy": steps[args.steps]["accuracy"], "untuned_accuracy": untuned["accuracy"],
        "accuracy_by_step": {step: found["accuracy"] for step, found in steps.items()},
        "by_function_by_step": {step: found["by_function"] for step, found in steps.items()},
        "bar": BAR, "untuned_bar": UNTUNED_BAR, "first_step_meeting_bar": met[0] if met else None,
        "bar_met": bool(met) and untuned["accuracy"] <= UNTUNED_BAR,
    }))


if __name__ == "__main__":
    main()
