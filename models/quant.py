"""Weight-only int8/int4 quantization of linear layers: the numpy reference, the portable Paddle
forward with the same numerics, the quantized layers (plain and LoRA), and quantizing a loaded
model in place. Saving and loading quantized checkpoints is `models.quant_io`; docs/quant.md has
the format and the numerics.

Weights are in Paddle's Linear layout [in, out]. Quantization is symmetric abs-max: per output
channel (`group_size` -1, scale [1, out]) or per `group_size` input rows of each output channel
(scale [in / group_size, out]); int8 values lie in [-127, 127], int4 in [-7, 7], two int4 values
packed per byte along the input rows. Paddle's own `weight_dequantize` and `weight_only_linear`
have no CPU kernel, so the forward dequantizes layer by layer with ordinary ops (bit operations
for int4); on a CUDA device `use_fused_kernels` switches to the fused `weight_only_linear`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import paddle
from paddle import nn
from paddle.autograd import PyLayer
from paddleformers.peft.lora.lora_layers import LoRALinear

from models.quant_spec import ALGO_INT4, ALGO_INT8, QuantError, QuantSpec, full_precision_reason

QMAX = {8: 127, 4: 7}


# ---- numpy reference ----------------------------------------------------------------------------

def group_count(rows: int, group_size: int, name: str = "weight", cols: int | None = None) -> int:
    """Scale rows of a weight with `rows` input rows: 1 channel-wise, else rows / group_size."""
    if group_size == -1:
        return 1
    if rows % group_size:
        shape = f"[{rows}, {cols}]" if cols is not None else f"with {rows} input rows"
        raise QuantError(f"layer {name} {shape}: group size {group_size} does not divide its {rows} input rows; "
                         "use group size -1 (one scale per output channel)")
    return rows // group_size


def quantize_np(w, bits: int, group_size: int = -1, name: str = "weight") -> tuple[np.ndarray, np.ndarray]:
    """(int8 values [in, out] within ±QMAX[bits], float32 scales [groups, out]) of weight `w`."""
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    groups = group_count(rows, group_size, name, cols)
    blocks = w.reshape(groups, rows // groups, cols)
    scale = (np.abs(blocks).max(axis=1) / np.float32(QMAX[bits])).astype(np.float32)
    divisor = np.where(scale > 0, scale, np.float32(1))[:, None, :]
    q = np.clip(np.round(blocks / divisor), -QMAX[bits], QMAX[bits]).astype(np.int8)
    return q.reshape(rows, cols), scale


def dequantize_np(q, scale, group_size: int = -1) -> np.ndarray:
    """float32 weight [in, out] of int values `q` [in, out] and their scales [groups, out]."""
    rows, cols = q.shape
    groups = group_count(rows, group_size, cols=cols)
    if scale.shape != (groups, cols):
        raise QuantError(f"scales of shape {list(scale.shape)} do not fit weight {[rows, cols]} with group size "
                         f"{group_size}: expected {[groups, cols]}")
    blocks = q.astype(np.float32).reshape(groups, rows // groups, cols) * scale.astype(np.float32)[:, None, :]
    return blocks.reshape(rows, cols)


def pack_int4(q) -> np.ndarray:
    """Two int4 values per int8 byte: row 2i in the low nibble, row 2i+1 in the high one (an odd
    last row is paired with zero). Shape [ceil(in / 2), out]."""
    q = np.asarray(q, dtype=np.int8)
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), np.int8)])
    low, high = q[0::2].astype(np.uint8) & 0x0F, (q[1::2].astype(np.uint8) & 0x0F) << 4
    return (low | high).astype(np.uint8).view(np.int8)


def unpack_int4(packed, rows: int) -> np.ndarray:
    """The int8 values [rows, out] that `pack_int4` packed."""
    packed = np.asarray(packed, dtype=np.int8)
    low = ((packed & 0x0F) ^ 0x08).astype(np.int8) - np.int8(8)
    high = packed >> 4
    return np.stack([low, high], axis=1).reshape(-1, packed.shape[1])[:rows]


def stored_rows(in_features: int, bits: int) -> int:
    """Rows of the stored integer weight: packed int4 holds two input rows per row."""
    return (in_features + 1) // 2 if bits == 4 else in_features


# ---- portable Paddle ----------------------------------------------------------------------------

def unpack_int4_paddle(packed: paddle.Tensor, rows: int) -> paddle.Tensor:
    wide = packed.astype("int32")
    nibble, eight, four = (paddle.full([1], value, "int32") for value in (0x0F, 0x08, 4))
    low = paddle.bitwise_xor(paddle.bitwise_and(wide, nibble), eight) - eight
    high = paddle.bitwise_right_shift(wide, four)
    return paddle.stack([low, high], axis=1).reshape([-1, packed.shape[1]])[:rows]


def dequantize(quant_weight: paddle.Tensor, weight_scale: paddle.Tensor, in_features: int, bits: int,
               dtype="float32") -> paddle.Tensor:
    """The weight [in, out] in `dtype`, computed in float32 exactly as `dequantize_np`."""
    q = unpack_int4_paddle(quant_weight, in_features) if bits == 4 else quant_weight
    groups = weight_scale.shape[0]
    blocks = q.astype("float32").reshape([groups, in_features // groups, -1])
    weight = (blocks * weight_scale.astype("float32").unsqueeze(1)).reshape([in_features, -1])
    dtype = getattr(paddle, dtype) if isinstance(dtype, str) else dtype
    return weight if weight.dtype == dtype else weight.astype(dtype)


class _QuantizedMatmul(PyLayer):
    """x @ W for a quantized W. Only the integer weight and scales are kept for backward, which
    dequantizes again: autograd would otherwise hold every layer's dequantized weight until the
    backward pass, and a quantized base would save no memory in training."""

    @staticmethod
    def forward(ctx, x, quant_weight, weight_scale, in_features, bits, fused):
        ctx.save_for_backward(quant_weight, weight_scale)
        ctx.shape = (in_features, bits)
        if fused is not None:
            return fused(x)
        return paddle.matmul(x, dequantize(quant_weight, weight_scale, in_features, bits, x.dtype))

    @staticmethod
    def backward(ctx, grad):
        quant_weight, weight_scale = ctx.saved_tensor()
        weight = dequantize(quant_weight, weight_scale, *ctx.shape, grad.dtype)
        return paddle.matmul(grad, weight, transpose_y=True), None, None


class _QuantizedWeight:
    """The quantized weight a layer holds instead of `weight`: buffers `quant_weight` (int8; packed
    for int4) and `weight_scale` (float32), so they are saved and moved with the model but never
    trained."""

    def _hold(self, quant_weight, weight_scale, in_features: int, out_features: int, bits: int, group_size: int):
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        self.register_buffer("quant_weight", paddle.to_tensor(quant_weight, dtype="int8"))
        self.register_buffer("weight_scale", paddle.to_tensor(weight_scale, dtype="float32"))
        self._fused = None

    def base_forward(self, x):
        # the fused kernel takes half-precision activations only
        fused = self._fused if x.dtype in (paddle.float16, paddle.bfloat16) else None
        y = _QuantizedMatmul.apply(x, self.quant_weight, self.weight_scale, self.in_features, self.bits, fused)
        return y if self.bias is None else y + self.bias

    def dequantized_weight(self, dtype="float32") -> paddle.Tensor:
        return dequantize(self.quant_weight, self.weight_scale, self.in_features, self.bits, dtype)

    def quant_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}")


def _quantized_tensors(weight: paddle.Tensor, bits: int, group_size: int, name: str):
    q, scale = quantize_np(weight.astype("float32").numpy(), bits, group_size, name)
    return (pack_int4(q) if bits == 4 else q), scale


class QuantizedLinear(_QuantizedWeight, nn.Layer):
    """A frozen linear layer with an int8 or int4 weight; the bias (if any) stays a parameter."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int = -1, bias=None,
                 quant_weight=None, weight_scale=None):
        nn.Layer.__init__(self)
        groups = group_count(in_features, group_size, cols=out_features)
        self._hold(np.zeros((stored_rows(in_features, bits), out_features), np.int8) if quant_weight is None
                   else quant_weight,
                   np.zeros((groups, out_features), np.float32) if weight_scale is None else weight_scale,
                   in_features, out_features, bits, group_size)
        self.bias = bias

    @classmethod
    def from_linear(cls, layer: nn.Linear, bits: int, group_size: int = -1, name: str = "weight"):
        in_features, out_features = layer.weight.shape
        quant_weight, scale = _quantized_tensors(layer.weight, bits, group_size, name)
        return cls(in_features, out_features, bits, group_size, layer.bias, quant_weight, scale)

    def forward(self, x):
        return self.base_forward(x)

    def extra_repr(self):
        return self.quant_repr()


