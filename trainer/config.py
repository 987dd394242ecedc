"""The run config: one typed schema for every option of a training run.

This module owns the schema (dotted keys such as `optim.learning_rate`), its validation, YAML load
and save, `KEY=VALUE` overrides, the field list the web UI builds its form from, and the command
that runs a config. It never imports paddle or paddleformers: the web UI imports it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import math
import os
import re
import sys
import tempfile
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from models.chat_template import TEMPLATES
from trainer.data.formats import FORMATS

DATA_FORMATS = ("auto", *FORMATS)


def _opt(default: Any, help: str, *, label: str = "", choices: tuple = (), minimum: float | None = None,
         maximum: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,
         advanced: bool = False, depends_on: tuple[str, str] | None = None) -> Any:
    meta = {"help": help, "label": label, "choices": choices, "minimum": minimum, "maximum": maximum,
            "min_exclusive": min_exclusive, "max_exclusive": max_exclusive, "advanced": advanced,
            "depends_on": depends_on}
    if isinstance(default, list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DatasetEntry:
    path: str = _opt("", "A data file (JSONL, JSON, CSV or Parquet).", label="File")
    format: str = _opt("auto", "The file's format; auto detects it.", choices=DATA_FORMATS)
    probability: float = _opt(1.0, "Relative weight when mixing several files (need not sum to 1).",
                              minimum=0, min_exclusive=True)


@dataclass
class ModelSection:
    name_or_path: str = _opt("ernie-4.5-tiny-moe", "A built-in model name or a local checkpoint directory.",
                             label="Model")
    template: str = _opt("auto", "Chat template: auto keeps the model's own; ernie is ERNIE 4.5's thinking "
                         "format (<think> reasoning, then the answer); ernie_nothink the plain one. The "
                         "output ships the template it was trained with.",
                         choices=("auto", *TEMPLATES), advanced=True)


@dataclass
class LoraSection:
    # Every ERNIE 4.5 linear layer has a side of at most 8192 (the largest hidden size): a higher rank
    # adds no capacity, only memory.
    rank: int = _opt(8, "LoRA rank r.", label="LoRA rank", minimum=1, maximum=8192,
                     depends_on=("finetuning.type", "lora"))
    alpha: float = _opt(16.0, "LoRA alpha; the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).",
                        label="LoRA alpha", minimum=0, min_exclusive=True,
                        depends_on=("finetuning.type", "lora"))
    dropout: float = _opt(0.0, "Dropout on the LoRA input.", label="LoRA dropout", minimum=0, maximum=1,
                          max_exclusive=True, advanced=True, depends_on=("finetuning.type", "lora"))
    target_modules: list[str] = _opt(
        ["all-linear"],
        "Layers that get adapters: module names or regular expressions (qkv_proj, o_proj, up_gate_proj, "
        "down_proj, ...); all-linear means every linear layer. A comma-separated string is accepted.",
        label="LoRA target modules", advanced=True, depends_on=("finetuning.type", "lora"))
    rslora: bool = _opt(False, "Rank-stabilised LoRA scaling (alpha / sqrt(r)).", label="rsLoRA",
                        advanced=True, depends_on=("finetuning.type", "lora"))


@dataclass
class FinetuningSection:
    type: str = _opt("lora", "Train low-rank adapters (lora) or every weight (full).",
                     label="Fine-tuning type", choices=("lora", "full"))
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class DpoSection:
    beta: float = _opt(0.1, "DPO beta: how far the policy may move from the reference model.",
                       label="DPO beta", minimum=0, min_exclusive=True,
                       depends_on=("method", "dpo"))
    loss_type: str = _opt("sigmoid", "DPO loss.", label="DPO loss", choices=("sigmoid",),
                          advanced=True, depends_on=("method", "dpo"))


_CHECKPOINT_VALUE = "; -1 keeps the checkpoint's value, 0 turns it off"
_MOE_ONLY = " MoE models only."


@dataclass
class MoeSection:
    aux_loss_coef: float = _opt(-1.0, "Weight of the router's load-balancing loss" + _CHECKPOINT_VALUE + "."
                                + _MOE_ONLY, label="Load-balancing loss", advanced=True)
    z_loss_coef: float = _opt(-1.0, "Weight of the router z-loss (keeps gate logits small)" + _CHECKPOINT_VALUE
                              + "." + _MOE_ONLY, label="Router z-loss", advanced=True)
    orthogonal_loss_coef: float = _opt(-1.0, "Weight of the router orthogonal loss (pushes the experts' gate "
                                       "vectors apart)" + _CHECKPOINT_VALUE + "." + _MOE_ONLY,
                                       label="Router orthogonal loss", advanced=True)
    bias_update_rate: float = _opt(0.0, "Aux-loss-free balancing: after every optimizer step each expert's "
                                   "routing correction bias moves by this much, up for experts chosen less "
                                   "than average, down for those chosen more (ERNIE 4.5 used 1e-3); 0 keeps "
                                   "the biases fixed. Full fine-tuning only: a LoRA adapter does not carry "
                                   "the biases." + _MOE_ONLY, label="Balancing bias update rate",
                                   minimum=0, advanced=True)
    token_balanced_loss: bool = _opt(False, "Multimodal token-balanced loss: each sequence's loss is divided by "
                                     "its whole length (prompt and answer, text and image tokens) rather than "
                                     "by the tokens that carry a loss, so sequences with short answers do not "
                                     "weigh more. SFT only.", label="Token-balanced loss", advanced=True)
    freeze_router: bool = _opt(False, "Keep the router (gate) weights fixed in full fine-tuning; LoRA never "
                               "trains the router." + _MOE_ONLY, label="Freeze router", advanced=True)
    train_experts: str = _opt("all", "Which expert FFNs train: all of them, only the shared experts, or none "
                              "(attention and dense layers only). With LoRA this chooses where adapters "
                              "go." + _MOE_ONLY, label="Experts trained", choices=("all", "shared", "none"),
                              advanced=True)


@dataclass
class DataSection:
    train: list[DatasetEntry] = _opt([], "Training files, mixed by probability.", label="Training data")
    eval: list[DatasetEntry] = _opt([], "Evaluation files (optional).", label="Evaluation data")
    eval_split: float = _opt(0.0, "Fraction of the training data held out for evaluation when no "
                             "evaluation files are given.", minimum=0, maximum=0.5, max_exclusive=True)
    max_seq_len: int = _opt(1024, "Longest training sequence in tokens (prompt and answer).", minimum=16)
    max_prompt_len: int = _opt(512, "Longest prompt in tokens; must be below max_seq_len.", minimum=8)
    truncation: str = _opt("drop_oldest_turns", "What to do with a row longer than max_seq_len.",
                           choices=("drop_oldest_turns", "truncate_end", "skip_row"), advanced=True)
    skip_invalid: bool = _opt(False, "Skip rows that fail validation instead of refusing the file.",
                              advanced=True)


@dataclass
class OptimSection:
    learning_rate: float = _opt(1e-4, "Peak learning rate.", minimum=0, min_exclusive=True)
    lr_scheduler: str = _opt("cosine", "Learning-rate schedule after warmup.", label="LR scheduler",
                             choices=("linear", "cosine", "constant"))
    warmup_steps: int = _opt(0, "Linear warmup steps (takes precedence over warmup_ratio).", minimum=0)
    warmup_ratio: float = _opt(0.0, "Warmup as a fraction of all steps.", minimum=0, maximum=1,
                               max_exclusive=True, advanced=True)
    weight_decay: float = _opt(0.0, "AdamW weight decay.", minimum=0, advanced=True)
    num_train_epochs: float = _opt(3.0, "Passes over the training data (fractions allowed).",
                                   label="Epochs", minimum=0, min_exclusive=True)
    max_steps: int = _opt(-1, "Optimizer steps to train; -1 uses the number of epochs.")
    per_device_batch_size: int = _opt(1, "Sequences per process per step.", label="Batch size per device",
                                      minimum=1)
    gradient_accumulation_steps: int = _opt(1, "Batches accumulated into one optimizer step.", minimum=1)
    max_grad_norm: float = _opt(1.0, "Gradient clipping norm; 0 turns clipping off.", minimum=0,
                                advanced=True)
    seed: int = _opt(42, "Random seed.", minimum=0, maximum=2**32 - 1, advanced=True)  # numpy's seed range


@dataclass
class LoggingSection:
    logging_steps: int = _opt(1, "Log loss and learning rate every N steps.", minimum=1)
    save_steps: int = _opt(50, "Save a checkpoint every N steps.", minimum=1)
    eval_steps: int = _opt(0, "Evaluate every N steps; 0 never evaluates during training.", minimum=0)
    save_total_limit: int = _opt(2, "Checkpoints kept; older ones are deleted.", minimum=1, advanced=True)


@dataclass
class DevicesSection:
    device: str = _opt("cpu", "Run on CPU or GPU.", choices=("cpu", "gpu"))
    gpu_ids: str = _opt("", "Comma-separated GPU ids, e.g. 0,1; required on GPU, one per process.",
                        label="GPU ids", depends_on=("devices.device", "gpu"))
    nproc: int = _opt(1, "Processes per node (data-parallel ranks); on CPU several ranks share the CPU.",
                      label="Processes per node", minimum=1)
    nnodes: int = _opt(1, "Number of machines.", label="Nodes", minimum=1, advanced=True)
    master: str = _opt("", "host:port of the first node; required when nnodes > 1.", label="Master address",
                       advanced=True)


@dataclass
class OutputSection:
    dir: str = _opt("", "Where the final model or adapter is written; empty uses the job directory.",
                    label="Output directory", advanced=True)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    method: str = _opt("sft", "Supervised fine-tuning (sft) or preference optimisation (dpo).",
                       choices=("sft", "dpo"))
    finetuning: FinetuningSection = field(default_factory=FinetuningSection)
    dpo: DpoSection = field(default_factory=DpoSection)
    moe: MoeSection = field(default_factory=MoeSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    precision: str = _opt("fp32", "Training precision; bf16 and fp16 need a GPU.",
                          choices=("fp32", "bf16", "fp16"))
    logging: LoggingSection = field(default_factory=LoggingSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    output: OutputSection = field(default_factory=OutputSection)


@dataclass(frozen=True)
class FieldSpec:
    """One leaf option: what the web UI needs to draw a widget for it and what validation enforces."""

    key: str
    type: str  # str | int | float | bool | list[str] | datasets (a list of DatasetEntry)
    default: Any
    label: str
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    group: str = ""
    advanced: bool = False
    depends_on: tuple[str, str] | None = None  # (key, value): only relevant when that key has that value
    item_fields: tuple[FieldSpec, ...] = ()  # for datasets: the fields of one entry


class ConfigError(Exception):
    """Every problem found in a config, each as (dotted key, readable message)."""

    def __init__(self, problems: list[tuple[str, str]], source: str = ""):
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return where + self.problems[0][1]
        lines = [f"{where}{len(self.problems)} problems in the run config:"]
        lines += [f"  - {message}" for _, message in self.problems]
        return "\n".join(lines)


# the UI's form groups; a key not listed here is grouped by its first part
_GROUPS = {"method": "method", "finetuning": "method", "dpo": "method", "precision": "optim", "moe": "moe"}

_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", list[str]: "list[str]",
               list[DatasetEntry]: "datasets"}


def _leaf_specs(cls: type, prefix: str) -> list[FieldSpec]:
    hints = typing.get_type_hints(cls)
    specs: list[FieldSpec] = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs += _leaf_specs(hint, key + ".")
            continue
        meta = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kind = _TYPE_NAMES[hint]
        specs.append(FieldSpec(
            key=key, type=kind, default=default,
            label=meta["label"] or f.name.replace("_", " ").capitalize(), help=meta["help"],
            choices=meta["choices"], minimum=meta["minimum"], maximum=meta["maximum"],
            min_exclusive=meta["min_exclusive"], max_exclusive=meta["max_exclusive"],
            group=_GROUPS.get(key.split(".")[0], key.split(".")[0]), advanced=meta["advanced"],
            depends_on=meta["depends_on"],
            item_fields=tuple(_leaf_specs(DatasetEntry, "")) if kind == "datasets" else (),
        ))
    return specs


_FIELDS = _leaf_specs(RunConfig, "")
_BY_KEY = {spec.key: spec for spec in _FIELDS}
_SECTIONS = sorted({key.rsplit(".", i)[0] for key in _BY_KEY for i in range(1, key.count(".") + 1)})
_ENTRY_FIELDS = {spec.key: spec for spec in _leaf_specs(DatasetEntry, "")}


def iter_fields() -> list[FieldSpec]:
    """Every leaf option in schema order."""
    return [dataclasses.replace(spec, default=copy.deepcopy(spec.default)) for spec in _FIELDS]


def field_spec(key: str) -> FieldSpec:
    """The FieldSpec of one dotted key (KeyError for an unknown key)."""
    spec = _BY_KEY[key]
    return dataclasses.replace(spec, default=copy.deepcopy(spec.default))


# ---------------------------------------------------------------- messages

def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _range_text(spec: FieldSpec) -> str:
    lo, hi = spec.minimum, spec.maximum
    if lo is not None and hi is not None:
        left, right = "(" if spec.min_exclusive else "[", ")" if spec.max_exclusive else "]"
        return f"must be in {left}{_num(lo)}, {_num(hi)}{right}"
    if lo is not None:
        return f"must be {'>' if spec.min_exclusive else '>='} {_num(lo)}"
    return f"must be {'<' if spec.max_exclusive else '<='} {_num(hi)}"


def _in_range(spec: FieldSpec, x: float) -> bool:
    if spec.minimum is not None and (x <= spec.minimum if spec.min_exclusive else x < spec.minimum):
        return False
    if spec.maximum is not None and (x >= spec.maximum if spec.max_exclusive else x > spec.maximum):
        return False
    return True


def suggest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key a mistyped `key` most likely meant, or None."""
    valid = list(valid)
    leaf = key.rsplit(".", 1)[-1]
    for candidate in valid:
        if candidate.rsplit(".", 1)[-1] == leaf:
            return candidate
    section = key.rpartition(".")[0]
    for candidate in valid:
        parent, _, name = candidate.rpartition(".")
        # "lr" for learning_rate, "wd" for weight_decay: initials are a common shorthand
        if parent == section and "".join(w[0] for w in name.split("_") if w) == leaf and len(leaf) > 1:
            return candidate
    siblings = [c for c in valid if c.rpartition(".")[0] == section]
    match = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6) or \
        difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown(key: str, valid: Iterable[str]) -> str:
    guess = suggest_key(key, valid)
    return f"unknown key '{key}'" + (f" — did you mean '{guess}'?" if guess else "")


