"""Weight-only quantization as a choice, without paddle: the bit widths and group sizes offered,
which layers a width quantizes to how many bits, which layers always stay full precision, and the
`quantization_config` entry a quantized checkpoint's config.json carries. The web UI, the schema and
the checks read these facts; `models.quant` does the quantizing (docs/quant.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# wint4/8 is ERNIEKit's WINT8MIX: int4 for the routed experts' FFNs, int8 for every other layer
WIDTHS = ("wint8", "wint4", "wint4/8")
# -1: one scale per output channel; otherwise one per `group_size` input rows of each output channel
GROUP_SIZES = (-1, 64, 128)
# `quant_method` of a checkpoint this module's format describes; paddleformers and FastDeploy have
# quantization configs of their own that read the same key
QUANT_METHOD = "ernie_studio_weight_only"
ALGO_INT8, ALGO_INT4 = "weight_only_int8", "weight_only_int4"

# a routed expert's linear layers (`...mlp.experts.3.up_gate_proj`); shared experts are `shared_experts`
ROUTED_EXPERT = r"(.*\.)?mlp\.experts\.\d+\..*"
# (pattern searched in a layer or parameter name, what it is): these stay in full precision
_FULL_PRECISION = (
    (r"(^|\.)embed_tokens(\.|$)", "embeddings"),
    (r"(^|\.)lm_head(\.|$)", "the output head"),
    (r"(^|\.)gate(\.|$)", "a router gate"),
    (r"(^|\.)(\w*norm\w*|ln)(\.|$)", "a norm"),
    (r"(^|\.)mtp_(block|linear_proj|emb_norm|hidden_norm)\.", "the multi-token-prediction layer"),
    (r"(^|\.)vision_model(\.|$)", "the vision transformer"),
    (r"(^|\.)resampler_model(\.|$)", "the vision resampler"),
)
_FP8 = ("fp8", "wfp8", "wfp8afp8", "float8", "block_wise_fp8", "w8a8fp8")
_TWO_BIT = ("wint2", "int2", "2bit", "2-bit", "w2")


class QuantError(ValueError):
    """A quantization request or quantized checkpoint that cannot be used, and why."""


def full_precision_reason(name: str) -> str | None:
    """What the layer or parameter `name` is, when it stays in full precision; None otherwise."""
    for pattern, what in _FULL_PRECISION:
        if re.search(pattern, name):
            return what
    return None


def keeps_full_precision(name: str) -> bool:
    """Embeddings, the output head, router gates, norms, the multi-token-prediction layer (carried
    unchanged for FastDeploy's speculative decoding, never run here) and a VL model's vision
    transformer and resampler are never quantized."""
    return full_precision_reason(name) is not None


def is_routed_expert(name: str) -> bool:
    return re.fullmatch(ROUTED_EXPERT, name + ".") is not None


@dataclass(frozen=True)
class QuantSpec:
    width: str
    group_size: int = -1

    def __post_init__(self):
        check_width(self.width)
        check_group_size(self.group_size)

    def bits_for(self, layer_name: str) -> int:
        """4 or 8: the bits of the quantized linear layer `layer_name` under this width."""
        if self.width == "wint8":
            return 8
        if self.width == "wint4":
            return 4
        return 4 if is_routed_expert(layer_name) else 8

    def to_dict(self) -> dict:
        """What the model server's `/v1/models` card says of a quantized model."""
        return {"width": self.width, "group_size": self.group_size}

    @property
    def label(self) -> str:
        """Short, the same in every language: `wint4/8`, or `wint4/8 g128` with group-wise scales."""
        return self.width if self.group_size == -1 else f"{self.width} g{self.group_size}"

    def to_config(self) -> dict:
        """The `quantization_config` entry of a quantized checkpoint's config.json (the algorithm
        named as paddleformers names it; the mix as its {algorithm: layer patterns} form)."""
        algo = {"wint8": ALGO_INT8, "wint4": ALGO_INT4}.get(self.width) or {ALGO_INT4: [ROUTED_EXPERT],
                                                                             ALGO_INT8: [".*"]}
        return {"quant_method": QUANT_METHOD, "weight_quantize_algo": algo, "group_size": self.group_size}

    @classmethod
    def from_config(cls, config: dict) -> "QuantSpec":
        """The spec a `quantization_config` entry written by `to_config` describes; QuantError
        names the entry's key that is not one this format writes."""
        if not is_studio_quantized({"quantization_config": config}):
            raise QuantError(f"quantization_config.quant_method is not {QUANT_METHOD!r}: this is not a checkpoint "
                             "quantized by the studio")
        algo = config.get("weight_quantize_algo")
        for width in WIDTHS:
            if cls(width).to_config()["weight_quantize_algo"] == algo:
                break
        else:
            raise QuantError(f"quantization_config.weight_quantize_algo is {algo!r}; expected {ALGO_INT8!r}, "
                             f"{ALGO_INT4!r} or the wint4/8 mix {cls('wint4/8').to_config()['weight_quantize_algo']}")
        try:
            return cls(width, config.get("group_size", -1))
        except QuantError as exc:
            raise QuantError(f"quantization_config.group_size: {exc}") from exc


def is_studio_quantized(config_json: dict) -> bool:
    """Whether a config.json (as a dict) describes a checkpoint in this module's quantized format."""
    entry = config_json.get("quantization_config")
    return isinstance(entry, dict) and entry.get("quant_method") == QUANT_METHOD


def quantization_of(config_json: dict) -> QuantSpec | None:
    """The spec of a studio-quantized checkpoint's config.json; None for any other checkpoint.
    QuantError names the entry's key this format never writes."""
    return QuantSpec.from_config(config_json["quantization_config"]) if is_studio_quantized(config_json) else None


def check_width(width) -> str:
    if width in WIDTHS:
        return width
    named = str(width).strip().lower()
    if named in _FP8 or "fp8" in named:
        raise QuantError(f"{width!r}: fp8 weights need a CUDA GPU of compute capability 8.9 or newer (Ada, "
                         "Hopper) and Paddle's fused fp8 kernels, which this studio does not use; it quantizes to "
                         f"{', '.join(WIDTHS)}")
    if named in _TWO_BIT or named.endswith(("int2", "2bit")):
        raise QuantError(f"{width!r}: 2-bit weights are not offered. ERNIE 4.5's near-lossless 2-bit checkpoints "
                         "are made offline with convolutional code quantization and run only on FastDeploy's GPU "
                         "kernels; round-to-nearest 2-bit (three levels per scale) loses too much of a model. "
                         f"Supported: {', '.join(WIDTHS)}")
    raise QuantError(f"unsupported bit width {width!r}; supported: {', '.join(WIDTHS)}")


def check_group_size(group_size) -> int:
    if isinstance(group_size, int) and not isinstance(group_size, bool) and group_size in GROUP_SIZES:
        return group_size
    raise QuantError(f"unsupported group size {group_size!r}; supported: "
                     f"{', '.join(str(size) for size in GROUP_SIZES)} (-1 = one scale per output channel)")


def parse_spec(width, group_size=-1) -> QuantSpec:
    """A QuantSpec from user input (a group size may come as text); QuantError says what is wrong."""
    if isinstance(group_size, str) and re.fullmatch(r"-?\d+", group_size.strip()):
        group_size = int(group_size)
    return QuantSpec(check_width(width), check_group_size(group_size))