class QuantizedLoRALinear(_QuantizedWeight, LoRALinear):
    """paddleformers' LoRALinear on a quantized base: the same `lora_A`/`lora_B` parameters (so an
    adapter saved from it is an ordinary adapter, which applies to the full-precision base too) and
    the same LoRA term; the frozen base weight is held quantized instead of as `weight`."""

    def __init__(self, layer: LoRALinear, bits: int, group_size: int = -1, name: str = "weight"):
        nn.Layer.__init__(self)
        in_features, out_features = layer.weight.shape
        quant_weight, scale = _quantized_tensors(layer.weight, bits, group_size, name)
        self._dtype = layer._dtype
        self._hold(quant_weight, scale, in_features, out_features, bits, group_size)
        self.bias = layer.bias
        self.r, self.lora_alpha, self.scaling = layer.r, layer.lora_alpha, layer.scaling
        self.lora_dropout, self.lora_A, self.lora_B = layer.lora_dropout, layer.lora_A, layer.lora_B
        self.merged, self.disable_lora = False, layer.disable_lora

    def forward(self, input, *args, **kwargs):
        result = self.base_forward(input)
        if not self.disable_lora:
            result += (self.lora_dropout(input) @ self.lora_A @ self.lora_B) * self.scaling
        return result

    def merge(self):
        raise QuantError("a LoRA adapter cannot be merged into a quantized base: merge it into the full-precision "
                         "base (trainer export --merge) and quantize the merged model")

    unmerge = merge

    def extra_repr(self):
        return f"{self.quant_repr()}, rank={self.r}"