# ---------------------------------------------------------------- validation

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SENTINEL = object()


def _coerce(spec: FieldSpec, key: str, value: Any) -> tuple[Any, str | None]:
    """Check one value against its field; return (clean value, None) or (None, message)."""
    kind, raw = spec.type, value
    if kind == "bool":
        if not isinstance(value, bool):
            return None, f"{key}: expected true or false, got {_show(value)}"
        return value, None
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{key}: expected an integer, got {_show(value)}"
    elif kind == "float":
        # PyYAML reads 1e-4 (no dot) as a string, so numeric text is accepted
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{key}: expected a number, got {_show(value)}"
        value = float(value)
        if not math.isfinite(value):
            return None, f"{key}: expected a finite number, got {_show(value)}"
    elif kind == "str":
        if key == "devices.gpu_ids":
            value = _gpu_ids_text(value)
        if not isinstance(value, str):
            return None, f"{key}: expected a string, got {_show(value)}"
    elif kind == "list[str]":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"{key}: expected a list of strings, got {_show(value)}"
    if spec.choices:
        if isinstance(value, str):
            value = next((c for c in spec.choices if c.lower() == value.lower()), value)
        if value not in spec.choices:
            return None, f"{key}: expected one of {', '.join(spec.choices)}; got {_show(value)}"
    if kind in ("int", "float") and not _in_range(spec, value):
        return None, f"{key}: {_range_text(spec)}, got {_show(value if isinstance(raw, str) else raw)}"
    return value, None


