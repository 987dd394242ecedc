"""What training an ERNIE 4.5 model holds in memory per device, worked out from its config.json alone
(never imports paddle: the Train tab shows the figure as the form changes).

The parameters are listed as paddleformers 1.2.0 builds them (names, shapes, which stay fp32):
dense or MoE layers by `moe_layer_start_index`/`_end_index`/`_interval`, shared experts, the
router's fp32 gate and correction bias, tied embeddings, the multi-token-prediction layers of
`num_nextn_predict_layers`; keys a config.json leaves out take paddleformers' defaults.

The memory of one training step is an inventory of tensors, each a count of values per token (or
per parameter) times the bytes of its dtype, taken from the code paddle runs (eager attention,
the unfused RMSNorm and the portable MoE dispatch of models/moe_dispatch.py) and checked one by one
against paddle's allocator on CPU in fp32 (docs/real_models.md, "Will it fit?"):

- static: weights (a LoRA run's quantized base at its integers and scales, `quantized_layers`); for
  what trains a gradient (fp32 under AMP: paddleformers keeps master gradients), AdamW's two fp32
  moments and, under bf16/fp16, an fp32 master copy; the frozen reference model of full DPO;
- activations: what autograd keeps for the backward pass, per token and layer, plus the step's
  largest transients: the logits and the loss's softmax, the gradient of the (tied) embedding, a
  quantized layer's weight dequantized for its matmul;
- loading (two copies of the weights, in full precision also for a base quantized after loading,
  and one more of the embedding) and saving (a host copy of
  the largest file written: the weights, or a checkpoint's optimizer state) also have peaks;
- the runtime itself: on CPU the Python process with paddle and paddleformers, the kernel code a
  first step pages in, and the tokenizer; on GPU the CUDA context and workspaces (not measured
  here: no GPU on the machine this was calibrated on).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from models.quant_spec import QuantSpec, keeps_full_precision

MiB = 2**20

# paddleformers 1.2.0's defaults for keys a config.json leaves out (Ernie4_5Config, Ernie4_5_MoeConfig).
DEFAULTS = {
    "ernie4_5": dict(vocab_size=32000, hidden_size=768, intermediate_size=11008, num_hidden_layers=2,
                     num_attention_heads=2, head_dim=128, tie_word_embeddings=True, use_bias=False),
    "ernie4_5_moe": dict(vocab_size=103424, hidden_size=2560, intermediate_size=12288, num_hidden_layers=3,
                         num_attention_heads=2, head_dim=None, tie_word_embeddings=True, use_bias=False,
                         moe_num_experts=16, moe_capacity=[64, 64, 64], moe_intermediate_size=0,
                         moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_end_index=-1,
                         moe_layer_interval=1, moe_k=2, moe_use_aux_free=True, num_nextn_predict_layers=1),
}

# The runtime, measured on CPU with `bench/memory_estimate.py` (it prints them again on each run):
# an idle process with python, paddle, paddleformers and the trainer imported (resident set) ...
CPU_PROCESS = 499 * MiB
# ... the kernel code and oneDNN state the first training step pages in (RSS it adds beyond paddle's
# allocator: 148 MiB on the tiny MoE, 144 MiB on the 0.3B; it does not grow with the model) ...
CPU_FIRST_STEP = 145 * MiB
# ... and the loaded tokenizer, per entry of config.json's vocab_size (144 MiB for ERNIE 4.5's 103,424).
TOKENIZER_BYTES_PER_ENTRY = 1460
# A GPU process: CUDA context, cuBLAS workspaces and the caching allocator's slack (an allowance,
# not measured: see the module docstring).
GPU_RUNTIME = 1024 * MiB

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4
ADAM_MOMENTS = 2 * FP32
INDEX = 8  # an int64 index


class ArchitectureError(ValueError):
    """A config.json whose architecture the estimate cannot follow, saying which key."""


@dataclass(frozen=True)
class Architecture:
    moe: bool
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    use_bias: bool
    tied: bool
    experts: int = 0
    top_k: int = 0
    shared_experts: int = 0
    moe_intermediate: int = 0
    moe_layers: frozenset = frozenset()
    capacity: float = 0.0  # the training capacity factor (tokens an expert takes, in units of N / experts)
    correction_bias: bool = False
    mtp_layers: int = 0

    @property
    def q(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    def is_moe_layer(self, index: int) -> bool:
        return index in self.moe_layers


def architecture(config: dict) -> Architecture:
    """The architecture of a config.json, with paddleformers' defaults for what it leaves out."""
    model_type = config.get("model_type")
    if model_type not in DEFAULTS:
        raise ArchitectureError(f"model_type {model_type!r}: the memory estimate knows {', '.join(DEFAULTS)}")
    c = {**DEFAULTS[model_type], **config}
    for key in ("moe_num_experts", "moe_intermediate_size"):
        if model_type == "ernie4_5_moe" and not isinstance(c[key], int):
            raise ArchitectureError(f"{key} {c[key]!r}: expert groups (vision-language models) are not estimated")
    heads = int(c["num_attention_heads"])
    head_dim = c["head_dim"] or c["hidden_size"] // heads
    common = dict(vocab=int(c["vocab_size"]), hidden=int(c["hidden_size"]), intermediate=int(c["intermediate_size"]),
                  layers=int(c["num_hidden_layers"]), heads=heads,
                  kv_heads=int(c.get("num_key_value_heads") or heads), head_dim=int(head_dim),
                  use_bias=bool(c["use_bias"]), tied=bool(c["tie_word_embeddings"]))
    if model_type == "ernie4_5":
        return Architecture(moe=False, **common)
    end = c["moe_layer_end_index"]
    end = common["layers"] - 1 if end == -1 else end
    start, interval = c["moe_layer_start_index"], c["moe_layer_interval"]
    mtp = int(c["num_nextn_predict_layers"] or 0)
    # MTP blocks are decoder layers numbered from 0, placed by the same rule.
    moe_layers = frozenset(i for i in range(max(common["layers"], mtp))
                           if (i + 1) % interval == 0 and start <= i <= end)
    capacity = c["moe_capacity"]
    return Architecture(moe=True, **common, experts=int(c["moe_num_experts"]), top_k=int(c["moe_k"]),
                        shared_experts=int(c["moe_num_shared_experts"] or 0),
                        moe_intermediate=int(c["moe_intermediate_size"]), moe_layers=moe_layers,
                        capacity=float(capacity[0]) if isinstance(capacity, (list, tuple)) and capacity else 0.0,
                        correction_bias=bool(c["moe_use_aux_free"]), mtp_layers=mtp)


