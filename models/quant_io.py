"""Quantized checkpoints on disk: writing a quantized model (`save_quantized`) and building one
back (`load_quantized`, which `models.loader.load_model` calls for a config.json whose
`quantization_config` is the studio's).

The directory is an ordinary checkpoint directory: config.json (the source checkpoint's, plus
`quantization_config`), `model.safetensors`, and the tokenizer's files. Tensors are stored under
the names and in the layout the loaded Paddle model has them (not the Hugging Face layout
paddleformers converts full-precision checkpoints to): `<layer>.quant_weight` (int8 [in, out];
int4 packed [ceil(in / 2), out]) and `<layer>.weight_scale` (float32 [groups, out]) for every
quantized layer, everything else in full precision under its usual name; a tied output head is
stored once, as the embedding. Loading builds the model under `paddle.LazyGuard`, so its
full-precision weights are never allocated: only the tensors read from the file are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.checkpoints import ModelNotFound, copy_tokenizer_files, model_class, read_model_config, staged, \
    staging_dir
from models.quant import (LoRALinear, QuantizedLinear, eligible_layers, fused_kernels_available, group_count,
                          quantized_layers, set_sublayer, use_fused_kernels)
from models.quant_spec import QuantError, QuantSpec

WEIGHTS_FILE = "model.safetensors"


def _unique_state(model) -> dict:
    """The model's state by name, a tensor shared under two names (a tied head) kept once."""
    seen, state = set(), {}
    for name, tensor in model.state_dict().items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            state[name] = tensor
    return state


def check_matches(model, spec: QuantSpec) -> None:
    """A model about to be saved as `spec` must be quantized exactly as `spec` says, or the
    config.json written beside it would describe other weights."""
    for name, layer in quantized_layers(model):
        if isinstance(layer, LoRALinear):
            raise QuantError(f"layer {name} carries a LoRA adapter: merge the adapter into the full-precision model "
                             "first (trainer export --merge), then quantize")
        if (layer.bits, layer.group_size) != (spec.bits_for(name), spec.group_size):
            raise QuantError(f"layer {name} is int{layer.bits} with group size {layer.group_size}, but {spec.width} "
                             f"with group size {spec.group_size} makes it int{spec.bits_for(name)}")
    left = [name for name, _ in eligible_layers(model)]
    if left:
        raise QuantError(f"{len(left)} linear layer(s) are not quantized (first: {left[0]}); run quantize_model "
                         "with this spec before saving")