def _gpu_ids_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str):
        return ",".join(part.strip() for part in value.split(",") if part.strip())
    return value


def _check_datasets(key: str, value: Any, problems: list) -> list[DatasetEntry] | None:
    if value is None:
        value = []
    if not isinstance(value, list):
        problems.append((key, f"{key}: expected a list of {{path, format, probability}} entries, "
                              f"got {_show(value)}"))
        return None
    entries, ok = [], True
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            item = {"path": item}
        elif isinstance(item, DatasetEntry):
            item = dataclasses.asdict(item)
        if not isinstance(item, dict):
            problems.append((where, f"{where}: expected a mapping with a path, got {_show(item)}"))
            ok = False
            continue
        clean = {}
        for name, raw in item.items():
            sub = f"{where}.{name}"
            if name not in _ENTRY_FIELDS:
                problems.append((sub, _unknown(sub, [f"{where}.{n}" for n in _ENTRY_FIELDS])))
                ok = False
                continue
            checked, message = _coerce(_ENTRY_FIELDS[name], sub, raw)
            if message:
                problems.append((sub, message))
                ok = False
            else:
                clean[name] = checked
        if "path" in clean and not clean["path"].strip():
            problems.append((f"{where}.path", f"{where}.path: must not be empty"))
            ok = False
        elif "path" not in clean and "path" not in item:
            problems.append((f"{where}.path", f"{where}.path: missing; every data file needs a path"))
            ok = False
        if ok:
            entries.append(DatasetEntry(**clean))
    return entries if ok else None


