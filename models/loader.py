"""Loads an ERNIE 4.5 checkpoint directory (built-in or real) into paddleformers classes.

One code path for every model: `AutoConfig`/`AutoModelForCausalLM`/`AutoTokenizer` from a local
directory. The CPU adjustments are applied here, explicitly: dense ERNIE 4.5 needs
`fuse_rms_norm=False`, and MoE blocks switch to the portable dispatch of `models.moe_dispatch`
wherever the fused GPU kernels are unavailable.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from models.chat_template import ERNIE_CHAT_TEMPLATE
from models.locking import exclusive
from models.registry import ModelNotFound, resolve_model_dir

SUPPORTED_MODEL_TYPES = {"ernie4_5", "ernie4_5_moe"}
# Written beside a LoRA adapter: which base model it belongs to.
ADAPTER_INFO = "adapter_info.json"


def read_model_config(model_dir: Path) -> dict:
    config_file = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot read {config_file}: {exc}") from exc
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelNotFound(
            f"{config_file}: model_type {model_type!r} is not supported for text fine-tuning; "
            f"expected one of {', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
        )
    return config


def is_moe(model_dir: Path) -> bool:
    return read_model_config(model_dir)["model_type"] == "ernie4_5_moe"


def fused_moe_kernels_available() -> bool:
    import paddle

    return paddle.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")


def load_tokenizer(model_dir: Path):
    from paddleformers.transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = ERNIE_CHAT_TEMPLATE
    return tokenizer


@contextmanager
def rank_local_loading():
    """Make paddleformers read a checkpoint as a single process would.

    Under `paddle.distributed.launch` its loader reshards through cross-rank copies that call
    `.cuda()` unconditionally, which fails on CPU. Every data-parallel rank holds the whole model,
    so each rank reading the files by itself is correct; for the duration of the load the process
    is presented as a one-rank world.
    """
    import paddle.distributed.parallel as parallel

    if parallel.is_initialized() or int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) <= 1:
        yield
        return
    saved_env = {key: os.environ.get(key) for key in ("PADDLE_TRAINERS_NUM", "PADDLE_TRAINER_ID")}
    saved_parallel_env = parallel._global_parallel_env
    os.environ.update(PADDLE_TRAINERS_NUM="1", PADDLE_TRAINER_ID="0")
    parallel._global_parallel_env = parallel.ParallelEnv()
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is not None:
                os.environ[key] = value
        parallel._global_parallel_env = saved_parallel_env


def load_model(model_dir: Path, dtype: str = "float32", moe_dispatch: str = "auto",
               config_overrides: dict | None = None):
    """Load the causal LM in `model_dir` on the current paddle device.

    `moe_dispatch`: "auto" (portable where fused kernels are missing), "portable" or "fused".
    `config_overrides`: model-config attributes set before the model is built (a run's MoE loss
    coefficients, for instance).
    """
    from paddleformers.transformers import AutoConfig, AutoModelForCausalLM

    from models.moe_dispatch import use_portable_moe

    model_dir = Path(model_dir)
    read_model_config(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir), dtype=dtype)
    if not fused_moe_kernels_available():
        config.fuse_rms_norm = False
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    # one process at a time: paddleformers deletes and rewrites a metadata file in the directory on
    # every load, so two ranks (or a job and a chat server) loading together read a half-written one
    with rank_local_loading(), exclusive(model_dir):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), config=config, dtype=dtype)
    if config.model_type == "ernie4_5_moe":
        if moe_dispatch == "portable" or (moe_dispatch == "auto" and not fused_moe_kernels_available()):
            use_portable_moe(model)
    return model


def remove_save_leftovers(directory: Path) -> None:
    """paddleformers' savers leave a `saved_signal_<rank>` file behind; a checkpoint does not need it."""
    for leftover in Path(directory).glob("saved_signal_*"):
        leftover.unlink()


def save_model(model, directory: Path, config_json: str) -> None:
    """Save weights as safetensors with `config_json` as config.json.

    `save_pretrained` writes the runtime config (CPU adjustments included); the config of the
    checkpoint the weights came from is the one to ship.
    """
    model.save_pretrained(str(directory), safe_serialization=True)
    remove_save_leftovers(directory)
    (Path(directory) / "config.json").write_text(config_json, encoding="utf-8")


def is_adapter(path: Path) -> bool:
    return (Path(path) / ADAPTER_INFO).is_file()


def adapter_base(adapter_dir: Path) -> Path:
    info_file = Path(adapter_dir) / ADAPTER_INFO
    base = Path(json.loads(info_file.read_text(encoding="utf-8"))["base_model"])
    if not (base / "config.json").is_file():
        raise ModelNotFound(f"{info_file}: the adapter's base model {base} is missing")
    return base


def locate_checkpoint(name_or_path: str, adapter: str | None = None, workdir=None) -> tuple[Path, Path | None]:
    """(base model directory, LoRA adapter directory or None), checked without loading weights.

    `name_or_path` may itself be an adapter directory (a LoRA job's output); built-in models are
    built on first use.
    """
    path = Path(name_or_path)
    if adapter is None and path.is_dir() and is_adapter(path):
        return adapter_base(path), path.resolve()
    model_dir = resolve_model_dir(name_or_path, workdir)
    read_model_config(model_dir)
    if adapter is None:
        return model_dir, None
    adapter_dir = Path(adapter).expanduser()
    if not (adapter_dir / "lora_config.json").is_file():
        raise ModelNotFound(f"{adapter} is not a LoRA adapter directory: lora_config.json is missing")
    return model_dir, adapter_dir.resolve()


def load_checkpoint(name_or_path: str, adapter: str | None = None, workdir=None, dtype: str = "float32"):
    """(model, tokenizer) for a registry name, a checkpoint directory, or a LoRA adapter directory.

    An adapter is applied on top of its base without merging, and its own tokenizer files (which
    carry the chat template it was trained with) win over the base's.
    """
    from paddleformers.peft import LoRAModel

    model_dir, adapter_dir = locate_checkpoint(name_or_path, adapter, workdir)
    model = load_model(model_dir, dtype=dtype)
    if adapter_dir is not None:
        with exclusive(adapter_dir):  # the adapter loader rewrites the same metadata file
            model = LoRAModel.from_pretrained(model=model, lora_path=str(adapter_dir))
    model.eval()
    has_tokenizer = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file()
    return model, load_tokenizer(adapter_dir if has_tokenizer else model_dir)
