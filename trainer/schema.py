"""The run-config schema: every option of a training run as a typed dataclass field.

Each leaf has a dotted key (`optim.learning_rate`), a type, a default, a label and help text, and
its limits; `iter_fields()` lists them in schema order. This is the one list of keys: validation,
YAML, overrides and the command line (trainer/config.py) and the web UI's form (webui/form.py) are
all derived from it. Never imports paddle.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from models.chat_template import TEMPLATES
from models.image_facts import DEFAULT_MIN_PIXELS, FACTOR
from models.quant_spec import GROUP_SIZES, WIDTHS
from trainer.data.formats import FORMATS

DATA_FORMATS = ("auto", *FORMATS)
# the preference losses a DPO run offers (trainer/dpo_losses.py, docs/dpo.md)
DPO_LOSSES = ("sigmoid", "ipo", "kto_pair", "simpo", "orpo", "hinge")


def _opt(default: Any, help: str, *, label: str = "", choices: tuple = (), minimum: float | None = None,
         maximum: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,
         advanced: bool = False, depends_on: tuple[str, str] | None = None,
         normalize: Callable[[Any], Any] | None = None) -> Any:
    meta = {"help": help, "label": label, "choices": choices, "minimum": minimum, "maximum": maximum,
            "min_exclusive": min_exclusive, "max_exclusive": max_exclusive, "advanced": advanced,
            "depends_on": depends_on, "normalize": normalize}
    if isinstance(default, list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _id_list_text(value: Any) -> Any:
    """`0`, `[0, 1]` or ` 0, 1` as the text `0,1`; anything else is left for the type check."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str):
        return ",".join(part.strip() for part in value.split(",") if part.strip())
    return value


@dataclass
class DatasetEntry:
    path: str = _opt("", "A data file (JSONL, JSON, CSV or Parquet).", label="File")
    format: str = _opt("auto", "The file's format; auto detects it.", choices=DATA_FORMATS)
    probability: float = _opt(1.0, "Relative weight when mixing several files (need not sum to 1).",
                              minimum=0, min_exclusive=True)


@dataclass
class ModelSection:
    name_or_path: str = _opt("ernie-4.5-tiny-moe", "A built-in model name, a local checkpoint directory, or a "
                             "hub repo id (owner/name), downloaded first with Download.",
                             label="Model")
    template: str = _opt("auto", "Chat template: auto keeps the model's own; ernie is ERNIE 4.5's thinking "
                         "format (<think> reasoning, then the answer); ernie_nothink the plain one. The "
                         "output ships the template it was trained with.",
                         choices=("auto", *TEMPLATES), advanced=True)


@dataclass
class LoraSection:
    # Every ERNIE 4.5 linear layer has a side of at most 8192 (the largest hidden size): a higher rank
    # adds no capacity, only memory.
    rank: int = _opt(8, "LoRA rank r.", label="LoRA rank", minimum=1, maximum=8192,
                     depends_on=("finetuning.type", "lora"))
    alpha: float = _opt(16.0, "LoRA alpha; the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).",
                        label="LoRA alpha", minimum=0, min_exclusive=True,
                        depends_on=("finetuning.type", "lora"))
    dropout: float = _opt(0.0, "Dropout on the LoRA input.", label="LoRA dropout", minimum=0, maximum=1,
                          max_exclusive=True, advanced=True, depends_on=("finetuning.type", "lora"))
    target_modules: list[str] = _opt(
        ["all-linear"],
        "Layers that get adapters: module names or regular expressions (qkv_proj, o_proj, up_gate_proj, "
        "down_proj, ...); all-linear means every linear layer. A comma-separated string is accepted.",
        label="LoRA target modules", advanced=True, depends_on=("finetuning.type", "lora"))
    rslora: bool = _opt(False, "Rank-stabilised LoRA scaling (alpha / sqrt(r)).", label="rsLoRA",
                        advanced=True, depends_on=("finetuning.type", "lora"))