# ---------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Param:
    """One parameter as paddleformers names it. `kind` says how model parallelism divides it:
    embedding (vocabulary split by tensor parallelism), split (tensor parallelism), expert (expert
    parallelism), replicated. `layer` is the decoder layer (None outside the layers; MTP layers
    count after the last). `fp32`: kept in fp32 whatever the precision (the router)."""

    name: str
    shape: tuple[int, ...]
    kind: str
    layer: int | None = None
    fp32: bool = False
    frozen: bool = False  # never trained (the correction bias, the carried MTP layers)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Linear:
    name: str
    fan_in: int
    fan_out: int
    kind: str
    layer: int
    token_share: float  # the share of a batch's tokens it sees (a routed expert sees top-k / experts)


def _decoder_layer(arch: Architecture, prefix: str, index: int, layer: int, frozen: bool
                   ) -> tuple[list[Param], list[Linear]]:
    h, params, linears = arch.hidden, [], []

    def linear(name: str, fan_in: int, fan_out: int, kind: str, share: float = 1.0, bias: bool = False):
        params.append(Param(f"{prefix}{name}.weight", (fan_in, fan_out), kind, layer, frozen=frozen))
        if bias:
            params.append(Param(f"{prefix}{name}.bias", (fan_out,), kind, layer, frozen=frozen))
        linears.append(Linear(prefix + name, fan_in, fan_out, kind, layer, share))

    linear("self_attn.qkv_proj", h, arch.q + 2 * arch.kv, "split", bias=arch.use_bias)
    linear("self_attn.o_proj", arch.q, h, "split", bias=arch.use_bias)
    if arch.is_moe_layer(index):
        mi, share = arch.moe_intermediate, _routed_slots(arch) / arch.experts
        params.append(Param(f"{prefix}mlp.gate.weight", (h, arch.experts), "replicated", layer, fp32=True,
                            frozen=frozen))
        for e in range(arch.experts):
            linear(f"mlp.experts.{e}.up_gate_proj", h, 2 * mi, "expert", share)
            linear(f"mlp.experts.{e}.down_proj", mi, h, "expert", share)
        if arch.shared_experts:
            linear("mlp.shared_experts.up_gate_proj", h, 2 * mi * arch.shared_experts, "split")
            linear("mlp.shared_experts.down_proj", mi * arch.shared_experts, h, "split")
        if arch.correction_bias:
            params.append(Param(f"{prefix}mlp.moe_statics.e_score_correction_bias", (1, arch.experts), "replicated",
                                layer, fp32=True, frozen=True))
    else:
        linear("mlp.up_gate_proj", h, 2 * arch.intermediate, "split")
        linear("mlp.down_proj", arch.intermediate, h, "split")
    for norm in ("input_layernorm", "post_attention_layernorm"):
        params.append(Param(f"{prefix}{norm}.weight", (h,), "replicated", layer, frozen=frozen))
    return params, linears