# ---- whole models -------------------------------------------------------------------------------

def is_quantized(layer) -> bool:
    return isinstance(layer, _QuantizedWeight)


def quantized_layers(model) -> list[tuple[str, _QuantizedWeight]]:
    return [(name, layer) for name, layer in model.named_sublayers(include_self=True) if is_quantized(layer)]


def eligible_layers(model) -> list[tuple[str, nn.Linear]]:
    """The full-precision linear layers (LoRA-wrapped or not) that quantization replaces.
    Tensor-parallel layers are refused: their weights are shards of another layout."""
    found = []
    for name, layer in model.named_sublayers():
        if "ParallelLinear" in type(layer).__name__ or "ParallelLoRALinear" in type(layer).__name__:
            raise QuantError(f"layer {name} is a tensor-parallel {type(layer).__name__}; weight-only quantization "
                             "supports tensor_parallel_degree 1 only")
        if isinstance(layer, nn.Linear) and not is_quantized(layer) and full_precision_reason(name) is None:
            found.append((name, layer))
    return found


def weight_bytes(model, as_dtype: str | None = None) -> int:
    """Bytes of the model's parameters and saved buffers, each tensor counted once (a tied output
    head shares the embedding). With `as_dtype`, floating-point parameters are counted at that
    precision (e.g. "bfloat16" for a model loaded in float32); integer weights and scales as held."""
    seen, total = set(), 0
    parameters = {id(p) for p in model.parameters()}
    for tensor in model.state_dict().values():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor.element_size()
        if as_dtype is not None and id(tensor) in parameters and tensor.dtype in (
                paddle.float32, paddle.float16, paddle.bfloat16, paddle.float64):
            size = paddle.to_tensor(0, dtype=as_dtype).element_size()
        total += int(np.prod(tensor.shape)) * size
    return total


