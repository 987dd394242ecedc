"""Will a run fit? A run config becomes `models.memory`'s estimate per device (the model's config.json,
the LoRA targets matched as the trainer matches them, what full fine-tuning leaves frozen, the GPU
layout), set beside the memory the machine has: its RAM for a CPU run (all of a node's processes
share it), each GPU's memory from nvidia-smi for a GPU run (unknown without nvidia-smi). No paddle:
the Train tab calls this on every change of the form."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil

from models.checkpoints import adapter_base, is_adapter, read_model_config
from models.memory import Estimate, Training, architecture, estimate, inventory
from models.registry import MODELS, resolve_model_dir
from trainer.config import RunConfig
from trainer.dpo_losses import uses_reference
from trainer.parallel import layout

SHARDING_STAGES = {"none": 0, "stage1": 1, "stage2": 2, "stage3": 3}
# parameters full fine-tuning leaves fixed with moe.freeze_router (trainer.train.freeze_moe_parts)
ROUTER = r".*\.mlp\.gate\..*"


def model_config(name_or_path: str, workdir: Path | None = None) -> dict:
    """config.json of the model a run starts from, without building or loading anything: a built-in
    model's own, a checkpoint directory's, or a LoRA adapter's base's. ModelNotFound says why not."""
    from models.tiny import MODEL_CONFIGS

    spec = MODELS.get(name_or_path)
    if spec is not None and spec.builtin:
        return MODEL_CONFIGS[spec.name]
    path = Path(name_or_path).expanduser()
    if path.is_dir() and is_adapter(path):
        return read_model_config(adapter_base(path))
    return read_model_config(resolve_model_dir(name_or_path, workdir))


def training(cfg: RunConfig, config: dict) -> Training:
    """What of `cfg` decides the memory of training the model of `config`."""
    from trainer.train import frozen_experts, target_patterns

    lora = cfg.finetuning.type == "lora"
    adapted: tuple[str, ...] = ()
    frozen: list[str] = []
    moe = architecture(config).moe
    if lora:
        names = [linear.name for linear in inventory(architecture(config))[1]]
        patterns = target_patterns(names, cfg.finetuning.lora.target_modules, frozen_experts(cfg) if moe else [])
        adapted = tuple(name for name in names if any(re.fullmatch(p, name) for p in patterns))
    elif moe:
        frozen = frozen_experts(cfg) + ([ROUTER] if cfg.moe.freeze_router else [])
    gpu = cfg.devices.device == "gpu"
    grid = layout({"devices.nproc": cfg.devices.nproc, "devices.nnodes": cfg.devices.nnodes,
                   "gpu.tensor_parallel_degree": cfg.gpu.tensor_parallel_degree,
                   "gpu.pipeline_parallel_degree": cfg.gpu.pipeline_parallel_degree,
                   "gpu.sharding": cfg.gpu.sharding, "gpu.sharding_parallel_degree": cfg.gpu.sharding_parallel_degree})
    return Training(
        batch_size=cfg.optim.per_device_batch_size, seq_len=cfg.data.max_seq_len, precision=cfg.precision,
        device=cfg.devices.device, lora_rank=cfg.finetuning.lora.rank if lora else 0, adapted=adapted,
        frozen=tuple(frozen), reference_model=cfg.method == "dpo" and not lora and uses_reference(cfg.dpo),
        dense_mask=cfg.method == "dpo",
        gradient_accumulation=cfg.optim.gradient_accumulation_steps,
        tensor_parallel=grid.tensor if gpu else 1, pipeline_parallel=grid.pipeline if gpu else 1,
        expert_parallel=cfg.gpu.expert_parallel_degree if gpu else 1,
        sharding_stage=SHARDING_STAGES[cfg.gpu.sharding] if gpu and grid.sharding > 1 else 0,
        sharding_degree=grid.sharding if gpu else 1,
        recompute=gpu and cfg.gpu.recompute, offload_optimizer=gpu and cfg.gpu.offload_optimizer,
        base_quant=cfg.finetuning.base_quant if lora else "none",
        base_quant_group_size=cfg.finetuning.base_quant_group_size)


def estimate_run(cfg: RunConfig, workdir: Path | None = None) -> Estimate:
    """The memory one process of `cfg` needs (ModelNotFound when the model's config is not here)."""
    config = model_config(cfg.model.name_or_path, workdir)
    return estimate(config, training(cfg, config))


@dataclass(frozen=True)
class Fit:
    """An estimate beside the machine: `need` is what the memory in question must hold (on CPU all
    of the node's processes together), `have` that memory (None when unknown), `where` what it is."""

    estimate: Estimate
    need: float
    have: int | None
    where: str  # "ram" or "gpu"
    processes: int

    @property
    def fits(self) -> bool | None:
        return None if self.have is None else self.need <= self.have


def check_fit(cfg: RunConfig, workdir: Path | None = None) -> Fit:
    found = estimate_run(cfg, workdir)
    if cfg.devices.device == "cpu":
        return Fit(found, found.peak * cfg.devices.nproc, psutil.virtual_memory().total, "ram", cfg.devices.nproc)
    ids = [int(i) for i in cfg.devices.gpu_ids.split(",") if i.strip().isdigit()]
    totals = gpu_memory()
    sizes = [totals[i] for i in ids if i in totals] if totals else []
    have = min(sizes) if sizes and len(sizes) == len(ids) else None
    return Fit(found, found.peak, have, "gpu", cfg.devices.nproc)


@cache
def gpu_memory() -> dict[int, int]:
    """Each GPU's memory in bytes by index, from nvidia-smi; empty without it (or without a GPU)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run([smi, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    sizes = {}
    for line in out.splitlines():
        index, _, mib = line.partition(",")
        if index.strip().isdigit() and mib.strip().isdigit():
            sizes[int(index)] = int(mib) * 2**20
    return sizes
