"""The `gpu` section of a run: how its degrees lay the processes out, which layouts are refused and
why, and the arguments that hand them to paddleformers (its TrainingArguments and the model config
it builds tensor- and pipeline-parallel layers from). Paddle-free: validation runs in the web UI.

paddleformers' own rules are checked here before anything starts, with the key to change: the
tensor x pipeline (x sharding) degrees divide the processes, pipeline parallelism only with sharding
stage1, expert parallelism and optimizer offload only without plain data parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.messages import Message
from trainer.schema import BY_KEY

GPU_KEYS = tuple(key for key in BY_KEY if key.startswith("gpu."))
_DEFAULTS = {key: BY_KEY[key].default for key in GPU_KEYS}
_CPU_REASON = {
    "gpu.tensor_parallel_degree": "gpu-reason-model-parallel",
    "gpu.pipeline_parallel_degree": "gpu-reason-model-parallel",
    "gpu.sharding": "gpu-reason-sharding",
    "gpu.sharding_parallel_degree": "gpu-reason-sharding",
    "gpu.expert_parallel_degree": "gpu-reason-model-parallel",
    "gpu.recompute": "gpu-reason-recompute",
    "gpu.offload_optimizer": "gpu-reason-offload",
}


@dataclass(frozen=True)
class Layout:
    """How the processes of a run divide: world = data x sharding x pipeline x tensor."""

    world: int
    tensor: int
    pipeline: int
    sharding: int  # ranks one sharding group spans (1: no sharding)
    data: int  # plain data-parallel replicas


def layout(v: dict[str, Any]) -> Layout:
    """The layout of valid `devices` and `gpu` values (dotted keys), as paddleformers derives it."""
    world = v["devices.nproc"] * v["devices.nnodes"]
    tensor, pipeline = v["gpu.tensor_parallel_degree"], v["gpu.pipeline_parallel_degree"]
    sharding = 1
    if v["gpu.sharding"] != "none" and world > 1:
        degree = v["gpu.sharding_parallel_degree"]
        sharding = max(world // (tensor * pipeline), 1) if degree == -1 else degree
    return Layout(world, tensor, pipeline, sharding, max(world // (tensor * pipeline * sharding), 1))


def _changed(v: dict[str, Any]) -> list[str]:
    return [key for key in GPU_KEYS if key in v and v[key] != _DEFAULTS[key]]


def layout_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """The `gpu` section's rules, each naming the key to change; checked only on valid values."""
    needed = ("devices.device", "devices.nproc", "devices.nnodes", *GPU_KEYS)
    if not all(key in v for key in needed):
        return []
    if v["devices.device"] == "cpu":
        return [(key, Message("gpu-on-cpu", key=key, value=_show(v[key]), reason=Message(_CPU_REASON[key]),
                              default=_show(_DEFAULTS[key]))) for key in _changed(v)]
    world = v["devices.nproc"] * v["devices.nnodes"]
    tensor, pipeline = v["gpu.tensor_parallel_degree"], v["gpu.pipeline_parallel_degree"]
    degree, stage = v["gpu.sharding_parallel_degree"], v["gpu.sharding"]
    if degree == 0:
        key = "gpu.sharding_parallel_degree"
        return [(key, Message("gpu-sharding-degree-zero", key=key))]
    if world % (tensor * pipeline):
        key = "gpu.tensor_parallel_degree"
        return [(key, Message("gpu-degrees-divide", key=key, tensor=tensor, pipeline=pipeline, world=world))]
    out: list[tuple[str, Message]] = []
    if degree > 1 and stage == "none":
        key = "gpu.sharding_parallel_degree"
        out.append((key, Message("gpu-sharding-no-stage", key=key, degree=degree)))
    elif degree > 1 and world % (tensor * pipeline * degree):
        key = "gpu.sharding_parallel_degree"
        return [(key, Message("gpu-sharding-divide", key=key, tensor=tensor, pipeline=pipeline, degree=degree,
                              world=world))]
    if pipeline > 1 and stage in ("stage2", "stage3"):
        out.append(("gpu.sharding", Message("gpu-pipeline-stage", key="gpu.sharding", stage=stage)))
    replicas = layout(v).data
    experts = v["gpu.expert_parallel_degree"]
    if experts > 1:
        key = "gpu.expert_parallel_degree"
        if world % (pipeline * experts):
            out.append((key, Message("gpu-expert-divide", key=key, pipeline=pipeline, experts=experts, world=world)))
        elif replicas > 1:
            out.append((key, Message("gpu-expert-data", key=key, replicas=replicas)))
    if v["gpu.offload_optimizer"] and replicas > 1:
        key = "gpu.offload_optimizer"
        out.append((key, Message("gpu-offload-data", key=key, replicas=replicas)))
    return out