def _flatten(d: dict, prefix: str, out: dict, problems: list) -> None:
    """Dotted key -> value for every leaf given, accepting nested mappings and dotted keys alike."""
    for raw_key, value in d.items():
        if not isinstance(raw_key, str):
            problems.append((str(raw_key), f"{prefix}{raw_key}: keys must be strings"))
            continue
        key = prefix + raw_key
        if key in _BY_KEY:
            if key in out:
                problems.append((key, f"{key}: given twice"))
                continue
            out[key] = value
        elif key in _SECTIONS:
            if isinstance(value, dict):
                _flatten(value, key + ".", out, problems)
            elif value is not None:
                problems.append((key, f"{key}: expected a mapping of settings, got {_show(value)}"))
        else:
            problems.append((key, _unknown(key, list(_BY_KEY) + _SECTIONS)))


def from_dict(d: dict | None) -> RunConfig:
    """Validate a (nested or dotted-key) mapping and build the RunConfig; raise ConfigError with every problem."""
    problems: list[tuple[str, str]] = []
    given: dict[str, Any] = {}
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError([("", f"expected a mapping of settings at the top level, got {_show(d)}")])
    _flatten(d, "", given, problems)

    values: dict[str, Any] = {}
    for spec in _FIELDS:
        key = spec.key
        raw = given.get(key, _SENTINEL)
        if raw is _SENTINEL:
            values[key] = copy.deepcopy(spec.default)
            continue
        if spec.type == "datasets":
            entries = _check_datasets(key, raw, problems)
            if entries is not None:
                values[key] = entries
            continue
        clean, message = _coerce(spec, key, raw)
        if message:
            problems.append((key, message))
        else:
            values[key] = clean

    problems += _cross_checks(values)
    if problems:
        raise ConfigError(problems)
    return _build(RunConfig, "", values)


