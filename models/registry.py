"""The ERNIE 4.5 model family: architecture facts, presets, and how a model name becomes a directory.

This module never imports paddle: the web UI reads it to list models and presets. Built-in models
(the tiny demo models) are built on first use by `models.tiny`; real checkpoints are local
directories, or hub repo ids downloaded on request (`models.hub`; never while a run starts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from models.checkpoints import VISION_MODEL_TYPES, ModelNotFound, adapter_info, is_adapter
from models.hub import downloaded_dir, is_repo_id, require_downloaded


@dataclass(frozen=True)
class ModelSpec:
    """What a user needs to know about one ERNIE 4.5 model before choosing it."""

    name: str
    kind: str  # dense | moe | vl-moe
    total_params: str
    active_params: str
    layers: int
    context_length: int
    experts: int = 0  # routed text experts per MoE layer (0 for dense)
    experts_per_token: int = 0
    shared_experts: int = 0
    vision_experts: int = 0
    chat_template: str = "ernie"
    thinking: bool = False
    builtin: bool = False  # built locally by models.tiny, works with nothing downloaded
    description: str = ""
    presets: dict = field(default_factory=dict)  # method name -> {dotted config key: value}


_SMALL_PRESETS = {
    "sft-lora": {"method": "sft", "finetuning.type": "lora", "finetuning.lora.rank": 16,
                 "finetuning.lora.alpha": 32, "optim.learning_rate": 2e-3, "optim.num_train_epochs": 30,
                 "optim.per_device_batch_size": 8},
    "sft-full": {"method": "sft", "finetuning.type": "full", "optim.learning_rate": 3e-3,
                 "optim.num_train_epochs": 20, "optim.per_device_batch_size": 8},
    "dpo-lora": {"method": "dpo", "finetuning.type": "lora", "finetuning.lora.rank": 16,
                 "finetuning.lora.alpha": 32, "dpo.beta": 0.1, "optim.learning_rate": 1e-3,
                 "optim.num_train_epochs": 20, "optim.per_device_batch_size": 8},
    "dpo-full": {"method": "dpo", "finetuning.type": "full", "dpo.beta": 0.1, "optim.learning_rate": 2e-4,
                 "optim.num_train_epochs": 10, "optim.per_device_batch_size": 8},
}

# The tiny VL model's vision transformer and adapter are random: trained from there they learn far
# more slowly than the language model learns to read their features, so its presets keep them fixed.
# Its epochs and rates are the shapes example's (docs/vl.md: 600 conversations).
_TINY_VL_PRESETS = {
    "sft-lora": {**_SMALL_PRESETS["sft-lora"], "optim.num_train_epochs": 12, "vl.freeze_vision": True,
                 "vl.freeze_adapter": True},
    "sft-full": {**_SMALL_PRESETS["sft-full"], "optim.learning_rate": 2e-3, "optim.num_train_epochs": 6,
                 "vl.freeze_vision": True, "vl.freeze_adapter": True},
}

# ERNIEKit's starting points for the real models; DPO learns far more slowly than SFT. A GPU run
# needs its GPU ids (the config refuses device gpu without them): one process on GPU 0 is the
# smallest valid start, to be widened for the models that need several GPUs.
_REAL_COMMON = {"optim.num_train_epochs": 1, "optim.warmup_steps": 20, "optim.per_device_batch_size": 1,
                "optim.gradient_accumulation_steps": 8, "precision": "bf16", "devices.device": "gpu",
                "devices.gpu_ids": "0"}
_REAL_PRESETS = {
    "sft-lora": {"method": "sft", "finetuning.type": "lora", "finetuning.lora.rank": 32,
                 "finetuning.lora.alpha": 64, "optim.learning_rate": 3e-4, **_REAL_COMMON},
    "sft-full": {"method": "sft", "finetuning.type": "full", "optim.learning_rate": 1e-5, **_REAL_COMMON},
    "dpo-lora": {"method": "dpo", "finetuning.type": "lora", "finetuning.lora.rank": 32,
                 "finetuning.lora.alpha": 64, "dpo.beta": 0.1, "optim.learning_rate": 1e-5, **_REAL_COMMON},
    "dpo-full": {"method": "dpo", "finetuning.type": "full", "dpo.beta": 0.1, "optim.learning_rate": 1e-6,
                 **_REAL_COMMON},
}



def _moe_presets(lora_experts: str, scale: dict) -> dict:
    """The real MoE models' presets: full fine-tuning keeps the router fixed (a small SFT or DPO set
    would otherwise re-route the experts pre-training balanced) while the correction biases keep the
    load even (ERNIE 4.5's own rate); LoRA puts adapters on `lora_experts` ("all", or "shared" where
    adapters on every routed expert would cost more memory than the attention ones)."""
    full = {"moe.freeze_router": True, "moe.bias_update_rate": 1e-3}
    lora = {"moe.train_experts": lora_experts}
    return {name: {**preset, **(full if preset["finetuning.type"] == "full" else lora)}
            for name, preset in _on_gpus(_REAL_PRESETS, scale).items()}


GPUS_PER_NODE = 8


def _gpu_scale(tensor: int, pipeline: int, sharding_degree: int, recompute: bool, offload: bool,
               processes: int) -> dict:
    """A preset's `gpu` section and its devices: one process per GPU, nodes of 8 GPUs beyond 8 (a
    multi-node preset leaves devices.master, the first node's address, to the user)."""
    nproc = min(processes, GPUS_PER_NODE)
    devices = {"devices.nproc": nproc, "devices.gpu_ids": ",".join(str(i) for i in range(nproc))}
    if processes > GPUS_PER_NODE:
        devices["devices.nnodes"] = processes // GPUS_PER_NODE
    return {"gpu.tensor_parallel_degree": tensor, "gpu.pipeline_parallel_degree": pipeline, "gpu.sharding": "stage1",
            "gpu.sharding_parallel_degree": sharding_degree, "gpu.recompute": recompute,
            "gpu.offload_optimizer": offload, **devices}


