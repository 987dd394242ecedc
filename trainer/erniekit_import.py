"""ERNIEKit YAML import: turn an ERNIEKit training config into an ERNIE Studio run config.

This module owns the mapping from ERNIEKit's flat keys (model_name_or_path, stage, fine_tuning,
train_dataset_path, ...) to our dotted keys, the list of keys that have no equivalent here, and the
`python -m trainer config import-erniekit FILE -o OUT.yaml` command. It never imports paddle.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from models.chat_template import TEMPLATES
from plumbing.files import atomic_write_text
from trainer.config import ConfigError, from_dict, read_yaml_mapping, set_key, to_yaml

# ERNIEKit key -> our key, for values that carry over unchanged (validation checks them later)
_DIRECT = {
    "model_name_or_path": "model.name_or_path",
    "lora_rank": "finetuning.lora.rank",
    "lora_dropout": "finetuning.lora.dropout",
    "rslora": "finetuning.lora.rslora",
    "max_seq_len": "data.max_seq_len",
    "max_prompt_len": "data.max_prompt_len",
    "num_train_epochs": "optim.num_train_epochs",
    "max_steps": "optim.max_steps",
    "learning_rate": "optim.learning_rate",
    "warmup_steps": "optim.warmup_steps",
    "warmup_ratio": "optim.warmup_ratio",
    "weight_decay": "optim.weight_decay",
    "per_device_train_batch_size": "optim.per_device_batch_size",
    "batch_size": "optim.per_device_batch_size",
    "gradient_accumulation_steps": "optim.gradient_accumulation_steps",
    "max_grad_norm": "optim.max_grad_norm",
    "seed": "optim.seed",
    "logging_steps": "logging.logging_steps",
    "save_steps": "logging.save_steps",
    "save_total_limit": "logging.save_total_limit",
    "beta": "dpo.beta",
}

# ERNIEKit's own defaults for keys we map, where they differ from ours: a file that leaves them out
# ran with these, so the import keeps them
_ERNIEKIT_DEFAULTS = {
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "num_train_epochs": 1.0,
    "logging_steps": 500,
    "save_steps": 500,
    "max_seq_len": 4096,
    "max_prompt_len": 2048,
    "compute_type": "bf16",
    "device": "gpu",
}

_SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}
_PRECISIONS = {"bf16": "bf16", "fp16": "fp16", "float32": "fp32", "fp32": "fp32"}


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip() \
        .removesuffix("...").strip()


def _split(value: Any) -> list:
    """ERNIEKit lists several datasets as one comma-separated string; a YAML list is taken as is."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _datasets(src: dict, kind: str, dpo: bool, notes: list[str], problems: list) -> list[dict]:
    paths = _split(src.get(f"{kind}_dataset_path"))
    types = _split(src.get(f"{kind}_dataset_type"))
    probs = _split(src.get(f"{kind}_dataset_prob"))
    if not paths:
        return []
    if len(types) == 1 and len(paths) > 1:
        types = types * len(paths)
    if not probs:
        probs = [1.0] * len(paths)
    if (types and len(types) != len(paths)) or len(probs) != len(paths):
        problems.append((f"{kind}_dataset_path", f"{kind}_dataset_path lists {len(paths)} file(s) but "
                                                 f"{kind}_dataset_type has {len(types)} and "
                                                 f"{kind}_dataset_prob {len(probs)}; they must match"))
        return []
    entries = []
    for i, path in enumerate(paths):
        kind_name = str(types[i]).strip().lower() if types else "auto"
        if kind_name == "erniekit":
            fmt = "erniekit_dpo" if dpo else "erniekit"
        elif kind_name in ("messages", "auto"):
            fmt = kind_name
        else:
            fmt = "auto"
            notes.append(f"{kind}_dataset_type {types[i]!r} for {path} is not an ERNIEKit format we know; "
                         f"its format is detected from the file (format: auto)")
        prob = probs[i]
        try:
            prob = float(prob)
        except (TypeError, ValueError):
            pass  # left as given: validation names the bad value
        entries.append({"path": str(path), "format": fmt, "probability": prob})
    return entries