def inventory(arch: Architecture) -> tuple[list[Param], list[Linear]]:
    """Every parameter and every linear layer of the causal LM, in paddleformers' order."""
    h = arch.hidden
    params = [Param("model.embed_tokens.weight", (arch.vocab, h), "embedding")]
    linears: list[Linear] = []
    for i in range(arch.layers):
        p, lin = _decoder_layer(arch, f"model.layers.{i}.", i, i, frozen=False)
        params += p
        linears += lin
    params.append(Param("model.norm.weight", (h,), "replicated"))
    for d in range(arch.mtp_layers):  # carried through frozen (models/mtp.py)
        mtp_layer = arch.layers + d
        p, lin = _decoder_layer(arch, f"model.mtp_block.{d}.", d, mtp_layer, frozen=True)
        params += p
        linears += lin
    for d in range(arch.mtp_layers):
        params.append(Param(f"model.mtp_hidden_norm.{d}.weight", (h,), "replicated", arch.layers + d, frozen=True))
    for d in range(arch.mtp_layers):
        params.append(Param(f"model.mtp_emb_norm.{d}.weight", (h,), "replicated", arch.layers + d, frozen=True))
    for d in range(arch.mtp_layers):
        params.append(Param(f"model.mtp_linear_proj.{d}.weight", (2 * h, h), "split", arch.layers + d, frozen=True))
        if arch.use_bias:
            params.append(Param(f"model.mtp_linear_proj.{d}.bias", (h,), "split", arch.layers + d, frozen=True))
        linears.append(Linear(f"model.mtp_linear_proj.{d}", 2 * h, h, "split", arch.layers + d, 1.0))
    if not arch.tied:
        params.append(Param("lm_head.weight", (arch.vocab, h), "embedding"))
    return params, linears


def parameter_count(config: dict) -> int:
    return sum(p.numel for p in inventory(architecture(config))[0])


def _routed_slots(arch: Architecture) -> float:
    """Expert slots a token fills: top-k, unless the capacity factor lets experts take fewer."""
    return min(arch.top_k, arch.capacity) if arch.capacity > 0 else arch.top_k


# ---------------------------------------------------------------- activations

@dataclass(frozen=True)
class Step:
    """One micro-batch as the estimate needs it: tokens, sequence length, the compute dtype's bytes,
    the tensor-parallel degree, and the LoRA rank with the adapted linear layers."""

    tokens: int
    seq_len: int
    compute: int
    tensor_parallel: int = 1
    lora_rank: int = 0
    adapted: tuple[Linear, ...] = ()
    embedding_trains: bool = True


