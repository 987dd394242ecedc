"""Checks of a run config against the machine it is validated on, before anything runs: the paddle
build (a GPU run needs paddle compiled with CUDA, and the message says how to get that build) and
the model directory (it exists, holds config.json of a text model the studio trains and a tokenizer;
built-in models pass, they are built on first use). trainer/config.py runs them with the rest of
validation unless a config is only being written for another machine. Never imports paddle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoints import VISION_MODEL_TYPES, ModelNotFound, adapter_base, check_checkpoint_dir, is_adapter
from models.registry import MODELS, resolve_model_dir
from plumbing.paddle_build import installed_build
from models.tiny import MODEL_CONFIGS
from trainer import parallel, quantized_base
from trainer.messages import Message
from trainer.schema import field_spec


def machine_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """A GPU run on a paddle built without CUDA. (bf16 or fp16 on device cpu is refused by the
    cross-field rules already, which ask for fp32 there.)"""
    if v.get("devices.device") != "gpu":
        return []
    build = installed_build()
    if build is None:
        return [("devices.device", Message("machine-no-paddle", key="devices.device"))]
    if build.has_cuda:
        return []
    return [("devices.device", Message("machine-cpu-build", key="devices.device", build=build.describe(),
                                       command=build.gpu_install_command()))]


def model_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """The model a run starts from, checked without loading it; also the `gpu` settings that
    depend on the model (heads a tensor-parallel degree must divide, experts to divide)."""
    key = "model.name_or_path"
    name = v.get(key, "").strip()
    if not name:
        return []  # the cross-field rules name the empty field
    spec = MODELS.get(name)
    config: dict | None = None
    directory: Path | None = None
    if spec is None or not spec.builtin:
        try:
            directory = _checkpoint_dir(name)
            config = check_checkpoint_dir(directory)
        except ModelNotFound as exc:
            return [(key, Message("model-unusable", key=key, reason=str(exc)))]
    moe = ("moe" in config.get("model_type", "")) if config else (spec.kind != "dense" if spec else None)
    vision = config.get("model_type") in VISION_MODEL_TYPES if config else spec.kind == "vl-moe"
    quant = quantized_base.model_problems(v, directory, config or MODEL_CONFIGS[spec.name])
    return vl_problems(v, name, vision) + parallel.model_problems(v, config, moe) + quant


VL_TRAINING_OPTIONS = ("vl.freeze_vision", "vl.freeze_adapter", "vl.freeze_lm", "vl.vision_lr_ratio")


def vl_problems(v: dict[str, Any], name: str, vision: bool) -> list[tuple[str, Message]]:
    """What the `vl` options and the method ask of the model: VL models train with SFT, the `vl`
    training options are theirs only, and something must be left to train."""
    if not vision:
        return [(key, Message("vl-text-model", key=key, name=name)) for key in VL_TRAINING_OPTIONS
                if v.get(key, field_spec(key).default) != field_spec(key).default]
    problems = []
    if v.get("method") == "dpo":
        problems.append(("method", Message("model-vision-dpo", key="method", name=name)))
    if all(v.get(key) is True for key in VL_TRAINING_OPTIONS[:3]):
        problems.append(("vl.freeze_lm", Message("vl-nothing-to-train", key="vl.freeze_lm")))
    if v.get("vl.min_pixels", 0) > v.get("vl.max_pixels", float("inf")):
        problems.append(("vl.min_pixels", Message("vl-pixels-order", key="vl.min_pixels",
                                                  low=v["vl.min_pixels"], high=v["vl.max_pixels"])))
    return problems


def _checkpoint_dir(name: str) -> Path:
    """The directory whose weights a run starts from: a model's own, or a LoRA adapter's base."""
    path = Path(name).expanduser()
    if path.is_dir() and is_adapter(path):
        try:
            return adapter_base(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelNotFound(f"{path} is a LoRA adapter whose adapter_info.json cannot be read ({exc})") from exc
    return resolve_model_dir(name)


def local_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """Every problem this machine has with the (field-valid) values `v`."""
    return machine_problems(v) + model_problems(v)
