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
from trainer.config import (
    ConfigError, RunConfig, field_spec, from_dict, read_yaml_mapping, set_key, to_dict, to_yaml,
)
from trainer.messages import Message
from trainer.parallel import GPU_KEYS

# ERNIEKit key -> our key, for values that carry over unchanged (validation checks them later)
_DIRECT = {
    "model_name_or_path": "model.name_or_path",
    "lora_rank": "finetuning.lora.rank",
    "lora_dropout": "finetuning.lora.dropout",
    "rslora": "finetuning.lora.rslora",
    "max_seq_len": "data.max_seq_len",
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

# ERNIEKit's examples run on nodes of 8 GPUs
GPUS_PER_NODE = 8
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
        problems.append((f"{kind}_dataset_path", Message("import-dataset-counts", paths_key=f"{kind}_dataset_path",
                                                         paths=len(paths), types_key=f"{kind}_dataset_type",
                                                         types=len(types), probs_key=f"{kind}_dataset_prob",
                                                         probs=len(probs))))
        return []
    entries = []
    for i, path in enumerate(paths):
        kind_name = str(types[i]).strip().lower() if types else "auto"
        if kind_name == "erniekit":
            fmt = "erniekit_dpo" if dpo else "erniekit"
        elif kind_name == "messages":
            fmt = "chatml_dpo" if dpo else "messages"
        elif kind_name == "auto":
            fmt = kind_name
        else:
            fmt = "auto"
            notes.append(Message("import-note-dataset-type", key=f"{kind}_dataset_type", value=repr(types[i]),
                                 path=str(path)))
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
    if str(src.get("stage", "SFT")).strip().lower() != "dpo":
        defaulted.pop("max_prompt_len", None)  # ERNIEKit cuts DPO prompts to it; SFT has no such limit
    if defaulted:
        notes.append(Message("import-note-defaults", values=", ".join(f"{k}={_show(v)}" for k, v in defaulted.items())))
    src_all = {**defaulted, **src}

    stage = str(src_all.get("stage", "SFT")).strip().lower()
    used.add("stage")
    if stage not in ("sft", "dpo"):
        raise ConfigError([("stage", Message("import-stage", key="stage", stage=repr(src_all["stage"])))])
    dpo = stage == "dpo"
    set_key(out, "method", stage)

    tuning = src_all.get("fine_tuning")
    if tuning is None and "lora" in src_all:
        tuning = "lora" if src_all["lora"] is True else "full"
        used.add("lora")
    tuning = str(tuning if tuning is not None else "LoRA").strip().lower()
    used.add("fine_tuning")
    if tuning not in ("lora", "full"):
        problems.append(("fine_tuning", Message("import-fine-tuning", key="fine_tuning",
                                                value=repr(src_all["fine_tuning"]))))
    set_key(out, "finetuning.type", tuning)

    for their_key, our_key in _DIRECT.items():
        if their_key in src_all:
            set_key(out, our_key, src_all[their_key])
            used.add(their_key)
    if "max_prompt_len" in src_all:
        used.add("max_prompt_len")
        if dpo:
            set_key(out, "data.max_prompt_len", src_all["max_prompt_len"])
        else:
            notes.append(Message("import-note-prompt-len"))
    if "per_device_train_batch_size" in src_all and "batch_size" in src_all:
        set_key(out, "optim.per_device_batch_size", src_all["batch_size"])
        notes.append(Message("import-note-batch-both"))

    if "save_total_limit" not in src_all:
        notes.append(Message("import-note-save-limit", n=field_spec("logging.save_total_limit").default))
    name = src_all.get("model_name_or_path")
    if name is not None:
        notes.append(Message("import-note-model", name=repr(name)))

    if tuning == "lora":
        alpha = src_all.get("lora_alpha", -1)
        used.add("lora_alpha")
        if alpha == -1:
            rank = src_all.get("lora_rank", 8)
            rslora = src_all.get("rslora") is True
            alpha = 4 if rslora else 2 * rank if isinstance(rank, int) else 16
            rule = Message("import-rule-rslora" if rslora else "import-rule-rank")
            notes.append(Message("import-note-lora-alpha", rule=rule, alpha=alpha))
        set_key(out, "finetuning.lora.alpha", alpha)

    if "template" in src_all:
        used.add("template")
        if str(src_all["template"]) in TEMPLATES:
            set_key(out, "model.template", str(src_all["template"]))
        else:
            notes.append(Message("import-note-template", template=repr(src_all["template"])))

    if "lr_scheduler_type" in src_all:
        used.add("lr_scheduler_type")
        scheduler = str(src_all["lr_scheduler_type"]).lower()
        if scheduler in _SCHEDULERS:
            set_key(out, "optim.lr_scheduler", _SCHEDULERS[scheduler])
            if scheduler == "constant_with_warmup":
                notes.append(Message("import-note-constant"))
        else:
            set_key(out, "optim.lr_scheduler", "cosine")
            notes.append(Message("import-note-scheduler", value=repr(scheduler)))

    if dpo:
        _preference_loss(src_all, out, used, notes)

    for kind in ("train", "eval"):
        for suffix in ("path", "type", "prob"):
            used.add(f"{kind}_dataset_{suffix}")
        entries = _datasets(src_all, kind, dpo, notes, problems)
        set_key(out, f"data.{kind}", entries)
    if any(not entry["path"].startswith("/") for entry in out["data"]["train"] + out["data"]["eval"]):
        notes.append(Message("import-note-relative"))

    _evaluation(src_all, out, used, notes)
    _precision_and_device(src_all, out, used, notes)
    _gpu_settings(src_all, out, used, notes)

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


# ERNIEKit's loss_type values (paddleformers' DPO criterion's names) -> ours; its sppo_hard, nca_pair and
# dpop have no equivalent here
_LOSSES = {"sigmoid": "sigmoid", "ipo": "ipo", "kto_pair": "kto_pair", "simpo": "simpo", "hinge": "hinge",
           "or": "orpo"}


def _ratio(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _preference_loss(src: dict, out: dict, used: set, notes: list) -> None:
    """loss_type and its options. ERNIEKit's loss is pref_loss_ratio x the preference loss +
    sft_loss_ratio x the SFT loss, ours weighs the preference loss 1: the ratios carry over as one
    (the same objective, scaled), and its `or` (the odds-ratio loss alone) becomes orpo, the SFT loss
    + dpo.beta x the odds-ratio loss."""
    given = src.get("loss_type", "sigmoid")
    loss = _LOSSES.get(given) if isinstance(given, str) else None
    if loss is None:
        notes.append(Message("import-note-loss", value=repr(given)))
        loss = "sigmoid"
    used.add("loss_type")
    set_key(out, "dpo.loss_type", loss)
    if "reference_free" in src:
        used.add("reference_free")
        set_key(out, "dpo.reference_free", src["reference_free"])
    if "simpo_gamma" in src:
        used.add("simpo_gamma")  # only simpo reads it, there as here
        if loss == "simpo":
            set_key(out, "dpo.simpo_gamma", src["simpo_gamma"])
    pref, sft = _ratio(src.get("pref_loss_ratio", 1.0)), _ratio(src.get("sft_loss_ratio", 0.0))
    if pref is None or pref <= 0 or sft is None or sft < 0:
        # left for validation to name (sft_loss_ratio) or listed as not imported (pref_loss_ratio)
        if "sft_loss_ratio" in src:
            used.add("sft_loss_ratio")
            set_key(out, "dpo.sft_loss_ratio", src["sft_loss_ratio"])
        return
    used.update({"pref_loss_ratio", "sft_loss_ratio"})
    if loss == "orpo":
        if sft > 0:
            notes.append(Message("import-note-orpo", value=repr(given), pref=_show(pref), sft=_show(sft),
                                 beta=f"{pref / sft:g}"))
        else:
            notes.append(Message("import-note-orpo-alone", value=repr(given), beta=_show(pref)))
        set_key(out, "dpo.beta", pref / sft if sft > 0 else pref)
        return
    if pref != 1:
        notes.append(Message("import-note-pref-ratio", pref=_show(pref), ratio=f"{sft / pref:g}"))
    if sft:
        set_key(out, "dpo.sft_loss_ratio", sft / pref)


def _evaluation(src: dict, out: dict, used: set, notes: list[str]) -> None:
    strategy = str(src.get("evaluation_strategy", "no")).lower()
    do_eval = src.get("do_eval", strategy != "no")
    used.update({"do_eval", "eval_steps"})
    if do_eval is not True or strategy == "no":
        used.add("evaluation_strategy")
        set_key(out, "logging.eval_steps", 0)
        if out["data"]["eval"]:
            notes.append(Message("import-note-eval-off"))
        return
    if strategy == "steps":
        used.add("evaluation_strategy")
        set_key(out, "logging.eval_steps", src.get("eval_steps", src.get("logging_steps", 500)))
    else:
        set_key(out, "logging.eval_steps", 0)
        notes.append(Message("import-note-eval-strategy", value=repr(strategy)))
    if not out["data"]["eval"] and out["logging"]["eval_steps"]:
        set_key(out, "logging.eval_steps", 0)
        notes.append(Message("import-note-eval-no-data"))


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
            notes.append(Message("import-note-compute", value=repr(compute)))
            precision = "bf16"
    used.update({"bf16", "fp16"})

    device = str(src.get("device", "gpu")).lower()
    if device in ("gpu", "cpu"):
        used.add("device")
    else:
        notes.append(Message("import-note-device", value=repr(device)))
        device = "gpu"
    set_key(out, "devices.device", device)
    if device == "gpu":
        _processes(src, out, notes)
    elif precision != "fp32":
        notes.append(Message("import-note-precision-cpu", precision=precision))
        precision = "fp32"
    set_key(out, "precision", precision)


# ERNIEKit's GPU-scale keys -> ours, where the value carries over unchanged
_GPU_DIRECT = {
    "tensor_parallel_degree": "gpu.tensor_parallel_degree",
    "pipeline_parallel_degree": "gpu.pipeline_parallel_degree",
    "sharding_parallel_degree": "gpu.sharding_parallel_degree",
    "expert_parallel_degree": "gpu.expert_parallel_degree",
    "recompute": "gpu.recompute",
}
# both of ERNIEKit's ways of keeping the optimizer state in CPU memory
_OFFLOAD_KEYS = ("offload_optim", "tensorwise_offload_optimizer")
_STAGES = ("stage1", "stage2", "stage3")


def _degree(src: dict, key: str) -> int:
    value = src.get(key, 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _processes(src: dict, out: dict, notes: list) -> None:
    """One process per GPU, as many as the parallel degrees need (ERNIEKit takes its GPUs from
    CUDA_VISIBLE_DEVICES, not from the file): up to 8 on one node, whole nodes of 8 beyond."""
    tensor, pipeline = _degree(src, "tensor_parallel_degree"), _degree(src, "pipeline_parallel_degree")
    sharding = _degree(src, "sharding_parallel_degree")
    needed = tensor * pipeline * sharding
    if needed <= 1:
        set_key(out, "devices.gpu_ids", "0")
        notes.append(Message("import-note-gpu"))
        return
    nproc = min(needed, GPUS_PER_NODE)
    ids = ",".join(str(i) for i in range(nproc))
    set_key(out, "devices.nproc", nproc)
    set_key(out, "devices.gpu_ids", ids)
    shown = dict(tensor=tensor, pipeline=pipeline, sharding=sharding, n=needed, nproc=nproc, ids=ids)
    if needed <= GPUS_PER_NODE:
        notes.append(Message("import-note-gpu-layout", **shown))
        return
    nnodes = -(-needed // GPUS_PER_NODE)
    set_key(out, "devices.nnodes", nnodes)
    notes.append(Message("import-note-gpu-nodes", nnodes=nnodes, **shown))


def _gpu_settings(src: dict, out: dict, used: set, notes: list) -> None:
    """The parallel degrees, sharding stage, recompute and optimizer offload (the `gpu` section);
    a cpu run leaves them out."""
    gpu: dict = {}
    for their_key, our_key in _GPU_DIRECT.items():
        if their_key in src:
            gpu[our_key] = src[their_key]
    if "sharding" in src:
        words = str(src["sharding"] or "").split()
        stage = next((word for word in words if word in _STAGES), "none")
        gpu["gpu.sharding"] = stage
        if "offload" in words:
            notes.append(Message("import-note-sharding-offload", key="sharding", value=repr(src["sharding"]), stage=stage))
        elif words and stage == "none":
            notes.append(Message("import-note-sharding-unknown", key="sharding", value=repr(src["sharding"])))
    offload = [key for key in _OFFLOAD_KEYS if key in src]
    if offload:
        gpu["gpu.offload_optimizer"] = any(src[key] is True for key in offload)
    granularity = src.get("recompute_granularity")
    if src.get("recompute") is True and granularity not in (None, "full"):
        notes.append(Message("import-note-recompute", value=repr(granularity)))
    # paddleformers' default moe_group for ERNIE 4.5: experts over the tensor-parallel group
    if src.get("moe_group") in ("mp", "ep"):
        used.add("moe_group")
    used.update({*_GPU_DIRECT, "sharding", *_OFFLOAD_KEYS, "recompute_granularity"} & set(src))
    gpu = {key: gpu[key] for key in GPU_KEYS if key in gpu}
    if out["devices"]["device"] == "cpu":
        changed = [key for key, value in gpu.items() if value != field_spec(key).default]
        if changed:
            notes.append(Message("import-note-gpu-cpu", keys=", ".join(changed)))
        return
    for key, value in gpu.items():
        set_key(out, key, value)


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


def _over_defaults(data: dict) -> dict:
    """The imported settings over the schema's defaults, in schema order."""
    def overlay(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            base[key] = overlay(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
                else value
        return base

    return overlay(to_dict(RunConfig()), data)


def run(args: argparse.Namespace) -> int:
    try:
        data, unmapped, notes = import_erniekit(args.file)
        text = to_yaml(from_dict(data, local=False))
    except ConfigError as exc:
        # Only the devices a multi-node run spans are the user's to fill in (its first node's
        # address); anything else wrong means the ERNIEKit file itself is.
        if not all(key.startswith("devices.") for key, _ in exc.problems):
            exc.source = exc.source or args.file
            print(f"cannot import: {exc}", file=sys.stderr)
            return 1
        text = yaml.safe_dump(_over_defaults(data), sort_keys=False, allow_unicode=True, default_flow_style=False)
    atomic_write_text(args.output, text)
    print(f"wrote {args.output}")
    if unmapped:
        print(f"\n{len(unmapped)} ERNIEKit key(s) with no equivalent here (not imported):")
        for line in unmapped:
            print(f"  {line}")
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"  - {note}")
    try:
        from_dict(data)
    except ConfigError as exc:
        print(f"\nto do before it runs on this machine ({len(exc.problems)}):")
        for _, message in exc.problems:
            print(f"  - {message}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer config import-erniekit FILE -o OUT.yaml`; exit 0 on success, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m trainer config import-erniekit",
                                     description="Convert an ERNIEKit training YAML into a run config.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