def convert_erniekit(src: dict) -> tuple[dict, list[str], list[str]]:
    """Map an ERNIEKit config mapping; return (our nested config dict, unmapped "key: value" lines, notes)."""
    out: dict = {}
    unmapped: list[str] = []
    notes: list[str] = []
    problems: list[tuple[str, str]] = []
    used: set[str] = set()

    defaulted = {k: v for k, v in _ERNIEKIT_DEFAULTS.items() if k not in src}
    if "bf16" in src or "fp16" in src:
        defaulted.pop("compute_type", None)
    if defaulted:
        notes.append("not in the file, so ERNIEKit's defaults were used: "
                     + ", ".join(f"{k}={_show(v)}" for k, v in defaulted.items()))
    src_all = {**defaulted, **src}

    stage = str(src_all.get("stage", "SFT")).strip().lower()
    used.add("stage")
    if stage not in ("sft", "dpo"):
        raise ConfigError([("stage", f"stage: {src_all['stage']!r} cannot be imported; ERNIE Studio runs SFT "
                                     f"and DPO")])
    dpo = stage == "dpo"
    set_key(out, "method", stage)

    tuning = src_all.get("fine_tuning")
    if tuning is None and "lora" in src_all:
        tuning = "lora" if src_all["lora"] is True else "full"
        used.add("lora")
    tuning = str(tuning if tuning is not None else "LoRA").strip().lower()
    used.add("fine_tuning")
    if tuning not in ("lora", "full"):
        problems.append(("fine_tuning", f"fine_tuning: expected LoRA or Full, got {src_all['fine_tuning']!r}"))
    set_key(out, "finetuning.type", tuning)

    for their_key, our_key in _DIRECT.items():
        if their_key in src_all:
            set_key(out, our_key, src_all[their_key])
            used.add(their_key)
    if "per_device_train_batch_size" in src_all and "batch_size" in src_all:
        set_key(out, "optim.per_device_batch_size", src_all["batch_size"])
        notes.append("both batch_size and per_device_train_batch_size are set; batch_size (ERNIEKit's "
                     "per-GPU batch size) was used")

    if "save_total_limit" not in src_all:
        notes.append("save_total_limit not set: ERNIEKit keeps every checkpoint, ERNIE Studio keeps "
                     "logging.save_total_limit (2) of them")
    name = src_all.get("model_name_or_path")
    if name is not None:
        notes.append(f"model.name_or_path is {name!r}: nothing is downloaded here, so it must be a local "
                     f"checkpoint directory (or a built-in model name) before the run starts")

    if tuning == "lora":
        alpha = src_all.get("lora_alpha", -1)
        used.add("lora_alpha")
        if alpha == -1:
            rank = src_all.get("lora_rank", 8)
            rslora = src_all.get("rslora") is True
            alpha = 4 if rslora else 2 * rank if isinstance(rank, int) else 16
            rule = "4 with rslora" if rslora else "2 x lora_rank"
            notes.append(f"lora_alpha not set: ERNIEKit then uses {rule}, so finetuning.lora.alpha is {alpha}")
        set_key(out, "finetuning.lora.alpha", alpha)

    if "template" in src_all:
        used.add("template")
        if str(src_all["template"]) in TEMPLATES:
            set_key(out, "model.template", str(src_all["template"]))
        else:
            notes.append(f"template {src_all['template']!r} has no equivalent; model.template is auto")

    if "lr_scheduler_type" in src_all:
        used.add("lr_scheduler_type")
        scheduler = str(src_all["lr_scheduler_type"]).lower()
        if scheduler in _SCHEDULERS:
            set_key(out, "optim.lr_scheduler", _SCHEDULERS[scheduler])
            if scheduler == "constant_with_warmup":
                notes.append("lr_scheduler_type constant_with_warmup became constant (warmup_steps still apply)")
        else:
            set_key(out, "optim.lr_scheduler", "cosine")
            notes.append(f"lr_scheduler_type {scheduler!r} is not supported here; optim.lr_scheduler is cosine")

    if dpo and "loss_type" in src_all:
        used.add("loss_type")
        if src_all["loss_type"] == "sigmoid":
            set_key(out, "dpo.loss_type", "sigmoid")
        else:
            notes.append(f"loss_type {src_all['loss_type']!r} is not supported here; dpo.loss_type is sigmoid")

    for kind in ("train", "eval"):
        for suffix in ("path", "type", "prob"):
            used.add(f"{kind}_dataset_{suffix}")
        entries = _datasets(src_all, kind, dpo, notes, problems)
        set_key(out, f"data.{kind}", entries)
    if any(not entry["path"].startswith("/") for entry in out["data"]["train"] + out["data"]["eval"]):
        notes.append("data paths are relative, as in ERNIEKit's examples: they resolve against the directory "
                     "the run starts in; make them absolute or add the files as datasets in the studio")

    _evaluation(src_all, out, used, notes)
    _precision_and_device(src_all, out, used, notes)

    if src_all.get("save_strategy", "steps") == "steps":
        used.add("save_strategy")
    if src_all.get("do_train", True) is True:
        used.add("do_train")

    for key, value in src.items():
        if key not in used:
            unmapped.append(f"{key}: {_show(value)}")
    if problems:
        raise ConfigError(problems)
    return out, unmapped, notes