@dataclass
class QuantSummary:
    width: str
    group_size: int
    layers: dict[int, int] = field(default_factory=dict)  # bits -> quantized layers
    bytes_before: int = 0
    bytes_after: int = 0

    def to_dict(self) -> dict:
        return {"width": self.width, "group_size": self.group_size,
                "layers": {f"int{bits}": count for bits, count in sorted(self.layers.items())},
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after}


def set_sublayer(model, name: str, layer) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model
    for part in parent_name.split(".") if parent_name else ():
        parent = getattr(parent, part)
    setattr(parent, child, layer)


def check_divisible(targets, spec: QuantSpec) -> None:
    for name, layer in targets:
        group_count(layer.weight.shape[0], spec.group_size, name, layer.weight.shape[1])


def quantize_model(model, spec: QuantSpec) -> QuantSummary:
    """Replace every eligible linear layer of `model` by its quantized form, in place; the
    full-precision weights are dropped. Every layer is checked before the first is replaced, so a
    refusal leaves the model as it was. A LoRALinear keeps its adapter (same parameters)."""
    targets = eligible_layers(model)
    check_divisible(targets, spec)
    summary = QuantSummary(spec.width, spec.group_size, bytes_before=weight_bytes(model))
    for name, layer in targets:
        bits = spec.bits_for(name)
        if isinstance(layer, LoRALinear):
            quantized = QuantizedLoRALinear(layer, bits, spec.group_size, name)
        else:
            quantized = QuantizedLinear.from_linear(layer, bits, spec.group_size, name)
        set_sublayer(model, name, quantized)
        summary.layers[bits] = summary.layers.get(bits, 0) + 1
    summary.bytes_after = weight_bytes(model)
    return summary


def runs_fused(model) -> bool:
    """Whether the model's quantized layers run Paddle's fused kernel (`use_fused_kernels`)."""
    return any(layer._fused is not None for _, layer in quantized_layers(model))


def fused_kernels_available() -> bool:
    return paddle.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu")


def use_fused_kernels(model) -> int:
    """On a CUDA device, give every quantized layer Paddle's fused `weight_only_linear` for its
    forward (backward still dequantizes portably). `weight_quantize` only produces the kernel's
    weight layout from a float weight, so it is given the integer values themselves as float16
    (exact): the abs-max of every channel or group is the top value, its scale comes out 1 and the
    integers come back unchanged; the layer's own scales are passed to the kernel. The fused
    weight is held beside the portable one (saving and backward read the latter). Returns the
    number of layers switched; 0 without CUDA."""
    if not fused_kernels_available():
        return 0
    from paddle.nn.quant import weight_only_linear, weight_quantize

    layers = quantized_layers(model)
    for _, layer in layers:
        ints = (unpack_int4_paddle(layer.quant_weight, layer.in_features) if layer.bits == 4
                else layer.quant_weight).astype("float16")
        fused_weight, _ = weight_quantize(ints, algo=ALGO_INT4 if layer.bits == 4 else ALGO_INT8,
                                          group_size=layer.group_size)
        scale = layer.weight_scale.reshape([-1]) if layer.group_size == -1 else layer.weight_scale

        def fused(x, fused_weight=fused_weight, scale=scale, layer=layer):
            return weight_only_linear(x, fused_weight, weight_scale=scale.astype(x.dtype),
                                      weight_dtype=f"int{layer.bits}", group_size=layer.group_size)

        layer._fused = fused
    return len(layers)
