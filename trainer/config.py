"""The run config: validation, YAML load and save, `KEY=VALUE` overrides and the command that runs it.

The schema itself (the dataclasses and their fields) is trainer/schema.py; this module turns YAML
and form values into a checked `RunConfig`, with every problem named by its dotted key. It never
imports paddle or paddleformers: the web UI imports it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import sys
import typing
from typing import Any, Iterable

import yaml

from plumbing.files import atomic_write_text
from trainer.jobfiles import JobPaths
from trainer.parallel import layout_problems
from trainer import dpo_losses, quantized_base
from trainer.preflight import local_problems
from trainer.messages import Message
from trainer.schema import (
    BY_KEY, ENTRY_FIELDS, FIELDS, SECTIONS, DatasetEntry, FieldSpec, RunConfig, field_spec, iter_fields,
)

__all__ = ["ConfigError", "RunConfig", "FieldSpec", "iter_fields", "field_spec", "from_dict", "validate", "to_dict",
           "get", "set_key", "apply_overrides", "read_yaml_mapping", "load_config", "to_yaml", "dump_yaml",
           "launch_prefix", "run_argv", "command_preview"]


class ConfigError(Exception):
    """Every problem found in a config, each as (dotted key, readable message); the messages are
    `trainer.messages.Message`s, which the web UI shows in the chosen language."""

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


# ---------------------------------------------------------------- messages

def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return Message("value-mapping")
    if isinstance(value, list):
        return Message("value-list")
    return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _range_text(spec: FieldSpec) -> Message:
    lo, hi = spec.minimum, spec.maximum
    if lo is not None and hi is not None:
        left, right = "(" if spec.min_exclusive else "[", ")" if spec.max_exclusive else "]"
        return Message("range-between", interval=f"{left}{_num(lo)}, {_num(hi)}{right}")
    if lo is not None:
        return Message("range-bound", op=">" if spec.min_exclusive else ">=", limit=_num(lo))
    return Message("range-bound", op="<" if spec.max_exclusive else "<=", limit=_num(hi))


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


def _unknown(key: str, valid: Iterable[str]) -> Message:
    guess = suggest_key(key, valid)
    if guess:
        return Message("config-unknown-key-guess", key=key, guess=guess)
    return Message("config-unknown-key", key=key)


# ---------------------------------------------------------------- validation

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SENTINEL = object()


def _coerce(spec: FieldSpec, key: str, value: Any) -> tuple[Any, Message | None]:
    """Check one value against its field; return (clean value, None) or (None, message)."""
    kind, raw = spec.type, value
    if spec.normalize is not None:
        value = spec.normalize(value)
    if kind == "bool":
        if not isinstance(value, bool):
            return None, Message("config-expected-bool", key=key, value=_show(value))
        return value, None
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return None, Message("config-expected-int", key=key, value=_show(value))
    elif kind == "float":
        # PyYAML reads 1e-4 (no dot) as a string, so numeric text is accepted
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, Message("config-expected-number", key=key, value=_show(value))
        value = float(value)
        if not math.isfinite(value):
            return None, Message("config-expected-finite", key=key, value=_show(value))
    elif kind == "str":
        if not isinstance(value, str):
            return None, Message("config-expected-string", key=key, value=_show(value))
    elif kind == "list[str]":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, Message("config-expected-strings", key=key, value=_show(value))
    if spec.choices:
        if isinstance(value, str):
            value = next((c for c in spec.choices if c.lower() == value.lower()), value)
        if value not in spec.choices:
            return None, Message("config-expected-choice", key=key, choices=", ".join(map(str, spec.choices)),
                                 value=_show(value))
    if kind in ("int", "float") and not _in_range(spec, value):
        return None, Message("config-out-of-range", key=key, range=_range_text(spec),
                             value=_show(value if isinstance(raw, str) else raw))
    return value, None


def _check_datasets(key: str, value: Any, problems: list) -> list[DatasetEntry] | None:
    if value is None:
        value = []
    if not isinstance(value, list):
        problems.append((key, Message("config-datasets-not-list", key=key, shape="{path, format, probability}",
                                      value=_show(value))))
        return None
    entries, ok = [], True
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            item = {"path": item}
        elif isinstance(item, DatasetEntry):
            item = dataclasses.asdict(item)
        if not isinstance(item, dict):
            problems.append((where, Message("config-dataset-not-mapping", key=where, value=_show(item))))
            ok = False
            continue
        clean = {}
        for name, raw in item.items():
            sub = f"{where}.{name}"
            if name not in ENTRY_FIELDS:
                problems.append((sub, _unknown(sub, [f"{where}.{n}" for n in ENTRY_FIELDS])))
                ok = False
                continue
            checked, message = _coerce(ENTRY_FIELDS[name], sub, raw)
            if message:
                problems.append((sub, message))
                ok = False
            else:
                clean[name] = checked
        if "path" in clean and not clean["path"].strip():
            problems.append((f"{where}.path", Message("config-path-empty", key=f"{where}.path")))
            ok = False
        elif "path" not in clean and "path" not in item:
            problems.append((f"{where}.path", Message("config-path-missing", key=f"{where}.path")))
            ok = False
        if ok:
            entries.append(DatasetEntry(**clean))
    return entries if ok else None


def _flatten(d: dict, prefix: str, out: dict, problems: list) -> None:
    """Dotted key -> value for every leaf given, accepting nested mappings and dotted keys alike."""
    for raw_key, value in d.items():
        if not isinstance(raw_key, str):
            problems.append((str(raw_key), Message("config-key-not-string", key=f"{prefix}{raw_key}")))
            continue
        key = prefix + raw_key
        if key in BY_KEY:
            if key in out:
                problems.append((key, Message("config-given-twice", key=key)))
                continue
            out[key] = value
        elif key in SECTIONS:
            if isinstance(value, dict):
                _flatten(value, key + ".", out, problems)
            elif value is not None:
                problems.append((key, Message("config-section-not-mapping", key=key, value=_show(value))))
        else:
            problems.append((key, _unknown(key, list(BY_KEY) + SECTIONS)))


def from_dict(d: dict | None, *, local: bool = True) -> RunConfig:
    """Validate a (nested or dotted-key) mapping and build the RunConfig; raise ConfigError with every problem.

    `local=False` leaves out what depends on this machine (its paddle build, the model directory:
    trainer/preflight.py), for a config written here to run elsewhere or read only for its values."""
    problems: list[tuple[str, str]] = []
    given: dict[str, Any] = {}
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError([("", Message("config-top-not-mapping", value=_show(d)))])
    _flatten(d, "", given, problems)

    values: dict[str, Any] = {}
    for spec in FIELDS:
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
    if local:
        problems += local_problems(values)
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
        out.append(("model.name_or_path", Message("config-model-empty", key="model.name_or_path",
                                                  example="ernie-4.5-tiny-moe")))
    if have("data.train") and not v["data.train"]:
        out.append(("data.train", Message("config-no-train-data", key="data.train",
                                          example="data.train=[{path: train.jsonl}]")))
    # only DPO cuts prompts to max_prompt_len; SFT rows are fitted to max_seq_len alone
    if have("method", "data.max_seq_len", "data.max_prompt_len") and v["method"] == "dpo" \
            and v["data.max_prompt_len"] >= v["data.max_seq_len"]:
        out.append(("data.max_prompt_len", Message("config-prompt-len", key="data.max_prompt_len",
                                                   other="data.max_seq_len", limit=v["data.max_seq_len"],
                                                   value=v["data.max_prompt_len"])))
    if have("optim.max_steps") and v["optim.max_steps"] != -1 and v["optim.max_steps"] < 1:
        out.append(("optim.max_steps", Message("config-max-steps", key="optim.max_steps", value=v["optim.max_steps"])))
    if have("precision", "devices.device") and v["devices.device"] == "cpu" and v["precision"] != "fp32":
        out.append(("precision", Message("config-precision-cpu", key="precision", precision=v["precision"])))
    for kind in ("train", "eval"):
        key = f"data.{kind}"
        for i, entry in enumerate(v.get(key) or []):
            if v.get("method") == "sft" and entry.format.endswith("_dpo"):
                out.append((f"{key}[{i}].format", Message("config-format-needs-dpo", key=f"{key}[{i}].format",
                                                          format=entry.format)))
    if have("logging.eval_steps", "data.eval", "data.eval_split") and v["logging.eval_steps"] > 0 \
            and not v["data.eval"] and v["data.eval_split"] == 0:
        out.append(("logging.eval_steps", Message("config-eval-needs-data", key="logging.eval_steps")))
    if have("eval.after_training", "data.eval", "data.eval_split") and v["eval.after_training"] \
            and not v["data.eval"] and v["data.eval_split"] == 0:
        out.append(("eval.after_training", Message("config-eval-needs-data", key="eval.after_training")))
    if have("devices.device", "devices.gpu_ids", "devices.nproc") and v["devices.device"] == "gpu":
        ids = v["devices.gpu_ids"]
        parts = ids.split(",") if ids else []
        if not parts:
            out.append(("devices.gpu_ids", Message("config-gpu-ids-required", key="devices.gpu_ids")))
        elif not all(p.isdigit() for p in parts):
            out.append(("devices.gpu_ids", Message("config-gpu-ids-not-ints", key="devices.gpu_ids", value=repr(ids))))
        elif len(set(parts)) != len(parts):
            out.append(("devices.gpu_ids", Message("config-gpu-ids-twice", key="devices.gpu_ids", value=repr(ids))))
        elif len(parts) != v["devices.nproc"]:
            out.append(("devices.nproc", Message("config-nproc-gpus", key="devices.nproc", nproc=v["devices.nproc"],
                                                 gpus=len(parts))))
    if have("devices.nnodes", "devices.master") and v["devices.nnodes"] > 1 \
            and not re.fullmatch(r"[^\s:]+:\d+", v["devices.master"]):
        out.append(("devices.master", Message("config-master-required", key="devices.master",
                                              value=repr(v["devices.master"]))))
    for key in ("moe.aux_loss_coef", "moe.z_loss_coef", "moe.orthogonal_loss_coef"):
        if have(key) and v[key] < 0 and v[key] != -1:
            out.append((key, Message("config-moe-coef", key=key, value=_num(v[key]))))
    if have("moe.bias_update_rate", "finetuning.type") and v["moe.bias_update_rate"] > 0 \
            and v["finetuning.type"] == "lora":
        out.append(("moe.bias_update_rate", Message("config-bias-lora", key="moe.bias_update_rate")))
    if have("moe.token_balanced_loss", "method") and v["moe.token_balanced_loss"] and v["method"] != "sft":
        out.append(("moe.token_balanced_loss", Message("config-token-balanced", key="moe.token_balanced_loss",
                                                       method=v["method"])))
    if have("moe.freeze_router", "finetuning.type") and v["moe.freeze_router"] and v["finetuning.type"] == "lora":
        out.append(("moe.freeze_router", Message("config-freeze-router-lora", key="moe.freeze_router")))
    out += layout_problems(v)
    out += quantized_base.config_problems(v)
    out += dpo_losses.config_problems(v)
    if have("finetuning.lora.target_modules"):
        modules = v["finetuning.lora.target_modules"]
        if not modules:
            out.append(("finetuning.lora.target_modules", Message("config-target-modules-empty",
                                                                  key="finetuning.lora.target_modules",
                                                                  example="all-linear")))
        for pattern in modules:
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append(("finetuning.lora.target_modules",
                            Message("config-target-pattern", key="finetuning.lora.target_modules",
                                    pattern=repr(pattern), error=str(exc))))
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
    if key not in BY_KEY:
        raise KeyError(_unknown(key, BY_KEY))
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
            problems.append((item, Message("config-override-form", item=repr(item),
                                           example="optim.learning_rate=3e-4")))
            continue
        if key not in BY_KEY:
            problems.append((key, _unknown(key, BY_KEY)))
            continue
        if not text.strip():
            value: Any = ""
        else:
            try:
                value = _load_yaml(text)
            except (yaml.YAMLError, RecursionError) as exc:
                problems.append((key, Message("config-override-yaml", key=key, text=repr(text),
                                              reason=_yaml_reason(exc))))
                continue
            # output.dir=2024 or output.dir=yes mean the text itself, not a number or a boolean;
            # a field with its own normaliser reads the YAML value (GPU ids 0 or [0, 1])
            spec = BY_KEY[key]
            if spec.type == "str" and spec.normalize is None and not isinstance(value, str):
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
            raise yaml.composer.ComposerError(None, None, Message("yaml-alias", anchor=event.anchor),
                                              event.start_mark)
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
                    None, None, Message("yaml-key-twice", key=repr(key), line=first + 1), key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)


def _yaml_reason(exc: yaml.YAMLError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return Message("read-nested")
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return Message("yaml-at", line=mark.line + 1, column=mark.column + 1, problem=problem)


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file's top-level mapping; ConfigError naming the file when it is missing, broken or not a mapping."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError([("", Message("config-no-such-file"))], source=name) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError([("", Message("config-cannot-read", error=f"{exc.__class__.__name__}: {exc}"))],
                          source=name) from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("", Message("config-yaml-syntax", reason=_yaml_reason(exc)))], source=name) from None
    except RecursionError:
        raise ConfigError([("", Message("config-yaml-too-deep"))], source=name) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", Message("config-top-not-mapping", value=_show(data)))], source=name)
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


def dump_yaml(cfg: RunConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, to_yaml(cfg))


# ---------------------------------------------------------------- the command that runs a config

def launch_prefix(cfg: RunConfig, job_dir: str | os.PathLike, node_rank: int = 0) -> list[str]:
    """`python -m paddle.distributed.launch ...` when the run has more than one process, else [].
    `node_rank` is this machine's place in a multi-node job (0: the first node, the studio's)."""
    dev = cfg.devices
    if dev.nproc * dev.nnodes <= 1:
        return []
    argv = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(dev.nproc)]
    if dev.device == "gpu":
        argv += ["--devices", dev.gpu_ids]
    if dev.nnodes > 1:
        # Explicit node ranks: left to itself the launcher makes rank 0 whichever node binds the
        # master port first, and a node with an explicit rank cannot join nodes without one.
        argv += ["--nnodes", str(dev.nnodes), "--master", dev.master, "--rank", str(node_rank)]
    # per-rank logs go to the job, not to ./log in whatever directory the launcher started in
    argv += ["--log_dir", os.fspath(JobPaths(job_dir).node_launch_logs(node_rank))]
    return argv


def run_argv(config_path: str | os.PathLike, job_dir: str | os.PathLike, resume: bool = False,
             overrides: Iterable[str] = ()) -> list[str]:
    """`python -m trainer run CONFIG --job-dir JOB [--resume] [KEY=VALUE ...]`."""
    run = [sys.executable, "-m", "trainer", "run", os.fspath(config_path), "--job-dir", os.fspath(job_dir)]
    return run + (["--resume"] if resume else []) + list(overrides)


def command_preview(cfg: RunConfig, config_path: str | os.PathLike, job_dir: str | os.PathLike,
                    resume: bool = False, overrides: Iterable[str] = (), node_rank: int = 0) -> list[str]:
    """The argv that runs this config as a job in `job_dir` (on node `node_rank` of a multi-node job)."""
    return launch_prefix(cfg, job_dir, node_rank) + run_argv(config_path, job_dir, resume, overrides)