def _norm(arch: Architecture, c: int) -> float:
    """Unfused RMSNorm: the fp32 input and normalised values, the variance, the scaled output."""
    return arch.hidden * (FP32 + c) + FP32


def _attention(arch: Architecture, s: Step) -> float:
    """Per token: the qkv projection, RoPE (computed in fp32: the rotated halves and results, the
    cos/sin copies), the attention probabilities (heads x sequence, fp32 softmax, and a copy in the
    compute dtype under AMP), keys and values repeated to the query heads for GQA (which frees the
    unrepeated ones), the attention output and the output projection."""
    t, c = s.tensor_parallel, s.compute
    q, kv = arch.q / t, arch.kv / t
    probs = arch.heads / t * s.seq_len * (FP32 + (c if c != FP32 else 0))
    repeat = (2 * q - 2 * kv) * c if arch.heads != arch.kv_heads else 0
    return ((q + 2 * kv) * c + (2 * q + 2 * kv + 2 * arch.head_dim) * FP32 + probs + q * c
            + arch.hidden * c + repeat)


def _mlp(arch: Architecture, index: int, s: Step) -> float:
    """Per token: up_gate output (2 x intermediate), SiLU and the gated product, down output. An MoE
    layer runs that per routed slot on the gathered tokens (plus their weighting and int64 routing
    indices) and per shared expert, and keeps the router's fp32 logits, scores and choices."""
    h, c, t = arch.hidden, s.compute, s.tensor_parallel
    if not arch.is_moe_layer(index):
        return 4 * arch.intermediate / t * c + h * c
    mi = arch.moe_intermediate
    routed = _routed_slots(arch) * ((4 * mi + 2 * h) * c + 2 * INDEX + 5 * FP32)
    shared = 4 * mi * arch.shared_experts / t * c
    return routed + shared + h * c + 4 * arch.experts * FP32 + 4 * FP32


def layer_activations(arch: Architecture, index: int, s: Step, first: bool = False) -> float:
    """Bytes autograd keeps per token for decoder layer `index` (LoRA adds each adapter's r values).
    The first layer's input norm keeps only its output when nothing before it trains."""
    lora = sum(s.lora_rank * a.token_share for a in s.adapted if a.layer == index) * s.compute
    input_norm = arch.hidden * s.compute if first and not s.embedding_trains else _norm(arch, s.compute)
    return input_norm + _attention(arch, s) + _norm(arch, s.compute) + _mlp(arch, index, s) + lora


def head_activations(arch: Architecture, s: Step) -> float:
    """Per token outside the layers: the embedding output, the final norm, the loss's fp32 softmax
    over the vocabulary (split by tensor parallelism)."""
    return arch.hidden * s.compute + _norm(arch, s.compute) + arch.vocab / s.tensor_parallel * FP32


def logits_transient(arch: Architecture, s: Step) -> float:
    """Per token, at the end of the forward pass: the logits and the cross entropy's working copy
    (an fp32 cast of the logits too under AMP)."""
    v = arch.vocab / s.tensor_parallel
    return v * s.compute + v * FP32 + (v * FP32 if s.compute != FP32 else 0)


# ---------------------------------------------------------------- the estimate

@dataclass(frozen=True)
class Training:
    """What of a run decides its memory (trainer/memory.py fills it from a run config)."""

    batch_size: int
    seq_len: int
    precision: str = "fp32"
    device: str = "cpu"
    lora_rank: int = 0  # 0: full fine-tuning
    adapted: tuple[str, ...] = ()  # names of the linear layers that get adapters
    frozen: tuple[str, ...] = ()  # regexes of parameters full fine-tuning leaves fixed
    reference_model: bool = False  # full DPO keeps a frozen copy of the start
    dense_mask: bool = False  # DPO's batches carry a [batch, 1, seq, seq] fp32 attention mask
    gradient_accumulation: int = 1
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    expert_parallel: int = 1
    sharding_stage: int = 0  # 1: optimizer state, 2: + gradients, 3: + weights divided over the group
    sharding_degree: int = 1
    recompute: bool = False
    offload_optimizer: bool = False
    base_quant: str = "none"  # LoRA on a base held in low bit (models/quant_spec.py's widths)
    base_quant_group_size: int = -1


