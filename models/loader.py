"""Loads an ERNIE 4.5 checkpoint directory (built-in or real) into paddleformers classes.

One code path for every model: `AutoConfig`/`AutoModelForCausalLM`/`AutoTokenizer` from a local
directory. The CPU adjustments are applied here, explicitly: dense ERNIE 4.5 needs
`fuse_rms_norm=False`, and MoE blocks switch to the portable dispatch of `models.moe_dispatch`
wherever the fused GPU kernels are unavailable. A multi-token-prediction layer is built as the
checkpoint holds it and carried through, frozen and never run (`models.mtp`). A checkpoint the
studio quantized is built with its integer weights by `models.quant_io`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from models.chat_template import ERNIE_CHAT_TEMPLATE
from models.checkpoints import (VISION_MODEL_TYPES, ModelNotFound, adapter_base, is_adapter, model_class,
                                read_model_config)
from models.mtp import MTP_LAYERS_KEY, carry_mtp, stored_mtp_layers
from models.quant_spec import is_studio_quantized
from models.registry import resolve_model_dir
from plumbing.locking import exclusive

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


def mtp_layers_to_build(model_dir: Path, config_json: dict) -> int:
    """The multi-token-prediction layers of a MoE checkpoint: as config.json declares them or, when
    it does not say, as its weights hold them (paddleformers would otherwise build one from random
    weights). A count its weights contradict is refused."""
    declared, stored = config_json.get(MTP_LAYERS_KEY), stored_mtp_layers(model_dir)
    if declared is None:
        return stored or 0
    if stored is not None and declared != stored:
        raise ModelNotFound(f"{model_dir / 'config.json'}: {MTP_LAYERS_KEY} is {declared!r} but the weights in "
                            f"{model_dir} hold {stored} multi-token-prediction layer(s)")
    return declared


def load_model(model_dir: Path, dtype: str = "float32", moe_dispatch: str = "auto",
               config_overrides: dict | None = None, pipeline: bool = False):
    """Load the causal LM in `model_dir` on the current paddle device.

    `moe_dispatch`: "auto" (portable where fused kernels are missing), "portable" or "fused".
    `config_overrides`: model-config attributes set before the model is built (a run's MoE loss
    coefficients, for instance).
    `pipeline`: build paddleformers' pipeline-parallel class, whose stages the ranks divide.
    """
    from paddleformers.transformers import AutoConfig

    from models.moe_dispatch import use_portable_moe
    from models.vl import take_float_pixels, use_portable_vl

    model_dir = Path(model_dir)
    config_json = read_model_config(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir), dtype=dtype)
    if config.model_type == "ernie4_5_moe":
        setattr(config, MTP_LAYERS_KEY, mtp_layers_to_build(model_dir, config_json))
    if pipeline and getattr(config, MTP_LAYERS_KEY, 0):
        raise ModelNotFound(f"{model_dir}: paddleformers' pipeline-parallel ERNIE 4.5 class has no "
                            "multi-token-prediction layer and would drop this checkpoint's; train it with "
                            "gpu.pipeline_parallel_degree 1")
    if not fused_moe_kernels_available():
        config.fuse_rms_norm = False
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    if is_studio_quantized(config_json):
        from models.quant_io import load_quantized

        model = load_quantized(model_dir, config, config_json, pipeline)
    else:
        # one process at a time: paddleformers deletes and rewrites a metadata file in the directory on
        # every load, so two ranks (or a job and a chat server) loading together read a half-written one
        with rank_local_loading(), exclusive(model_dir):
            model = model_class(config.model_type, pipeline).from_pretrained(str(model_dir), config=config,
                                                                             dtype=dtype)
    carry_mtp(model)
    if config.model_type in VISION_MODEL_TYPES:
        take_float_pixels(model)
    if config.model_type in ("ernie4_5_moe", *VISION_MODEL_TYPES):
        if moe_dispatch == "portable" or (moe_dispatch == "auto" and not fused_moe_kernels_available()):
            use_portable_moe(model)
            if config.model_type in VISION_MODEL_TYPES:
                use_portable_vl(model)
    return model


def locate_checkpoint(name_or_path: str, adapter: str | None = None, workdir=None) -> tuple[Path, Path | None]:
    """(base model directory, LoRA adapter directory or None), checked without loading weights.

    `name_or_path` may itself be an adapter directory (a LoRA job's output); built-in models are
    built on first use.
    """
    path = Path(name_or_path)
    if adapter is None and path.is_dir() and is_adapter(path):
        model_dir, adapter_dir = adapter_base(path), path.resolve()
    else:
        model_dir = resolve_model_dir(name_or_path, workdir)
        read_model_config(model_dir)
        if adapter is None:
            return model_dir, None
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "lora_config.json").is_file():
            raise ModelNotFound(f"{adapter} is not a LoRA adapter directory: lora_config.json is missing")
        adapter_dir = adapter_dir.resolve()
    if is_studio_quantized(read_model_config(model_dir)):
        raise ModelNotFound(f"{model_dir} is a quantized checkpoint, and a LoRA adapter ({adapter_dir}) is applied "
                            "only to a full-precision base: serve the adapter on the full-precision model, or "
                            "export its job with --merge --quantize and serve the export")
    return model_dir, adapter_dir


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
    return model, load_tokenizer(tokenizer_dir(model_dir, adapter_dir))


def tokenizer_dir(model_dir: Path, adapter_dir: Path | None) -> Path:
    """Where a checkpoint's tokenizer is read: an adapter's own tokenizer files (which carry the chat
    template it was trained with) win over the base's."""
    has_tokenizer = adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").is_file()
    return Path(adapter_dir) if has_tokenizer else Path(model_dir)