def validate(cfg: RunConfig) -> RunConfig:
    """Check a RunConfig built or edited in code; the same rules and errors as from_dict."""
    return from_dict(to_dict(cfg))


def _cross_checks(v: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules across fields, each checked only when the fields it reads are valid on their own."""
    out: list[tuple[str, str]] = []

    def have(*keys: str) -> bool:
        return all(k in v for k in keys)

    if have("model.name_or_path") and not v["model.name_or_path"].strip():
        out.append(("model.name_or_path", "model.name_or_path: must not be empty; give a built-in model "
                                          "name such as ernie-4.5-tiny-moe or a checkpoint directory"))
    if have("data.train") and not v["data.train"]:
        out.append(("data.train", "data.train: needs at least one file, e.g. data.train=[{path: train.jsonl}]"))
    if have("data.max_seq_len", "data.max_prompt_len") and v["data.max_prompt_len"] >= v["data.max_seq_len"]:
        out.append(("data.max_prompt_len", f"data.max_prompt_len: must be below data.max_seq_len "
                                           f"({v['data.max_seq_len']}), got {v['data.max_prompt_len']}"))
    if have("optim.max_steps") and v["optim.max_steps"] != -1 and v["optim.max_steps"] < 1:
        out.append(("optim.max_steps", f"optim.max_steps: must be -1 (use the number of epochs) or >= 1, "
                                       f"got {v['optim.max_steps']}"))
    if have("precision", "devices.device") and v["devices.device"] == "cpu" and v["precision"] != "fp32":
        out.append(("precision", f"precision: {v['precision']} needs a GPU; on cpu use fp32"))
    for kind in ("train", "eval"):
        key = f"data.{kind}"
        for i, entry in enumerate(v.get(key) or []):
            if v.get("method") == "sft" and entry.format.endswith("_dpo"):
                out.append((f"{key}[{i}].format", f"{key}[{i}].format: {entry.format} holds preference pairs; "
                                                  f"it needs method dpo"))
    if have("logging.eval_steps", "data.eval", "data.eval_split") and v["logging.eval_steps"] > 0 \
            and not v["data.eval"] and v["data.eval_split"] == 0:
        out.append(("logging.eval_steps", "logging.eval_steps: evaluation needs data: give data.eval or "
                                          "set data.eval_split above 0"))
    if have("devices.device", "devices.gpu_ids", "devices.nproc") and v["devices.device"] == "gpu":
        ids = v["devices.gpu_ids"]
        parts = ids.split(",") if ids else []
        if not parts:
            out.append(("devices.gpu_ids", "devices.gpu_ids: required when devices.device is gpu, e.g. 0 or 0,1"))
        elif not all(p.isdigit() for p in parts):
            out.append(("devices.gpu_ids", f"devices.gpu_ids: expected comma-separated integers, got {ids!r}"))
        elif len(set(parts)) != len(parts):
            out.append(("devices.gpu_ids", f"devices.gpu_ids: a GPU is listed twice in {ids!r}"))
        elif len(parts) != v["devices.nproc"]:
            out.append(("devices.nproc", f"devices.nproc: {v['devices.nproc']} process(es) per node but "
                                         f"{len(parts)} GPU id(s) in devices.gpu_ids; they must match "
                                         f"(one process per GPU)"))
    if have("devices.nnodes", "devices.master") and v["devices.nnodes"] > 1 \
            and not re.fullmatch(r"[^\s:]+:\d+", v["devices.master"]):
        out.append(("devices.master", f"devices.master: required as host:port when devices.nnodes > 1, "
                                      f"got {v['devices.master']!r}"))
    for key in ("moe.aux_loss_coef", "moe.z_loss_coef", "moe.orthogonal_loss_coef"):
        if have(key) and v[key] < 0 and v[key] != -1:
            out.append((key, f"{key}: must be -1 (keep the checkpoint's value) or >= 0, got {_num(v[key])}"))
    if have("moe.bias_update_rate", "finetuning.type") and v["moe.bias_update_rate"] > 0 \
            and v["finetuning.type"] == "lora":
        out.append(("moe.bias_update_rate", "moe.bias_update_rate: aux-loss-free balancing updates the routing "
                                            "biases, which a LoRA adapter does not carry; use finetuning.type "
                                            "full or set it to 0"))
    if have("moe.token_balanced_loss", "method") and v["moe.token_balanced_loss"] and v["method"] != "sft":
        out.append(("moe.token_balanced_loss", f"moe.token_balanced_loss: applies to the SFT loss; method "
                                               f"{v['method']} has its own"))
    if have("moe.freeze_router", "finetuning.type") and v["moe.freeze_router"] and v["finetuning.type"] == "lora":
        out.append(("moe.freeze_router", "moe.freeze_router: LoRA never trains the router; the option is "
                                         "for finetuning.type full"))
    if have("finetuning.lora.target_modules"):
        modules = v["finetuning.lora.target_modules"]
        if not modules:
            out.append(("finetuning.lora.target_modules", "finetuning.lora.target_modules: needs at least "
                                                          "one pattern; all-linear adapts every linear layer"))
        for pattern in modules:
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append(("finetuning.lora.target_modules",
                            f"finetuning.lora.target_modules: {pattern!r} is not a valid pattern ({exc})"))
    return out


def _build(cls: type, prefix: str, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        kwargs[f.name] = _build(hints[f.name], key + ".", values) if dataclasses.is_dataclass(hints[f.name]) \
            else values[key]
    return cls(**kwargs)


# ---------------------------------------------------------------- access, overrides, YAML

def to_dict(cfg: RunConfig) -> dict:
    """Nested plain dict in schema order (what the YAML holds)."""
    return dataclasses.asdict(cfg)


def get(cfg: RunConfig, key: str) -> Any:
    """The value at a dotted key, e.g. get(cfg, "optim.learning_rate")."""
    if key not in _BY_KEY:
        raise KeyError(_unknown(key, _BY_KEY))
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def set_key(d: dict, key: str, value: Any) -> None:
    """Set a dotted key in a nested dict, creating sections on the way."""
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def apply_overrides(d: dict | None, overrides: Iterable[str]) -> dict:
    """A copy of `d` with `KEY=VALUE` overrides applied; VALUE is read as YAML (so 3e-4, true, [a, b] work)."""
    out, problems = _apply_overrides(d, overrides)
    if problems:
        raise ConfigError(problems)
    return out


def _apply_overrides(d: dict | None, overrides: Iterable[str]) -> tuple[dict, list[tuple[str, str]]]:
    out = copy.deepcopy(d) if d else {}
    problems: list[tuple[str, str]] = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append((item, f"override {item!r}: expected KEY=VALUE, e.g. optim.learning_rate=3e-4"))
            continue
        if key not in _BY_KEY:
            problems.append((key, _unknown(key, _BY_KEY)))
            continue
        if not text.strip():
            value: Any = ""
        else:
            try:
                value = _load_yaml(text)
            except (yaml.YAMLError, RecursionError) as exc:
                problems.append((key, f"{key}: the value {text!r} is not valid YAML ({_yaml_reason(exc)})"))
                continue
            # output.dir=2024 or output.dir=yes mean the text itself, not a number or a boolean
            if _BY_KEY[key].type == "str" and not isinstance(value, str) and key != "devices.gpu_ids":
                value = text.strip()
        _drop_dotted(out, key)
        set_key(out, key, value)
    return out, problems


def _drop_dotted(d: dict, key: str) -> None:
    """Remove `key` given in dotted form at any level, so an override never collides with it."""
    parts = key.split(".")
    node: Any = d
    for i in range(len(parts)):
        if not isinstance(node, dict):
            return
        node.pop(".".join(parts[i:]), None)
        node = node.get(parts[i])


class _ConfigLoader(yaml.SafeLoader):
    """`yaml.safe_load` that also refuses a key given twice in one mapping (the later value would
    silently win) and aliases (a few lines of them can expand into gigabytes)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed in a "
                                              f"run config; write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {first + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)


def _yaml_reason(exc: yaml.YAMLError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file's top-level mapping; ConfigError naming the file when it is missing, broken or not a mapping."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError([("", "no such file")], source=name) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"cannot read it ({exc.__class__.__name__}: {exc})")], source=name) from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"YAML syntax error at {_yaml_reason(exc)}")], source=name) from None
    except RecursionError:
        raise ConfigError([("", "YAML nested too deeply to read")], source=name) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"expected a mapping of settings at the top level, got {_show(data)}")],
                          source=name)
    return data


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override and validate a run config YAML; ConfigError names the file and every problem."""
    name = os.fspath(path)
    data, problems = _apply_overrides(read_yaml_mapping(name), overrides)
    try:
        cfg = from_dict(data)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems, source=name)
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    """The config as YAML, in schema order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see the old content or the new, never a half-written one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dump_yaml(cfg: RunConfig, path: str | os.PathLike) -> None:
    write_text_atomic(path, to_yaml(cfg))