@dataclass
class FinetuningSection:
    type: str = _opt("lora", "Train low-rank adapters (lora) or every weight (full).",
                     label="Fine-tuning type", choices=("lora", "full"))
    lora: LoraSection = field(default_factory=LoraSection)
    base_quant: str = _opt("none", "Hold the frozen base model in low bit while the adapters train in full "
                           "precision: wint8 (int8 weights), wint4 (int4) or wint4/8 (ERNIEKit's WINT8MIX: int4 "
                           "for the routed experts, int8 for the other linear layers). Embeddings, output head, "
                           "router and norms stay in full precision; the base is loaded in full precision first, "
                           "then quantized. The adapter also applies to the full-precision base. LoRA only; needs "
                           "gpu.tensor_parallel_degree 1.", label="Quantized base", choices=("none", *WIDTHS),
                           depends_on=("finetuning.type", "lora"))
    base_quant_group_size: int = _opt(-1, "Scales of the quantized base: -1 = one scale per output channel; 64 or "
                                      "128 = one per that many input rows of each channel (finer, must divide "
                                      "every quantized layer's input rows).", label="Quantized base group size",
                                      choices=GROUP_SIZES, advanced=True, depends_on=("finetuning.type", "lora"))


@dataclass
class DpoSection:
    beta: float = _opt(0.1, "DPO beta: how far the policy may move from the reference model (the scale of the "
                       "margin in every loss; for orpo the weight of the odds-ratio loss).",
                       label="DPO beta", minimum=0, min_exclusive=True,
                       depends_on=("method", "dpo"))
    loss_type: str = _opt("sigmoid", "Preference loss, with m = log-probability of the chosen reply minus that of "
                          "the rejected one, policy minus reference: sigmoid -log σ(β·m) (DPO); hinge "
                          "max(0, 1 - β·m); ipo (m - 1/(2β))² on per-token mean log-probabilities (IPO); kto_pair "
                          "the paired KTO loss, which needs the reference model; simpo -log σ(β·m - γ) on "
                          "per-token mean log-probabilities of the policy alone (SimPO); orpo the chosen reply's "
                          "SFT loss + β × the odds-ratio loss (ORPO). simpo and orpo need no reference model: "
                          "none is loaded or run.", label="DPO loss", choices=DPO_LOSSES,
                          advanced=True, depends_on=("method", "dpo"))
    simpo_gamma: float = _opt(0.5, "SimPO's target margin γ between the chosen and the rejected reply's mean "
                              "log-probabilities, scaled by β. simpo only.", label="SimPO gamma", minimum=0,
                              advanced=True, depends_on=("method", "dpo"))
    reference_free: bool = _opt(False, "Reference-free DPO: score the policy alone (reference log-probabilities "
                                "taken as 0), so no reference model is loaded and no adapter-off pass runs. For "
                                "sigmoid, ipo and hinge; kto_pair needs the reference; simpo and orpo never use one.",
                                label="Reference-free", advanced=True, depends_on=("method", "dpo"))
    sft_loss_ratio: float = _opt(0.0, "Weight of the SFT loss on the chosen replies (their per-token negative "
                                 "log-likelihood) added to the preference loss; 0 adds none. Not with orpo, "
                                 "whose loss holds it at weight 1.", label="SFT loss weight", minimum=0,
                                 advanced=True, depends_on=("method", "dpo"))


_CHECKPOINT_VALUE = "; -1 keeps the checkpoint's value, 0 turns it off"
_MOE_ONLY = " MoE models only."


@dataclass
class MoeSection:
    aux_loss_coef: float = _opt(-1.0, "Weight of the router's load-balancing loss" + _CHECKPOINT_VALUE + "."
                                + _MOE_ONLY, label="Load-balancing loss", advanced=True)
    z_loss_coef: float = _opt(-1.0, "Weight of the router z-loss (keeps gate logits small)" + _CHECKPOINT_VALUE
                              + "." + _MOE_ONLY, label="Router z-loss", advanced=True)
    orthogonal_loss_coef: float = _opt(-1.0, "Weight of the router orthogonal loss (pushes the experts' gate "
                                       "vectors apart)" + _CHECKPOINT_VALUE + "." + _MOE_ONLY,
                                       label="Router orthogonal loss", advanced=True)
    bias_update_rate: float = _opt(0.0, "Aux-loss-free balancing: after every optimizer step each expert's "
                                   "routing correction bias moves by this much, up for experts chosen less "
                                   "than average, down for those chosen more (ERNIE 4.5 used 1e-3); 0 keeps "
                                   "the biases fixed. Full fine-tuning only: a LoRA adapter does not carry "
                                   "the biases." + _MOE_ONLY, label="Balancing bias update rate",
                                   minimum=0, advanced=True)
    token_balanced_loss: bool = _opt(False, "Multimodal token-balanced loss: each sequence's loss is divided by "
                                     "its whole length (prompt and answer, text and image tokens) rather than "
                                     "by the tokens that carry a loss, so sequences with short answers do not "
                                     "weigh more. SFT only.", label="Token-balanced loss", advanced=True)
    freeze_router: bool = _opt(False, "Keep the router (gate) weights fixed in full fine-tuning; LoRA never "
                               "trains the router." + _MOE_ONLY, label="Freeze router", advanced=True)
    train_experts: str = _opt("all", "Which expert FFNs train: all of them, only the shared experts, or none "
                              "(attention and dense layers only). With LoRA this chooses where adapters "
                              "go." + _MOE_ONLY, label="Experts trained", choices=("all", "shared", "none"),
                              advanced=True)