def model_problems(v: dict[str, Any], model_config: dict | None, moe: bool | None) -> list[tuple[str, Message]]:
    """Rules that need the model: expert parallelism on a model with experts, a tensor-parallel
    degree that divides the attention heads, no more pipeline stages than layers."""
    if not all(key in v for key in ("devices.device", *GPU_KEYS)) or v["devices.device"] != "gpu":
        return []
    out: list[tuple[str, Message]] = []
    if v["gpu.expert_parallel_degree"] > 1 and moe is False:
        key = "gpu.expert_parallel_degree"
        out.append((key, Message("gpu-expert-dense", key=key, model=v["model.name_or_path"])))
    if not model_config:
        return out
    tensor, pipeline = v["gpu.tensor_parallel_degree"], v["gpu.pipeline_parallel_degree"]
    heads = {name: model_config.get(name) for name in ("num_attention_heads", "num_key_value_heads")}
    uneven = {name: n for name, n in heads.items() if isinstance(n, int) and n % tensor}
    if tensor > 1 and uneven:
        key = "gpu.tensor_parallel_degree"
        out.append((key, Message("gpu-tensor-heads", key=key, tensor=tensor,
                                 heads=", ".join(f"{name} {n}" for name, n in uneven.items()))))
    layers = model_config.get("num_hidden_layers")
    if isinstance(layers, int) and pipeline > layers:
        key = "gpu.pipeline_parallel_degree"
        out.append((key, Message("gpu-pipeline-layers", key=key, pipeline=pipeline, layers=layers)))
    return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------ handing the settings to paddleformers

# Recompute every decoder layer whole: what paddleformers' ERNIE 4.5 layers implement as full
# recompute (granularity full, uniform method, one layer per unit).
RECOMPUTE = {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}


def training_arguments(gpu) -> dict[str, Any]:
    """paddleformers TrainingArguments keywords for a run's `gpu` section (a GpuSection).

    paddleformers turns all of it off in a one-process run and derives the data-parallel degree
    from the rest itself."""
    out: dict[str, Any] = {
        "tensor_model_parallel_size": gpu.tensor_parallel_degree,
        "pipeline_model_parallel_size": gpu.pipeline_parallel_degree,
        "sharding": "" if gpu.sharding == "none" else gpu.sharding,
        "sharding_parallel_size": gpu.sharding_parallel_degree,
        "tensorwise_offload_optimizer": gpu.offload_optimizer,
    }
    if gpu.expert_parallel_degree > 1:
        out.update(expert_model_parallel_size=gpu.expert_parallel_degree, use_expert_parallel=True)
    if gpu.recompute:
        out.update(RECOMPUTE)
    return out


def model_config_overrides(gpu, args=None) -> dict[str, Any]:
    """Model-config attributes for the run: full recompute, and in a model-parallel run (`args` the
    TrainingArguments already made) paddleformers' parallel attributes (degrees, this rank's place)
    copied from them, as its `LlmMetaConfig.set_llm_config` does before building a model."""
    out: dict[str, Any] = dict(RECOMPUTE) if gpu.recompute else {}
    if args is not None:
        from paddleformers.transformers.configuration_utils import LlmMetaConfig

        out.update({key: getattr(args, key) for key in LlmMetaConfig._get_defaults()
                    if getattr(args, key, None) is not None})
    return out


def uses_model_parallelism(gpu) -> bool:
    """Whether the model's layers are split over processes, so they must be built after paddle's
    hybrid-parallel groups exist (paddleformers sets those up in TrainingArguments)."""
    return gpu.tensor_parallel_degree > 1 or gpu.pipeline_parallel_degree > 1 or gpu.expert_parallel_degree > 1