@dataclass
class Estimate:
    """Bytes per device (per process on CPU) at the step's peak, by part; `peak` is the largest of
    the training step, loading and saving, plus the runtime, and `phase` names which one it is."""

    parameters: int
    trainable: int
    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float
    runtime: float
    loading: float
    saving: float
    peak: float = 0.0
    phase: str = "training"

    @property
    def step(self) -> float:
        """The training step's tensors: static state plus activations."""
        return self.weights + self.gradients + self.optimizer + self.reference + self.activations


def quantized_layers(linears: list[Linear], width: str, group_size: int) -> dict[str, tuple[float, float]]:
    """For each linear layer a quantized base holds in low bit (by weight name): the bytes per weight
    value it holds (the integers, int4 packed two per byte, and the fp32 scales) and those of the
    largest transient of its forward and backward (models/quant.py dequantizes per call: the fp32
    values and the scaled ones, int4's int32 unpacking; the cast to a half-precision compute dtype
    is added by the caller)."""
    if width == "none":
        return {}
    spec = QuantSpec(width, group_size)
    found = {}
    for lin in linears:
        if keeps_full_precision(lin.name):
            continue
        bits = spec.bits_for(lin.name)
        rows = (lin.fan_in + 1) // 2 if bits == 4 else lin.fan_in
        groups = 1 if group_size == -1 else lin.fan_in // group_size
        found[lin.name + ".weight"] = ((rows + groups * FP32) / lin.fan_in, 2 * FP32 + (FP32 if bits == 4 else 0))
    return found


