"""LoRA on a quantized base (`finetuning.base_quant`, docs/quant.md "Training on a quantized base"):
the rules a run config must meet for it, checked without paddle (LoRA only, no tensor parallelism,
a base that is not quantized already, a group size that divides every quantized layer), and the
base quantized in place once the adapters are on it. Never imports paddle at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from models.memory import ArchitectureError, architecture, inventory
from models.quant_spec import QuantError, QuantSpec, is_studio_quantized, keeps_full_precision
from trainer.messages import Message

WIDTH_KEY = "finetuning.base_quant"
GROUP_KEY = "finetuning.base_quant_group_size"


def base_spec(width: str, group_size: int) -> QuantSpec | None:
    """The quantization of the base a run asks for; None for a full-precision base."""
    return None if width == "none" else QuantSpec(width, group_size)


def config_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """Rules across fields: only LoRA trains on a quantized base, and its layers are whole on each GPU."""
    width = v.get(WIDTH_KEY, "none")
    if width == "none":
        return []
    out = []
    if v.get("finetuning.type") == "full":
        out.append((WIDTH_KEY, Message("base-quant-full", key=WIDTH_KEY, width=width)))
    # on cpu the GPU-layout rules already refuse any tensor parallelism
    tensor = v.get("gpu.tensor_parallel_degree", 1)
    if v.get("devices.device") == "gpu" and isinstance(tensor, int) and tensor > 1:
        out.append((WIDTH_KEY, Message("base-quant-tensor-parallel", key=WIDTH_KEY, tensor=tensor)))
    return out


def model_problems(v: dict[str, Any], model_dir: Path | None, config: dict) -> list[tuple[str, Message]]:
    """What the model a run starts from (its config.json; `model_dir` None for a built-in model)
    says against training it: weights already quantized, or a group size that does not divide a
    layer the base quantization would quantize (found from config.json, before anything loads)."""
    if is_studio_quantized(config):
        key = "model.name_or_path"
        try:
            width = QuantSpec.from_config(config["quantization_config"]).width
        except QuantError as exc:
            return [(key, Message("model-unusable", key=key, reason=f"{model_dir}: {exc}"))]
        return [(key, Message("model-quantized", key=key, path=str(model_dir), width=width))]
    width, group = v.get(WIDTH_KEY, "none"), v.get(GROUP_KEY, -1)
    if width == "none" or group == -1:
        return []
    try:
        linears = inventory(architecture(config))[1]
    except ArchitectureError:
        return []  # an architecture the estimate cannot list: quantize_model checks its layers at the start
    for linear in linears:
        if not keeps_full_precision(linear.name) and linear.fan_in % group:
            return [(GROUP_KEY, Message("base-quant-group-size", key=GROUP_KEY, group=group, layer=linear.name,
                                        rows=linear.fan_in, cols=linear.fan_out))]
    return []


def quantize_base(width: str, group_size: int, model, log: Callable[[str], None]) -> None:
    """Quantize the frozen base of a LoRA model in place (its full-precision weights are freed; the
    adapters keep training in full precision), logging what it saved. A layer the group size does
    not divide is a QuantError naming it and its shape, raised before any layer is replaced."""
    spec = base_spec(width, group_size)
    if spec is None:
        return
    from models.quant import quantize_model

    try:
        summary = quantize_model(model, spec)
    except QuantError as exc:
        raise QuantError(f"{GROUP_KEY}: {exc}") from None
    layers = ", ".join(f"{count} int{bits}" for bits, count in sorted(summary.layers.items()))
    log(f"model: base quantized to {spec.width} (group size {spec.group_size}): {layers} linear layers; weights "
        f"{summary.bytes_before / 2**20:,.1f} MiB -> {summary.bytes_after / 2**20:,.1f} MiB")
