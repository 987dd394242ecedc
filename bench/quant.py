"""Weight-only quantization (wint8, wint4/8, wint4) of the embedded tiny ERNIE 4.5 MoE: what it saves
and what it costs, against full precision measured in the same run.

All on CPU, float32 compute, in a temporary ERNIE_STUDIO_HOME:
    weights      bytes of the model's tensors (models.quant.weight_bytes): full precision counted as
                 bf16, each width's integer weights and float32 scales as stored, the rest as bf16;
                 and the same over the quantizable linear layers only (the issue's targets are 0.55x
                 and 0.35x; the tiny model's full-precision embedding and norms are 17% of its bytes,
                 and in wint4/8 its int8 layers weigh more than a real MoE's).
                 The same sums from a config's shapes alone (models.memory's parameter list) for the
                 released ERNIE-4.5-21B-A3B and 0.3B configs in ../shared/real_ernie when it is there,
                 checked against the tiny model's measured bytes.
    server       `python -m models.serve --device cpu` on the full-precision checkpoint and on each
                 quantized one (models.quant_io.save_quantized): VmRSS and VmHWM of the server's
                 /proc/<pid>/status after /health answered 200 and one --new-tokens reply.
    decode       tokens/s of greedy KV-cached decoding in this process (ChatEngine.generate_ids, end of
                 turn ignored), --new-tokens tokens after a fixed prompt, the best of --runs with the
                 models taking turns; on CPU a quantized layer is dequantized on every call, so it is
                 slower, not faster.
    perplexity   of the learned tokens of the rows of assets/sample_sft.jsonl the export report picks
                 (trainer.quant_report: 32 rows, seed 0), on the tiny MoE tuned by the shipped SFT-LoRA
                 example (examples/tiny_sft_lora.yaml, merged), and on the untuned tiny MoE; with the
                 share of greedy answers identical to full precision's. The tiny model's layers
                 (intermediate_size 344) take channel-wise scales only: no group-wise figure exists.
    training     `python -m trainer run examples/tiny_sft_lora.yaml optim.max_steps=--train-steps` on a
                 full-precision base and with finetuning.base_quant=wint4/8: the trainer's own peak RSS
                 (plumbing.peak_memory) and paddle's allocator peak (metrics.jsonl memory.tensors_peak_mb).

Run: .venv/bin/python bench/quant.py [--runs R] [--new-tokens T] [--train-steps S]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.memory_estimate import train_measured  # noqa: E402
from plumbing.peak_memory import resident_kib  # noqa: E402

MODEL = "ernie-4.5-tiny-moe"
WIDTHS = ("wint8", "wint4/8", "wint4")
FULL = "full"
# the targets: weight bytes against bf16, and the perplexity increase (group-wise scales)
TARGET_BYTES = {"wint8": 0.55, "wint4/8": 0.35}
TARGET_PPL = {"wint8": 1.01, "wint4/8": 1.05}
REAL = REPO.parent / "shared" / "real_ernie"
# keys without dots: bench/run_all.py reads figures by dotted paths
REAL_CONFIGS = {"21b_a3b": REAL / "ERNIE-4.5-21B-A3B-Paddle" / "config.fastdeploy-test.json",
                "03b": REAL / "ERNIE-4.5-0.3B-Base-PT" / "config.json"}
PROMPT = [{"role": "user", "content": "Tell me about the river that flows past the old mill."}]
EXAMPLE = REPO / "examples" / "tiny_sft_lora.yaml"
TIMEOUT_S = 180
MiB = 2**20


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 4)


# ---- training -----------------------------------------------------------------------------------

def train(name: str, root: Path, env: dict, overrides: list[str]) -> dict:
    """Run the SFT-LoRA example with `overrides`; its job directory and its memory peaks."""
    job = root / "jobs" / name
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for entry in config["data"]["train"]:
        entry["path"] = str(REPO / entry["path"])
    started = time.perf_counter()
    peak_rss, lines = train_measured(job, config, env, tuple(overrides))
    memory = [line["memory"] for line in lines if "memory" in line]
    print(f"trained {name} ({' '.join(overrides) or 'as shipped'}) in {time.perf_counter() - started:.0f} s: "
          f"peak RSS {peak_rss:.0f} MB", flush=True)
    return {"job": job, "peak_rss_mb": round(peak_rss, 1),
            "metrics_peak_rss_mb": max(m["peak_rss_mb"] for m in memory),
            "tensors_peak_mb": max(m["tensors_peak_mb"] for m in memory),
            "final_loss": next(line["loss"] for line in reversed(lines) if "loss" in line)}


# ---- weights ------------------------------------------------------------------------------------

def linear_bytes(model) -> int:
    """Bytes of the quantizable linear layers' weights: bf16 while full precision, else the
    integer weights and float32 scales as held."""
    from models.quant import eligible_layers, quantized_layers

    fp = sum(int(layer.weight.numel()) * 2 for _, layer in eligible_layers(model))
    return fp + sum(int(layer.quant_weight.numel()) + int(layer.weight_scale.numel()) * 4
                    for _, layer in quantized_layers(model))


def projected(config: dict, spec) -> dict:
    """(whole model, quantizable linear layers) bytes of a checkpoint with `config`, from shapes
    alone: bf16, or quantized as `spec` (None: full precision); fp32 parameters (the router) as
    fp32, as the loaded model holds them."""
    from models.memory import architecture, inventory
    from models.quant import group_count, stored_rows
    from models.quant_spec import keeps_full_precision

    params, linears = inventory(architecture(config))
    linear_names = {linear.name for linear in linears}
    whole = linear = 0
    for param in params:
        layer = param.name.removesuffix(".weight")
        if param.name.endswith(".weight") and layer in linear_names and not keeps_full_precision(layer):
            rows, cols = param.shape
            size = (rows * cols * 2 if spec is None else
                    stored_rows(rows, spec.bits_for(layer)) * cols
                    + group_count(rows, spec.group_size, layer, cols) * cols * 4)
            linear += size
        else:
            size = param.numel * (4 if param.fp32 else 2)
        whole += size
    return {"bytes": whole, "linear_bytes": linear}


def projections(specs: dict) -> dict:
    """Each real config's bytes per width, against bf16."""
    found = {}
    for name, path in REAL_CONFIGS.items():
        if not path.is_file():
            continue
        config = json.loads(path.read_text(encoding="utf-8"))
        config.pop("quantization_config", None)  # FastDeploy's test entry, not part of the release
        full = projected(config, None)
        entry = {"config": str(path.relative_to(REPO.parent)), "bf16_gb": round(full["bytes"] / 1e9, 2),
                 "linear_share": round(full["linear_bytes"] / full["bytes"], 3)}
        for label, spec in specs.items():
            got = projected(config, spec)
            entry[label] = {"gb": round(got["bytes"] / 1e9, 2), "ratio": ratio(got["bytes"], full["bytes"]),
                            "linear_ratio": ratio(got["linear_bytes"], full["linear_bytes"])}
        found[name] = entry
    return found