_VL_ONLY = " Vision-language models only."


@dataclass
class VlSection:
    freeze_vision: bool = _opt(False, "Keep the vision transformer's weights fixed (no adapters on it with "
                               "LoRA)." + _VL_ONLY, label="Freeze vision transformer")
    freeze_adapter: bool = _opt(False, "Keep the adapter (the resampler that maps image features into the "
                                "language model) fixed (no adapters on it with LoRA)." + _VL_ONLY,
                                label="Freeze adapter")
    freeze_lm: bool = _opt(False, "Keep the language model (embeddings, decoder layers, output head) fixed, "
                           "training only the vision side." + _VL_ONLY, label="Freeze language model")
    vision_lr_ratio: float = _opt(1.0, "The vision transformer learns at the learning rate times this "
                                  "(ERNIEKit's vit_lr_ratio)." + _VL_ONLY, label="Vision learning-rate ratio",
                                  minimum=0, min_exclusive=True, maximum=10, advanced=True)
    min_pixels: int = _opt(DEFAULT_MIN_PIXELS, "Smallest image area in pixels: a smaller image is a data "
                           "problem; each 28x28 block is one image token." + _VL_ONLY,
                           label="Min pixels", minimum=FACTOR * FACTOR, advanced=True)
    max_pixels: int = _opt(1280 * FACTOR * FACTOR, "Largest image area in pixels: a larger image is a data "
                           "problem (in chat it is scaled down); 1280 image tokens by default." + _VL_ONLY,
                           label="Max pixels", minimum=FACTOR * FACTOR, advanced=True)


@dataclass
class DataSection:
    train: list[DatasetEntry] = _opt([], "Training files, mixed by probability (for a vision-language model, "
                                     "image files and text-only files mix the same way).",
                                     label="Training data")
    eval: list[DatasetEntry] = _opt([], "Evaluation files (optional).", label="Evaluation data")
    eval_split: float = _opt(0.0, "Fraction of the training data held out for evaluation when no "
                             "evaluation files are given.", minimum=0, maximum=0.5, max_exclusive=True)
    max_seq_len: int = _opt(1024, "Longest training sequence in tokens (prompt and answer).", minimum=16)
    max_prompt_len: int = _opt(512, "Longest prompt of a preference pair in tokens; must be below max_seq_len. "
                               "DPO only: SFT rows are limited by max_seq_len alone.", minimum=8,
                               depends_on=("method", "dpo"))
    truncation: str = _opt("drop_oldest_turns", "What to do with a row longer than max_seq_len.",
                           choices=("drop_oldest_turns", "truncate_end", "skip_row"), advanced=True)
    skip_invalid: bool = _opt(False, "Skip rows that fail validation instead of refusing the file.",
                              advanced=True)


@dataclass
class OptimSection:
    learning_rate: float = _opt(1e-4, "Peak learning rate.", minimum=0, min_exclusive=True)
    lr_scheduler: str = _opt("cosine", "Learning-rate schedule after warmup.", label="LR scheduler",
                             choices=("linear", "cosine", "constant"))
    warmup_steps: int = _opt(0, "Linear warmup steps (takes precedence over warmup_ratio).", minimum=0)
    warmup_ratio: float = _opt(0.0, "Warmup as a fraction of all steps.", minimum=0, maximum=1,
                               max_exclusive=True, advanced=True)
    weight_decay: float = _opt(0.0, "AdamW weight decay.", minimum=0, advanced=True)
    num_train_epochs: float = _opt(3.0, "Passes over the training data (fractions allowed).",
                                   label="Epochs", minimum=0, min_exclusive=True)
    max_steps: int = _opt(-1, "Optimizer steps to train; -1 uses the number of epochs.")
    per_device_batch_size: int = _opt(1, "Sequences per process per step.", label="Batch size per device",
                                      minimum=1)
    gradient_accumulation_steps: int = _opt(1, "Batches accumulated into one optimizer step.", minimum=1)
    max_grad_norm: float = _opt(1.0, "Gradient clipping norm; 0 turns clipping off.", minimum=0,
                                advanced=True)
    seed: int = _opt(42, "Random seed.", minimum=0, maximum=2**32 - 1, advanced=True)  # numpy's seed range