def _on_gpus(presets: dict, scale: dict) -> dict:
    return {name: {**preset, **_gpu_scale(*scale[name])} for name, preset in presets.items()}


# The GPU-scale settings of ERNIEKit's example configs (PaddlePaddle/ERNIE, examples/configs/<model>/
# {sft,dpo}/run_{sft,sft_lora,dpo,dpo_lora}_8k.yaml), per method: (tensor, pipeline, sharding degree
# (-1: the rest), recompute, optimizer offload, GPUs). ERNIEKit shards stage1 throughout; the GPUs
# are its documented minimum resources (docs/erniekit.md) where it lists them, else what the degrees
# need. The Thinking model has no DPO examples; it takes the 21B-A3B's.
_SCALE_0P3B = {"sft-full": (1, 1, -1, False, True, 1), "sft-lora": (1, 1, -1, False, True, 1),
               "dpo-full": (1, 1, 1, False, True, 1), "dpo-lora": (1, 1, 1, False, True, 1)}
_SCALE_21B = {"sft-full": (2, 1, -1, True, True, 8), "sft-lora": (1, 1, -1, True, True, 1),
              "dpo-full": (4, 2, 1, False, True, 8), "dpo-lora": (1, 1, 1, True, True, 1)}
_SCALE_21B_THINKING = {**_SCALE_21B, "sft-full": (4, 2, 1, True, True, 8), "sft-lora": (1, 1, 1, True, True, 1)}
_SCALE_300B = {"sft-full": (8, 5, -1, True, True, 40), "sft-lora": (8, 2, -1, True, True, 16),
               "dpo-full": (8, 14, 1, True, True, 112), "dpo-lora": (8, 2, 1, True, False, 16)}
# The VL models take the GPU scale of their text counterparts (VL-28B-A3B of 21B-A3B, VL-424B-A47B
# of 300B-A47B; ERNIEKit's own VL example configs were not at hand to check) and keep the vision
# transformer frozen, as is usual for VL SFT. They train with SFT only.
_SCALE_VL = {name: _SCALE_21B[name] for name in ("sft-full", "sft-lora")}
_SCALE_VL_424B = {name: _SCALE_300B[name] for name in ("sft-full", "sft-lora")}