def estimate(config: dict, t: Training) -> Estimate:
    """The memory one device (one process on CPU) needs to train the model of `config` as `t` says."""
    arch = architecture(config)
    params, linears = inventory(arch)
    c = DTYPE_BYTES[t.precision]
    amp = c != FP32
    lora = t.lora_rank > 0
    names = set(t.adapted)
    adapted = tuple(lin for lin in linears if lin.name in names) if lora else ()
    frozen = [re.compile(p) for p in t.frozen]
    quantized = quantized_layers(linears, t.base_quant, t.base_quant_group_size) if lora else {}

    def trains(p: Param) -> bool:
        return not (lora or p.frozen or any(f.fullmatch(p.name) for f in frozen))

    stages = max(t.pipeline_parallel, 1)
    opt_share = t.sharding_degree if t.sharding_stage >= 1 else 1
    grad_share = t.sharding_degree if t.sharding_stage >= 2 else 1
    weight_share = t.sharding_degree if t.sharding_stage >= 3 else 1
    grad_bytes = FP32 if amp else c  # master gradients under AMP
    optimizer_bytes = ADAM_MOMENTS + (FP32 if amp else 0)  # moments, and the master weights under AMP
    step = Step(tokens=t.batch_size * t.seq_len, seq_len=t.seq_len, compute=c, tensor_parallel=t.tensor_parallel,
                lora_rank=t.lora_rank, adapted=adapted,
                embedding_trains=trains(params[0]))
    n = step.tokens

    best: dict | None = None
    for stage in range(stages):
        held = [p for p in params if stage in _stages_of(arch, p.name, p.layer, stages)]
        loaded = sum(p.numel / _divisor(p, t) * (FP32 if p.fp32 else c) for p in held) / weight_share
        weights = sum(p.numel / _divisor(p, t) * (quantized[p.name][0] if p.name in quantized else
                                                   FP32 if p.fp32 else c) for p in held) / weight_share
        train_numel = sum(p.numel / _divisor(p, t) for p in held if trains(p))
        lora_numel = sum((lin.fan_in + lin.fan_out) * t.lora_rank for lin in adapted
                         if stage in _stages_of(arch, lin.name, lin.layer, stages)) / t.tensor_parallel
        train_numel += lora_numel
        layers = sorted({p.layer for p in held if p.layer is not None and p.layer < arch.layers})
        saved = [layer_activations(arch, i, step, first=(i == 0)) * n for i in layers]
        kept = len(saved) * arch.hidden * c * n + max(saved) if t.recompute and saved else sum(saved)
        # 1F1B pipelining: stage s holds the activations of up to (stages - s) micro-batches
        kept *= min(stages - stage, max(t.gradient_accumulation, 1))
        if t.dense_mask:
            kept += t.batch_size * t.seq_len ** 2 * FP32
        transient = embedding_end = 0.0
        if stage == stages - 1:
            kept += head_activations(arch, step) * n
            head_grad = arch.vocab / t.tensor_parallel * arch.hidden * grad_bytes if step.embedding_trains else 0.0
            transient = max(logits_transient(arch, step) * n, head_grad)
            if arch.tied:  # the tied embedding's two gradient halves (output head, input lookup) meet at the end
                embedding_end = 2 * head_grad + arch.hidden * c * n
        dequantized = [p.numel / _divisor(p, t) * (quantized[p.name][1] + (c if amp else 0)) for p in held
                       if p.name in quantized]
        transient = max([transient, *dequantized])
        part = {"weights": weights + lora_numel * c / weight_share, "base": weights, "loaded": loaded,
                "gradients": train_numel * grad_bytes / grad_share,
                "optimizer": 0.0 if t.offload_optimizer else train_numel * optimizer_bytes / opt_share,
                "optimizer_file": train_numel * optimizer_bytes / opt_share,
                "reference": weights if t.reference_model else 0.0,
                "activations": max(kept + transient, embedding_end), "trainable": train_numel}
        part["step"] = sum(part[k] for k in ("weights", "gradients", "optimizer", "reference", "activations"))
        if best is None or part["step"] > best["step"]:
            best = part
    assert best is not None
    static = best["step"] - best["activations"]
    embedding = arch.vocab * arch.hidden * c / t.tensor_parallel
    # from_pretrained holds the built model and the loaded weights, and one more embedding; full DPO
    # then loads its reference model beside the policy. A quantized base is loaded in full precision
    # and quantized after, layer by layer.
    loading = 2 * best["loaded"] + embedding + (best["base"] if t.reference_model else 0.0)
    # saving writes a host copy of its largest file: the model (a tied embedding twice, as
    # paddleformers writes lm_head too) or a checkpoint's optimizer state
    model_file = best["trainable"] * c if lora else best["base"] + (embedding if arch.tied else 0.0)
    saving = static + max(model_file, best["optimizer_file"])

    if t.device == "cpu":
        base = CPU_PROCESS + TOKENIZER_BYTES_PER_ENTRY * arch.vocab
        runtime = base + CPU_FIRST_STEP
        phases = {"loading": base + loading, "training": runtime + best["step"], "saving": runtime + saving}
    else:  # a save's host copy does not take device memory
        runtime = GPU_RUNTIME
        phases = {"loading": runtime + loading, "training": runtime + best["step"]}
    phase = max(phases, key=phases.get)
    return Estimate(parameters=sum(p.numel for p in params), trainable=round(best["trainable"]),
                    weights=best["weights"], gradients=best["gradients"], optimizer=best["optimizer"],
                    reference=best["reference"], activations=best["activations"], runtime=runtime,
                    loading=loading, saving=saving, peak=phases[phase], phase=phase)


def _divisor(p: Param, t: Training) -> int:
    return {"embedding": t.tensor_parallel, "split": t.tensor_parallel, "expert": t.expert_parallel}.get(p.kind, 1)


def _stages_of(arch: Architecture, name: str, layer: int | None, stages: int) -> set[int]:
    """Pipeline stages holding a parameter: layers evenly divided, the embedding on the first stage
    and the output head (tied: its copy of the embedding) and final norm on the last; MTP layers
    count after the last layer."""
    last = stages - 1
    if layer is None:
        if name == "model.embed_tokens.weight":
            return {0, last} if arch.tied else {0}
        return {last}
    return {min(layer // math.ceil(arch.layers / stages), last)}