def _evaluation(src: dict, out: dict, used: set, notes: list[str]) -> None:
    strategy = str(src.get("evaluation_strategy", "no")).lower()
    do_eval = src.get("do_eval", strategy != "no")
    used.update({"do_eval", "eval_steps"})
    if do_eval is not True or strategy == "no":
        used.add("evaluation_strategy")
        set_key(out, "logging.eval_steps", 0)
        if out["data"]["eval"]:
            notes.append("evaluation is off in the file (do_eval / evaluation_strategy); the eval files are "
                         "kept in data.eval and logging.eval_steps is 0")
        return
    if strategy == "steps":
        used.add("evaluation_strategy")
        set_key(out, "logging.eval_steps", src.get("eval_steps", src.get("logging_steps", 500)))
    else:
        set_key(out, "logging.eval_steps", 0)
        notes.append(f"evaluation_strategy {strategy!r} is not supported here (evaluation runs every "
                     f"logging.eval_steps steps); logging.eval_steps is 0")
    if not out["data"]["eval"] and out["logging"]["eval_steps"]:
        set_key(out, "logging.eval_steps", 0)
        notes.append("evaluation is on but no eval_dataset_path is given; logging.eval_steps is 0")


def _precision_and_device(src: dict, out: dict, used: set, notes: list[str]) -> None:
    precision = "fp32"
    if src.get("bf16") is True:
        precision = "bf16"
    elif src.get("fp16") is True:
        precision = "fp16"
    elif "compute_type" in src:
        compute = str(src["compute_type"]).lower()
        if compute in _PRECISIONS:
            precision = _PRECISIONS[compute]
            used.add("compute_type")
        else:
            notes.append(f"compute_type {compute!r} (quantised training) is not supported here; precision is "
                         f"bf16 on GPU")
            precision = "bf16"
    used.update({"bf16", "fp16"})

    device = str(src.get("device", "gpu")).lower()
    if device in ("gpu", "cpu"):
        used.add("device")
    else:
        notes.append(f"device {device!r} is not supported here; devices.device is gpu")
        device = "gpu"
    set_key(out, "devices.device", device)
    if device == "gpu":
        set_key(out, "devices.gpu_ids", "0")
        notes.append("ERNIEKit takes its GPUs from CUDA_VISIBLE_DEVICES, not from the file: devices.gpu_ids is "
                     "0 with one process; set devices.gpu_ids and devices.nproc to the GPUs you train on "
                     "(or devices.device=cpu precision=fp32 for a CPU run)")
    elif precision != "fp32":
        notes.append(f"{precision} needs a GPU; precision is fp32 for this cpu run")
        precision = "fp32"
    set_key(out, "precision", precision)


def import_erniekit(path: str) -> tuple[dict, list[str], list[str]]:
    """Read an ERNIEKit training YAML; return (our config dict, unmapped "key: value" lines, notes)."""
    try:
        return convert_erniekit(read_yaml_mapping(path))
    except ConfigError as exc:
        exc.source = exc.source or str(path)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="ERNIEKit training YAML (e.g. run_sft_lora_8k.yaml)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="run config to write")


def run(args: argparse.Namespace) -> int:
    try:
        data, unmapped, notes = import_erniekit(args.file)
        cfg = from_dict(data)
    except ConfigError as exc:
        exc.source = exc.source or args.file
        print(f"cannot import: {exc}", file=sys.stderr)
        return 1
    atomic_write_text(args.output, to_yaml(cfg))
    print(f"wrote {args.output}")
    if unmapped:
        print(f"\n{len(unmapped)} ERNIEKit key(s) with no equivalent here (not imported):")
        for line in unmapped:
            print(f"  {line}")
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"  - {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer config import-erniekit FILE -o OUT.yaml`; exit 0 on success, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m trainer config import-erniekit",
                                     description="Convert an ERNIEKit training YAML into a run config.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