# ---------------------------------------------------------------- the command that runs a config

def launch_prefix(cfg: RunConfig, job_dir: str | os.PathLike) -> list[str]:
    """`python -m paddle.distributed.launch ...` when the run has more than one process, else []."""
    dev = cfg.devices
    if dev.nproc * dev.nnodes <= 1:
        return []
    argv = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(dev.nproc)]
    if dev.device == "gpu":
        argv += ["--devices", dev.gpu_ids]
    if dev.nnodes > 1:
        argv += ["--nnodes", str(dev.nnodes), "--master", dev.master]
    # per-rank logs go to the job, not to ./log in whatever directory the launcher started in
    argv += ["--log_dir", os.path.join(os.fspath(job_dir), "launch_logs")]
    return argv


def command_preview(cfg: RunConfig, config_path: str | os.PathLike, job_dir: str | os.PathLike,
                    resume: bool = False, overrides: Iterable[str] = ()) -> list[str]:
    """The argv that runs this config as a job in `job_dir`."""
    run = [sys.executable, "-m", "trainer", "run", os.fspath(config_path), "--job-dir", os.fspath(job_dir)]
    return launch_prefix(cfg, job_dir) + run + (["--resume"] if resume else []) + list(overrides)


# ---------------------------------------------------------------- CLI

def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="run config YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override a key, e.g. optim.learning_rate=3e-4")


def main_validate(argv: list[str] | None = None) -> int:
    """`python -m trainer config validate FILE [KEY=VALUE ...]`: print OK or every problem; exit 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m trainer config validate",
                                     description="Check a run config and print every problem.")
    add_validate_arguments(parser)
    return run_validate(parser.parse_args(argv))


def run_validate(args: argparse.Namespace) -> int:
    try:
        load_config(args.file, args.overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"OK: {args.file}")
    return 0