@dataclass
class LoggingSection:
    logging_steps: int = _opt(1, "Log loss and learning rate every N steps.", minimum=1)
    save_steps: int = _opt(50, "Save a checkpoint every N steps.", minimum=1)
    eval_steps: int = _opt(0, "Evaluate every N steps; 0 never evaluates during training.", minimum=0)
    save_total_limit: int = _opt(2, "Checkpoints kept; older ones are deleted.", minimum=1, advanced=True)


@dataclass
class EvalSection:
    after_training: bool = _opt(False, "When training ends, answer the run's evaluation rows (data.eval, else the "
                                "data.eval_split held out) with the base model and the tuned one, and score both "
                                "(exact match, ROUGE, BLEU, perplexity) into JOB/eval.",
                                label="Evaluate after training")
    max_new_tokens: int = _opt(128, "Longest answer, in tokens, of that evaluation.", label="Eval answer length",
                               minimum=1, depends_on=("eval.after_training", True), advanced=True)


@dataclass
class DevicesSection:
    device: str = _opt("cpu", "Run on CPU or GPU.", choices=("cpu", "gpu"))
    gpu_ids: str = _opt("", "Comma-separated GPU ids, e.g. 0,1; required on GPU, one per process.",
                        label="GPU ids", depends_on=("devices.device", "gpu"), normalize=_id_list_text)
    nproc: int = _opt(1, "Processes per node (data-parallel ranks); on CPU several ranks share the CPU.",
                      label="Processes per node", minimum=1)
    nnodes: int = _opt(1, "Number of machines; this one is node 0, and the studio shows the command each other "
                          "node runs.", label="Nodes", minimum=1, advanced=True)
    master: str = _opt("", "host:port of this machine (node 0) that the other nodes can reach; required when "
                           "nnodes > 1.", label="Master address", advanced=True)


_GPU_ONLY = " GPU runs only."


@dataclass
class GpuSection:
    """How a model too large for one GPU is spread over several (paddleformers' hybrid parallelism),
    and what trades speed for GPU memory. The degrees multiply: tensor x pipeline x sharding (x plain
    data parallelism for the rest) covers every process of the run."""

    tensor_parallel_degree: int = _opt(1, "Tensor parallelism: each layer's weight matrices are split across this "
                                       "many GPUs, which work on every token together (fast links needed: keep it "
                                       "within a node); 1 turns it off. Must divide the attention heads."
                                       + _GPU_ONLY, label="Tensor-parallel degree", minimum=1, advanced=True)
    pipeline_parallel_degree: int = _opt(1, "Pipeline parallelism: the layers are cut into this many stages, each on "
                                         "its own GPUs, and micro-batches flow through them; 1 turns it off."
                                         + _GPU_ONLY, label="Pipeline-parallel degree", minimum=1, advanced=True)
    sharding: str = _opt("none", "Sharded data parallelism (ZeRO): stage1 splits the optimizer state across the "
                         "sharding GPUs, stage2 the gradients too, stage3 the weights too; none keeps a full copy "
                         "on every data-parallel GPU. Has no effect with one process." + _GPU_ONLY,
                         label="Sharding stage", choices=("none", "stage1", "stage2", "stage3"), advanced=True)
    sharding_parallel_degree: int = _opt(-1, "GPUs one sharding group spans; -1 uses every process left after tensor "
                                         "and pipeline parallelism, a smaller number leaves plain data parallelism "
                                         "between the groups." + _GPU_ONLY, label="Sharding degree",
                                         minimum=-1, advanced=True)
    expert_parallel_degree: int = _opt(1, "Expert parallelism: the routed experts of each MoE layer are divided "
                                       "across this many GPUs, tokens travel to their experts; 1 keeps every "
                                       "expert on every GPU. MoE models only; paddleformers needs sharding over "
                                       "the same GPUs (no plain data parallelism)." + _GPU_ONLY,
                                       label="Expert-parallel degree", minimum=1, advanced=True)
    recompute: bool = _opt(False, "Recompute each decoder layer's activations during the backward pass instead of "
                           "keeping them: much less GPU memory for long sequences, about a third more compute."
                           + _GPU_ONLY, label="Recompute activations", advanced=True)
    offload_optimizer: bool = _opt(False, "Keep the optimizer state in CPU memory and bring it to the GPU only for "
                                   "the update: less GPU memory, slower steps. Not with plain data parallelism "
                                   "(combine it with sharding)." + _GPU_ONLY, label="Offload optimizer to CPU",
                                   advanced=True)


