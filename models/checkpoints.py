"""Facts about checkpoint directories, without loading one: which files a tokenizer brings, whether
a directory is a LoRA adapter and which base it belongs to, the model type a config names, and how
a save is written (safetensors with the shipped config, into a staging directory renamed into place
once complete). Never imports paddle: the UI, the registry and the CLI read these facts too."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from models.config_keys import CARRIED, KEY_HANDLING, refusals
from models.mtp import checkpoint_layout

# The files a tokenizer consists of; copied with a model or an adapter so either chats on its own.
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "added_tokens.json", "tokenizer.json")
# What a VL checkpoint's processor adds to its tokenizer (the image and video processors' settings, the
# processor's own config); shipped with it the same way, so `Ernie4_5_VLImageProcessor.from_pretrained`
# and the studio's image processing read the settings the model was trained with.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
# Written beside a LoRA adapter: which base model it belongs to.
ADAPTER_INFO = "adapter_info.json"
SUPPORTED_MODEL_TYPES = ("ernie4_5", "ernie4_5_moe", "ernie4_5_moe_vl")
VISION_MODEL_TYPES = ("ernie4_5_moe_vl",)
# A tokenizer needs one of these (a sentencepiece model or a fast-tokenizer file).
TOKENIZER_VOCABULARY = ("tokenizer.model", "tokenizer.json")


def model_class(model_type: str, pipeline: bool = False):
    """paddleformers' auto class that builds a checkpoint of `model_type`: a causal LM, or the VL
    models' conditional-generation class."""
    from paddleformers.transformers import (AutoModelForCausalLM, AutoModelForCausalLMPipe,
                                            AutoModelForConditionalGeneration,
                                            AutoModelForConditionalGenerationPipe)

    if model_type in VISION_MODEL_TYPES:
        return AutoModelForConditionalGenerationPipe if pipeline else AutoModelForConditionalGeneration
    return AutoModelForCausalLMPipe if pipeline else AutoModelForCausalLM


class ModelNotFound(Exception):
    """A model name or directory that cannot be used, with what to do about it."""


def read_model_config(model_dir: str | os.PathLike[str]) -> dict:
    """config.json of a checkpoint the studio can train and serve; ModelNotFound says why not."""
    config_file = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot read {config_file}: {exc}") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelNotFound(
            f"{config_file}: model_type {model_type!r} is not an ERNIE 4.5 model the studio can fine-tune; "
            f"expected one of {', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
        )
    refused = refusals(config)
    if refused:
        raise ModelNotFound(f"{config_file}: " + "; ".join(refused))
    return config


def check_checkpoint_dir(model_dir: str | os.PathLike[str]) -> dict:
    """A checkpoint directory the studio can train from: config.json of a supported model type and a
    tokenizer beside it. Returns the config; ModelNotFound names what is missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelNotFound(f"model directory not found: {model_dir}")
    if not (model_dir / "config.json").is_file():
        raise ModelNotFound(f"{model_dir} is not a checkpoint directory: config.json is missing")
    config = read_model_config(model_dir)
    if not any((model_dir / name).is_file() for name in TOKENIZER_VOCABULARY):
        raise ModelNotFound(
            f"{model_dir} has no tokenizer ({' or '.join(TOKENIZER_VOCABULARY)}); copy the checkpoint's "
            f"tokenizer files ({', '.join(TOKENIZER_FILES[:3])}) into it"
        )
    return config


def stored_dtype(model_dir: str | os.PathLike[str]) -> str:
    """The precision a checkpoint's weights are stored in, as its config.json names it (float32 when
    it names none)."""
    config = read_model_config(model_dir)
    named = config.get("dtype") or config.get("torch_dtype")
    return named if named in ("bfloat16", "float16", "float32") else "float32"


def is_moe(model_dir: str | os.PathLike[str]) -> bool:
    return read_model_config(model_dir)["model_type"] == "ernie4_5_moe"


def is_adapter(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / ADAPTER_INFO).is_file()


def adapter_info(adapter_dir: str | os.PathLike[str]) -> dict:
    """adapter_info.json: `base_model` (its directory), `base_model_name` (as the run named it), `method`."""
    return json.loads((Path(adapter_dir) / ADAPTER_INFO).read_text(encoding="utf-8"))


def write_adapter_info(adapter_dir: str | os.PathLike[str], base_model: Path, base_model_name: str,
                       method: str) -> None:
    info = {"base_model": str(base_model), "base_model_name": base_model_name, "method": method}
    (Path(adapter_dir) / ADAPTER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")


def adapter_base(adapter_dir: str | os.PathLike[str]) -> Path:
    """The base model directory an adapter was trained on; ModelNotFound if it is gone."""
    base = Path(adapter_info(adapter_dir)["base_model"])
    if not (base / "config.json").is_file():
        raise ModelNotFound(f"{Path(adapter_dir) / ADAPTER_INFO}: the adapter's base model {base} is missing")
    return base


def copy_tokenizer_files(source: Path, target: Path) -> None:
    """Copy the tokenizer's files and, for a VL model, its processor's from `source` to `target`."""
    for name in TOKENIZER_FILES + PROCESSOR_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(target) / name)


def remove_save_leftovers(directory: str | os.PathLike[str]) -> None:
    """paddleformers' savers leave a `saved_signal_<rank>` file behind; a checkpoint does not need it."""
    for leftover in Path(directory).glob("saved_signal_*"):
        leftover.unlink()


def save_model(model, directory: str | os.PathLike[str], config_json: str) -> None:
    """Save `model`'s weights as safetensors with `config_json` as config.json.

    `save_pretrained` writes the runtime config (CPU adjustments included); the config of the
    checkpoint the weights came from is the one to ship.
    """
    with checkpoint_layout(model):
        model.save_pretrained(str(directory), safe_serialization=True)
    remove_save_leftovers(directory)
    (Path(directory) / "config.json").write_text(config_json, encoding="utf-8")


def carry_config_keys(directory: str | os.PathLike[str], base_dir: str | os.PathLike[str]) -> None:
    """Give the config.json paddleformers wrote into `directory` the carried keys (the MTP layer
    count, FastDeploy's quantization recipe) exactly as the base checkpoint's config.json has them:
    paddleformers keeps only part of the recipe."""
    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        return
    base = read_model_config(base_dir)
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for key in (key for key, handling in KEY_HANDLING.items() if handling == CARRIED):
        config.pop(key, None)
        if key in base:
            config[key] = base[key]
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def staging_dir(target: str | os.PathLike[str]) -> Path:
    """Where a save of `target` is written before it is renamed into place: `<target>.partial`."""
    target = Path(target)
    return target.with_name(target.name + ".partial")


@contextmanager
def staged(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a directory under a temporary name and put it in place only once the block completes,
    so `target` is never seen half-written; a leftover of an earlier crash is cleared first."""
    target = Path(target)
    staging = staging_dir(target)
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    publish(staging, target)


def publish(staging: Path, target: str | os.PathLike[str]) -> None:
    """Replace `target` with the complete directory `staging`."""
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