def save_quantized(model, spec: QuantSpec, out_dir, source_dir=None) -> Path:
    """Write the quantized `model` as a checkpoint directory `out_dir`, put in place only once
    complete (a refusal or failure leaves nothing there). config.json is `source_dir`'s (the
    checkpoint the weights came from, its tokenizer and processor files copied too) or, without
    one, the model's own config; either gets `quantization_config` = `spec.to_config()`."""
    import safetensors.paddle

    check_matches(model, spec)
    config = dict(read_model_config(source_dir)) if source_dir is not None else model.config.to_dict()
    config["quantization_config"] = spec.to_config()
    state = {name: tensor.contiguous() for name, tensor in _unique_state(model).items()}
    out_dir = Path(out_dir)
    try:
        with staged(out_dir) as staging:
            staging.mkdir(parents=True)
            safetensors.paddle.save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "paddle"})
            (staging / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
            if source_dir is not None:
                copy_tokenizer_files(Path(source_dir), staging)
    except BaseException:
        shutil.rmtree(staging_dir(out_dir), ignore_errors=True)
        raise
    return out_dir


def read_spec(model_dir: Path, config_json: dict) -> QuantSpec:
    try:
        return QuantSpec.from_config(config_json["quantization_config"])
    except QuantError as exc:
        raise QuantError(f"{Path(model_dir) / 'config.json'}: {exc}") from exc


def _shells(model, spec: QuantSpec, model_dir: Path) -> None:
    """Replace every eligible linear layer by an empty QuantizedLinear of the shape the config
    gives it; the layer's own (lazy) weight is dropped unallocated, its bias kept to be loaded."""
    for name, layer in eligible_layers(model):
        in_features, out_features = layer.weight.shape
        try:
            group_count(in_features, spec.group_size, name, out_features)
        except QuantError as exc:
            raise QuantError(f"{model_dir / 'config.json'}: {exc}") from exc
        set_sublayer(model, name, QuantizedLinear(in_features, out_features, spec.bits_for(name), spec.group_size,
                                                  bias=layer.bias))


def _stored_shapes(model_dir: Path) -> dict[str, tuple[Path, list[int]]]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelNotFound(f"{model_dir} has no *.safetensors weights")
    shapes = {}
    for path in files:
        with safe_open(str(path), framework="np") as handle:
            for key in handle.keys():
                shapes[key] = (path, list(handle.get_slice(key).get_shape()))
    return shapes


def _missing_message(model_dir: Path, name: str) -> str:
    what = ("the scales of quantized layer " if name.endswith(".weight_scale") else
            "the integer weight of quantized layer " if name.endswith(".quant_weight") else "")
    layer = name.rpartition(".")[0]
    return (f"{model_dir}: the weights hold no tensor {name!r}" + (f" ({what}{layer})" if what else "")
            + "; the checkpoint is incomplete or its config.json describes another model")


def load_state(model, model_dir: Path, spec: QuantSpec) -> None:
    """Fill the model's tensors from the directory's safetensors, after checking every name and
    shape against the model the config built; nothing is read before all of them agree."""
    from safetensors import safe_open

    state = _unique_state(model)
    stored = _stored_shapes(model_dir)
    for name, tensor in state.items():
        if name not in stored:
            raise ModelNotFound(_missing_message(model_dir, name))
        path, shape = stored[name]
        if shape != list(tensor.shape):
            raise QuantError(f"{path}: tensor {name!r} has shape {shape}, but config.json ({spec.width}, group size "
                             f"{spec.group_size}) makes it {list(tensor.shape)}")
    extra = sorted(set(stored) - set(model.state_dict()))
    if extra:
        raise QuantError(f"{stored[extra[0]][0]}: tensor {extra[0]!r} (and {len(extra) - 1} more) belongs to no "
                         f"layer of the model config.json describes as {spec.width}")
    by_file: dict[Path, list[str]] = {}
    for name in state:
        by_file.setdefault(stored[name][0], []).append(name)
    for path, names in by_file.items():
        with safe_open(str(path), framework="paddle") as handle:
            for name in names:
                value = handle.get_tensor(name)
                target = state[name]
                target.set_value(value if value.dtype == target.dtype else value.astype(target.dtype))


def load_quantized(model_dir, config, config_json: dict, pipeline: bool = False):
    """The model of a quantized checkpoint directory, built from `config` (paddleformers' config,
    already adjusted by the loader) with its quantized layers as `QuantizedLinear`; on a CUDA
    device with half-precision weights they use the fused kernel."""
    import paddle
    from paddleformers.quantization.quantization_config import QuantizationConfig

    model_dir = Path(model_dir)
    spec = read_spec(model_dir, config_json)
    if pipeline:
        raise QuantError(f"{model_dir}: a quantized checkpoint cannot be built as paddleformers' pipeline-parallel "
                         "class; use gpu.pipeline_parallel_degree 1")
    # paddleformers reads `quantization_config` itself and would build its GPU-only layers from it
    config.quantization_config = QuantizationConfig()
    with paddle.LazyGuard():
        model = model_class(config.model_type).from_config(config)
    _shells(model, spec, model_dir)
    load_state(model, model_dir, spec)
    if str(config.dtype) in ("float16", "bfloat16") and fused_kernels_available():
        use_fused_kernels(model)
    return model
