"""Checks of a run config against the machine it is validated on, before anything runs: the paddle
build (a GPU run needs paddle compiled with CUDA, and the message says how to get that build) and
the model directory (it exists, holds config.json of a text model the studio trains and a tokenizer;
built-in models pass, they are built on first use). trainer/config.py runs them with the rest of
validation unless a config is only being written for another machine. Never imports paddle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoints import ModelNotFound, adapter_base, check_checkpoint_dir, is_adapter
from models.registry import MODELS, resolve_model_dir
from plumbing.paddle_build import installed_build
from trainer import parallel
from trainer.messages import Message


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
    if spec is not None and spec.kind == "vl-moe":
        return [(key, Message("model-vision", key=key, name=name))]
    config: dict | None = None
    if spec is None or not spec.builtin:
        try:
            config = check_checkpoint_dir(_checkpoint_dir(name))
        except ModelNotFound as exc:
            return [(key, Message("model-unusable", key=key, reason=str(exc)))]
    moe = ("moe" in config.get("model_type", "")) if config else (spec.kind != "dense" if spec else None)
    return parallel.model_problems(v, config, moe)


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