# ERNIEKit trains 300B-A47B LoRA on a WINT8MIX base (docs/quant.md): int4 routed experts, int8 for
# the rest, about a third of bf16's weight memory. A quantized base keeps every layer whole on its GPU
# (tensor parallelism 1), so the experts are spread by expert parallelism instead, on the same GPUs.
_QUANTIZED_BASE = {"finetuning.base_quant": "wint4/8", "gpu.tensor_parallel_degree": 1,
                   "gpu.expert_parallel_degree": 8}


def _quantized_sft_lora(presets: dict) -> dict:
    return {**presets, "sft-lora": {**presets["sft-lora"], **_QUANTIZED_BASE}}


def _vl_presets(lora_experts: str, scale: dict) -> dict:
    sft = {name: preset for name, preset in _REAL_PRESETS.items() if name in scale}
    full = {"moe.freeze_router": True, "moe.bias_update_rate": 1e-3, "vl.freeze_vision": True}
    lora = {"moe.train_experts": lora_experts, "vl.freeze_vision": True}
    return {name: {**preset, **(full if preset["finetuning.type"] == "full" else lora)}
            for name, preset in _on_gpus(sft, scale).items()}


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="ernie-4.5-tiny-moe", kind="moe", total_params="1.2M", active_params="0.75M", layers=4,
            context_length=2048, experts=8, experts_per_token=2, shared_experts=1, builtin=True,
            description="Embedded demo: the ERNIE 4.5 MoE architecture at tiny size (first layer dense, "
                        "then 8 experts top-2 plus a shared expert). Trains on CPU in seconds.",
            presets=_SMALL_PRESETS,
        ),
        ModelSpec(
            name="ernie-4.5-tiny-dense", kind="dense", total_params="1.5M", active_params="1.5M", layers=4,
            context_length=2048, builtin=True,
            description="Embedded demo: the dense ERNIE-4.5-0.3B architecture at tiny size.",
            presets=_SMALL_PRESETS,
        ),
        ModelSpec(
            name="ERNIE-4.5-0.3B", kind="dense", total_params="0.36B", active_params="0.36B", layers=18,
            context_length=131072, description="Dense 0.3B model; fine-tunes on one consumer GPU.",
            presets=_on_gpus(_REAL_PRESETS, _SCALE_0P3B),
        ),
        ModelSpec(
            name="ERNIE-4.5-21B-A3B", kind="moe", total_params="21B", active_params="3B", layers=28,
            context_length=131072, experts=64, experts_per_token=6, shared_experts=2,
            description="Text MoE, 21B total / 3B active parameters. LoRA can hold the frozen base in wint4/8 "
                        "(finetuning.base_quant) to fit on a smaller GPU.",
            presets=_moe_presets("all", _SCALE_21B),
        ),
        ModelSpec(
            name="ERNIE-4.5-21B-A3B-Thinking", kind="moe", total_params="21B", active_params="3B", layers=28,
            context_length=131072, experts=64, experts_per_token=6, shared_experts=2, thinking=True,
            description="21B-A3B post-trained for reasoning (<think> ... </think>).",
            presets=_moe_presets("all", _SCALE_21B_THINKING),
        ),
        ModelSpec(
            name="ERNIE-4.5-300B-A47B", kind="moe", total_params="300B", active_params="47B", layers=54,
            context_length=131072, experts=64, experts_per_token=8,
            description="Flagship text MoE, 300B total / 47B active; needs a multi-GPU node. Its SFT-LoRA preset "
                        "holds the frozen base in wint4/8 as ERNIEKit's WINT8MIX LoRA does (int4 experts, int8 "
                        "the rest: about a third of bf16's weight memory), with expert instead of tensor "
                        "parallelism, since a quantized base keeps its layers whole.",
            presets=_quantized_sft_lora(_moe_presets("shared", _SCALE_300B)),
        ),
        *[ModelSpec(
            name=f"ERNIE-4.5-VL-28B-A3B{suffix}", kind="vl-moe", total_params="28B", active_params="3B",
            layers=28, context_length=131072, experts=64, experts_per_token=6, shared_experts=2,
            vision_experts=64, chat_template="ernie_vl", thinking=thinking,
            description=f"Vision-language MoE{what}: a vision transformer and an adapter feed image tokens to "
                        "text and vision experts routed apart.",
            presets=_vl_presets("all", _SCALE_VL),
        ) for suffix, thinking, what in (("", True, " (post-trained)"), ("-Base", False, ", base"),
                                          ("-Thinking", True, " post-trained for reasoning"))],
        *[ModelSpec(
            name=f"ERNIE-4.5-VL-424B-A47B{suffix}", kind="vl-moe", total_params="424B", active_params="47B",
            layers=54, context_length=131072, experts=64, experts_per_token=8, vision_experts=64,
            chat_template="ernie_vl", thinking=thinking,
            description=f"Largest vision-language MoE{what}; needs several multi-GPU nodes.",
            presets=_vl_presets("shared", _SCALE_VL_424B),
        ) for suffix, thinking, what in (("", True, " (post-trained)"), ("-Base", False, ", base"))],
        ModelSpec(
            name="ernie-4.5-tiny-vl", kind="vl-moe", total_params="1.7M", active_params="1.3M", layers=4,
            context_length=2048, experts=4, experts_per_token=2, shared_experts=1, vision_experts=4,
            builtin=True,
            description="Embedded demo: the ERNIE 4.5 VL architecture at tiny size (a 2-block vision transformer, "
                        "the adapter, then MoE layers with 4 text and 4 vision experts routed apart, plus a shared "
                        "expert). Trains on CPU in minutes.",
            presets=_TINY_VL_PRESETS,
        ),
    ]
}