# ---- decoding and serving -----------------------------------------------------------------------

def decode_tokens_per_s(models: dict, tokenizer, new_tokens: int, runs: int) -> dict:
    """Each model's best tokens/s of `runs`: the models take turns within every run, so a machine
    that gets busier or quieter during the bench shifts them all alike, and the best run is the one
    least disturbed by other work on the machine."""
    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams

    engines = {name: ChatEngine(model, tokenizer) for name, model in models.items()}
    prompt = engines[FULL].prepare(PROMPT, new_tokens).ids
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    timings = {name: [] for name in engines}
    for run in range(runs + 1):  # the first is a warm-up
        for name, engine in engines.items():
            started = time.perf_counter()
            produced = sum(1 for _ in engine.generate_ids(prompt, params, new_tokens))
            if run:
                timings[name].append(produced / (time.perf_counter() - started))
    return {name: round(max(found), 1) for name, found in timings.items()}


def status_mb(pid: int) -> dict:
    fields = resident_kib(pid)
    return {"rss_mb": round(fields["VmRSS"] / 1024, 1), "peak_rss_mb": round(fields["VmHWM"] / 1024, 1)}


def server_memory(checkpoint: Path, env: dict, log: Path, new_tokens: int) -> dict:
    """The server's memory once loaded and after one reply."""
    port_file = Path(tempfile.mkdtemp(prefix="bench-quant-")) / "port"
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "models.serve", "--model", str(checkpoint), "--device",
                                    "cpu", "--port", "0", "--port-file", str(port_file)], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server on {checkpoint} exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the server on {checkpoint} was not ready within {TIMEOUT_S} s; see {log}")
            if port_file.exists():
                url = f"http://127.0.0.1:{int(port_file.read_text())}"
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        loaded = status_mb(process.pid)
        card = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "messages": PROMPT, "temperature": 0, "max_tokens": new_tokens, "ignore_eos": True}).json()
        assert reply["usage"]["completion_tokens"] == new_tokens, reply
        replied = status_mb(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {"loaded_rss_mb": loaded["rss_mb"], "rss_mb": replied["rss_mb"], "peak_rss_mb": replied["peak_rss_mb"],
            "quantization": card.get("quantization")}


# ---- the run ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-quant-"))
    env = dict(os.environ, ERNIE_STUDIO_HOME=str(home), PYTHONUNBUFFERED="1")
    os.environ["ERNIE_STUDIO_HOME"] = str(home)
    try:
        figures = run(home, env, args)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({
        "bench": "quant", "model": MODEL, "runs": args.runs, "new_tokens": args.new_tokens,
        "train_steps": args.train_steps, **figures,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


def run(home: Path, env: dict, args) -> dict:
    from models.tiny import ensure_built

    tiny = ensure_built(MODEL, home / "models")
    steps = f"optim.max_steps={args.train_steps}"
    training = {FULL: train("fp-base", home, env, [steps]),
                "wint4/8": train("wint4-8-base", home, env, [steps, "finetuning.base_quant=wint4/8"])}
    tuned = train("tuned", home, env, [])
    memory = {name: {key: value for key, value in found.items() if key != "job"} for name, found in training.items()}
    for key in ("peak_rss_mb", "tensors_peak_mb"):
        memory["wint4/8"][f"{key.removesuffix('_mb')}_ratio"] = ratio(memory["wint4/8"][key], memory[FULL][key])

    import paddle

    from models.loader import load_checkpoint
    from models.quant import quantize_model, weight_bytes
    from models.quant_io import save_quantized
    from models.quant_spec import QuantError, QuantSpec
    from trainer.config import load_config
    from trainer.export import load_merged
    from trainer.quant_report import build_sample, measure, perplexity

    paddle.set_device("cpu")
    specs = {width: QuantSpec(width) for width in WIDTHS}
    model, tokenizer = load_checkpoint(str(tiny))
    sample = build_sample(load_config(tuned["job"] / "config.yaml"), tokenizer)
    full_bytes, full_linear = weight_bytes(model, as_dtype="bfloat16"), linear_bytes(model)
    # the same sums from the config's shapes, as for the real configs (the router counted in fp32 there)
    tiny_config = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    weights = {"bf16_bytes": full_bytes, "linear_bf16_bytes": full_linear,
               "linear_share": round(full_linear / full_bytes, 3),
               "from_shapes_bytes": projected(tiny_config, None)["bytes"]}
    base_ppl = {FULL: round(perplexity(model, sample.rows), 3)}
    checkpoints, models = {FULL: tiny}, {FULL: model}
    for width, spec in specs.items():
        model, tokenizer = load_checkpoint(str(tiny))
        models[width] = model
        summary = quantize_model(model, spec)
        held, linear = weight_bytes(model, as_dtype="bfloat16"), linear_bytes(model)
        weights[width] = {"bytes": held, "ratio": ratio(held, full_bytes), "linear_bytes": linear,
                          "linear_ratio": ratio(linear, full_linear), "layers": summary.to_dict()["layers"],
                          "from_shapes_bytes": projected(tiny_config, spec)["bytes"]}
        if width in TARGET_BYTES:
            weights[width]["target"] = TARGET_BYTES[width]
        checkpoints[width] = save_quantized(model, spec, home / "quantized" / width.replace("/", "-"),
                                            source_dir=tiny)
        base_ppl[width] = round(perplexity(model, sample.rows), 3)
        print(f"{width}: weights {held / MiB:.2f} MiB ({weights[width]['ratio']:.3f}x bf16; linear layers "
              f"{weights[width]['linear_ratio']:.3f}x)", flush=True)
    speeds = decode_tokens_per_s(models, tokenizer, args.new_tokens, args.runs)
    decode = {FULL: speeds[FULL], **{width: {"tokens_per_s": speeds[width], "ratio": ratio(speeds[width], speeds[FULL])}
                                     for width in WIDTHS}}
    print(f"decode tokens/s: {speeds}", flush=True)
    try:
        group_wise = quantize_model(load_checkpoint(str(tiny))[0], QuantSpec("wint4/8", 128)).to_dict()
    except QuantError as exc:
        group_wise = f"refused: {exc}"

    merged, _ = load_merged(tuned["job"] / "output")
    merged.eval()
    report = measure(merged, tokenizer, sample, specs["wint4/8"], ["wint8", "wint4"], log=lambda *_: None)
    results = {row["width"]: row for row in report["results"]}
    quality = {FULL: {"perplexity": round(results[FULL]["perplexity"], 4)},
               "base_perplexity": base_ppl, "rows": len(sample.rows), "tokens": report["sample"]["tokens"],
               "tuned_final_loss": tuned["final_loss"], "group_wise": group_wise}
    for width in WIDTHS:
        row = results[width]
        quality[width] = {"perplexity": round(row["perplexity"], 4),
                          "ratio": ratio(row["perplexity"], results[FULL]["perplexity"]),
                          "same_share": round(row["same_share"], 3),
                          "base_ratio": ratio(base_ppl[width], base_ppl[FULL])}
        if width in TARGET_PPL:
            quality[width]["target"] = TARGET_PPL[width]
        print(f"{width}: perplexity {row['perplexity']:.4f} (full precision {results[FULL]['perplexity']:.4f}, "
              f"x{quality[width]['ratio']}), same greedy answers {row['same_share']:.0%}", flush=True)

    servers = {name: server_memory(path, env, home / "serve.log", args.new_tokens)
               for name, path in checkpoints.items()}
    for width in WIDTHS:
        for key in ("rss_mb", "peak_rss_mb"):
            servers[width][f"{key.removesuffix('_mb')}_ratio"] = ratio(servers[width][key], servers[FULL][key])
    for name, found in servers.items():
        print(f"server {name}: peak RSS {found['peak_rss_mb']} MB, RSS {found['rss_mb']} MB", flush=True)

    return {"weights": weights, "projection": projections({**specs, "wint4/8 g128": QuantSpec("wint4/8", 128)}),
            "server": servers, "decode": decode, "perplexity": quality, "training": memory}


if __name__ == "__main__":
    main()