@dataclass
class OutputSection:
    dir: str = _opt("", "Where the final model or adapter is written; empty uses the job directory.",
                    label="Output directory", advanced=True)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    method: str = _opt("sft", "Supervised fine-tuning (sft) or preference optimisation (dpo).",
                       choices=("sft", "dpo"))
    finetuning: FinetuningSection = field(default_factory=FinetuningSection)
    dpo: DpoSection = field(default_factory=DpoSection)
    moe: MoeSection = field(default_factory=MoeSection)
    vl: VlSection = field(default_factory=VlSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    precision: str = _opt("fp32", "Training precision; bf16 and fp16 need a GPU.",
                          choices=("fp32", "bf16", "fp16"))
    logging: LoggingSection = field(default_factory=LoggingSection)
    eval: EvalSection = field(default_factory=EvalSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    gpu: GpuSection = field(default_factory=GpuSection)
    output: OutputSection = field(default_factory=OutputSection)


@dataclass(frozen=True)
class FieldSpec:
    """One leaf option: what the web UI needs to draw a widget for it and what validation enforces."""

    key: str
    type: str  # str | int | float | bool | list[str] | datasets (a list of DatasetEntry)
    default: Any
    label: str
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    group: str = ""
    advanced: bool = False
    depends_on: tuple[str, str] | None = None  # (key, value): only relevant when that key has that value
    item_fields: tuple[FieldSpec, ...] = ()  # for datasets: the fields of one entry
    # turns the YAML value into the field's type before it is checked (e.g. GPU ids 0 or [0, 1] -> "0,1")
    normalize: Callable[[Any], Any] | None = None


# the UI's form groups; a key not listed here is grouped by its first part
_GROUPS = {"method": "method", "finetuning": "method", "dpo": "method", "precision": "optim", "moe": "moe",
           "gpu": "devices", "eval": "logging"}

_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", list[str]: "list[str]",
               list[DatasetEntry]: "datasets"}


def _leaf_specs(cls: type, prefix: str) -> list[FieldSpec]:
    hints = typing.get_type_hints(cls)
    specs: list[FieldSpec] = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs += _leaf_specs(hint, key + ".")
            continue
        meta = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kind = _TYPE_NAMES[hint]
        specs.append(FieldSpec(
            key=key, type=kind, default=default,
            label=meta["label"] or f.name.replace("_", " ").capitalize(), help=meta["help"],
            choices=meta["choices"], minimum=meta["minimum"], maximum=meta["maximum"],
            min_exclusive=meta["min_exclusive"], max_exclusive=meta["max_exclusive"],
            group=_GROUPS.get(key.split(".")[0], key.split(".")[0]), advanced=meta["advanced"],
            depends_on=meta["depends_on"], normalize=meta["normalize"],
            item_fields=tuple(_leaf_specs(DatasetEntry, "")) if kind == "datasets" else (),
        ))
    return specs


FIELDS = _leaf_specs(RunConfig, "")
BY_KEY = {spec.key: spec for spec in FIELDS}
SECTIONS = sorted({key.rsplit(".", i)[0] for key in BY_KEY for i in range(1, key.count(".") + 1)})
ENTRY_FIELDS = {spec.key: spec for spec in _leaf_specs(DatasetEntry, "")}


def iter_fields() -> list[FieldSpec]:
    """Every leaf option in schema order."""
    return [dataclasses.replace(spec, default=copy.deepcopy(spec.default)) for spec in FIELDS]


def field_spec(key: str) -> FieldSpec:
    """The FieldSpec of one dotted key (KeyError for an unknown key)."""
    spec = BY_KEY[key]
    return dataclasses.replace(spec, default=copy.deepcopy(spec.default))