DEFAULT_MODEL = "ernie-4.5-tiny-moe"


def default_workdir() -> Path:
    return Path(os.environ.get("ERNIE_STUDIO_HOME", "workspace")).resolve()


def _kind(name_or_path: str) -> str | None:
    """'dense', 'moe' or 'vl-moe' of a model name, checkpoint directory or LoRA adapter (through
    its base); None when it cannot be told."""
    name_or_path = (name_or_path or "").strip()
    spec = MODELS.get(name_or_path)
    if spec is not None:
        return spec.kind
    path = Path(name_or_path).expanduser()
    if is_repo_id(name_or_path):
        path = downloaded_dir(default_workdir(), name_or_path) or path
    try:
        if is_adapter(path):
            info = adapter_info(path)
            return _kind(info.get("base_model_name") or info.get("base_model", ""))
        if (path / "config.json").is_file():
            model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type", "")
            return "vl-moe" if model_type in VISION_MODEL_TYPES else "moe" if "moe" in model_type else "dense"
    except (OSError, ValueError, AttributeError):
        pass
    return None


def has_experts(name_or_path: str) -> bool:
    """Whether a model is an MoE model; True when it cannot be told (an MoE option is then checked
    at training time)."""
    return _kind(name_or_path) != "dense"


def is_vision(name_or_path: str) -> bool:
    """Whether a model is a vision-language model; False when it cannot be told (a `vl` option is
    then checked at training time)."""
    return _kind(name_or_path) == "vl-moe"


def resolve_model_dir(name_or_path: str, workdir: Path | None = None) -> Path:
    """Return the local checkpoint directory for a registry name, a downloaded hub repo id or a path,
    building built-ins on demand."""
    workdir = Path(workdir) if workdir else default_workdir()
    spec = MODELS.get(name_or_path)
    if spec is not None and spec.builtin:
        from models.tiny import ensure_built

        return ensure_built(spec.name, workdir / "models")
    if spec is not None:
        local = workdir / "models" / spec.name
        if (local / "config.json").is_file():
            return local
        raise ModelNotFound(
            f"{spec.name} is not embedded and nothing is downloaded at run time: put its checkpoint "
            f"(config.json, *.safetensors, tokenizer files) in {local} or set model.name_or_path "
            f"to the directory that holds it, or download it from a hub (`python -m trainer model download "
            f"OWNER/NAME`, e.g. baidu/ERNIE-4.5-0.3B-Paddle) and give that repo id as the model"
        )
    if is_repo_id(name_or_path):
        return require_downloaded(name_or_path.strip(), workdir)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(MODELS)
        raise ModelNotFound(
            f"model directory not found: {name_or_path} (neither a local directory nor a known model; "
            f"known models: {known})"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelNotFound(f"{name_or_path} is not a checkpoint directory: config.json is missing")
    return path.resolve()
