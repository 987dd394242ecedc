"""Runs one training job (`python -m trainer run`): SFT or DPO, full or LoRA, through paddleformers'
Trainer and DPOTrainer.

The job directory is the whole interface (DESIGN.md): this process writes status.json (running,
then completed, stopped or failed with the error), metrics.jsonl through `JobCallback`, resumable
checkpoints under checkpoints/, and the final model or adapter with its tokenizer under output/.
On SIGTERM or a STOP file it finishes the step, saves a checkpoint, writes `stopped` and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

from models.checkpoints import (
    ModelNotFound, carry_config_keys, copy_tokenizer_files, is_adapter, publish, remove_save_leftovers, staged,
    staging_dir, write_adapter_info,
)
from models.quant_spec import QuantError
from plumbing.files import atomic_write_text
from trainer.config import ConfigError, RunConfig
from trainer.data.readers import DataError
from trainer.data.tokenize import TokenizationError
from trainer.jobfiles import (
    COMPLETED, FAILED, RUNNING, STOPPED, JobPaths, checkpoint_step, read_status, stop_requested, write_status,
)
from trainer.parallel import model_config_overrides, uses_model_parallelism
from trainer.parallel import training_arguments as parallel_training_arguments
from trainer.quantized_base import quantize_base



def rank() -> int:
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def world_size() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def log(message: str) -> None:
    print(f"[studio] {message}", flush=True)


# Linear layers of the routed and of the shared experts, by parameter name.
ROUTED_EXPERTS = r".*\.mlp\.experts\..*"
SHARED_EXPERTS = r".*\.mlp\.shared_experts\..*"
MOE_COEFFICIENTS = {"aux_loss_coef": "router_aux_loss_coef", "z_loss_coef": "router_z_loss_coef",
                    "orthogonal_loss_coef": "moe_orthogonal_loss_lambda"}


def frozen_experts(cfg: RunConfig) -> list[str]:
    """Patterns of the expert layers `moe.train_experts` leaves out of training."""
    return {"all": [], "shared": [ROUTED_EXPERTS], "none": [ROUTED_EXPERTS, SHARED_EXPERTS]}[cfg.moe.train_experts]


def layer_name(path: str) -> str:
    """A layer's own name: the last part of its path that is not a list index (`qkv_proj` of
    `...self_attn.qkv_proj`, `mtp_linear_proj` of `model.mtp_linear_proj.0`)."""
    return next((part for part in reversed(path.split(".")) if not part.isdigit()), path)


def lora_target_patterns(model, targets: list[str], exclude: list[str] = ()) -> list[str]:
    """Regexes for LoRAModel; a plain name matches layers by `layer_name`. Layers matching an
    `exclude` pattern get no adapter, nor does the multi-token-prediction layer, which is carried
    through unchanged (models/mtp.py). Every target must hit at least one linear layer, or the
    config is wrong. Under tensor parallelism the linear layers are paddle's column- and
    row-parallel ones, which paddleformers' LoRA adapts as well."""
    import paddle.nn as nn
    from paddleformers.transformers import linear_utils

    linear = (nn.Linear, linear_utils.ColumnParallelLinear, linear_utils.RowParallelLinear,
              linear_utils.ColumnSequenceParallelLinear, linear_utils.RowSequenceParallelLinear)
    layers = dict(model.named_sublayers())
    patterns = target_patterns([name for name, layer in layers.items() if isinstance(layer, linear)],
                               targets, exclude)
    # LoRA replaces whatever a pattern matches, and a name can be a linear layer in one place and a
    # container in another (a VL model's resampler `mlp` is a Linear, each decoder layer's `mlp` a
    # MoE block; `spatial_linear` a Sequential with activations): those are ruled out by name
    others = [name for name, layer in layers.items() if not isinstance(layer, linear)]
    guarded = []
    for pattern in patterns:
        clashes = [re.escape(name) for name in others if re.fullmatch(pattern, name)]
        guarded.append(f"(?!(?:{'|'.join(clashes)})$){pattern}" if clashes else pattern)
    return guarded


def target_patterns(linear_layers: list[str], targets: list[str], exclude: list[str] = ()) -> list[str]:
    """`lora_target_patterns` for a model given by the names of its linear layers (the memory
    estimate lists them from config.json)."""
    from models.mtp import MTP_MODULES

    all_linear = [name for name in linear_layers if not name.endswith(".gate")]
    skipped = [*exclude, MTP_MODULES]
    linear_names = [name for name in all_linear if not any(re.fullmatch(p, name) for p in skipped)]
    short_names = sorted({layer_name(name) for name in linear_names})
    if "all-linear" in targets:
        targets = [t for t in targets if t != "all-linear"] + short_names
    skip = "".join(f"(?!{p})" for p in skipped)
    patterns = []
    for target in dict.fromkeys(targets):
        plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target)
        pattern = rf".*\.{re.escape(target)}(?:\.\d+)*" if plain else target
        try:
            matched = any(re.fullmatch(pattern, name) for name in linear_names)
        except re.error as exc:
            raise ConfigError([("finetuning.lora.target_modules", f"{target!r} is not a valid pattern: {exc}")])
        if not matched:
            if any(re.fullmatch(pattern, name) and re.fullmatch(MTP_MODULES, name) for name in all_linear):
                left_out = " (the multi-token-prediction layer is carried through unchanged, without adapters)"
            else:
                left_out = " (moe.train_experts leaves expert layers without adapters)" if exclude else ""
            raise ConfigError([(
                "finetuning.lora.target_modules",
                f"{target!r} matches no linear layer of this model{left_out}; its linear layers are named "
                f"{', '.join(short_names)}",
            )])
        patterns.append(f"{skip}(?:{pattern})")
    return patterns


def moe_overrides(cfg: RunConfig, model_dir: Path) -> dict:
    """Model-config values the run's `moe` section sets; MoE options on a dense model are refused."""
    from models.checkpoints import is_moe
    from trainer.config import field_spec

    if not is_moe(model_dir):
        changed = [f"moe.{name}" for name in (*MOE_COEFFICIENTS, "bias_update_rate", "freeze_router", "train_experts")
                   if getattr(cfg.moe, name) != field_spec(f"moe.{name}").default]
        if changed:
            raise ConfigError([(key, f"{key}: {model_dir} is a dense model without experts; this option is for "
                                     f"MoE models") for key in changed])
        return {}
    overrides = {ours: getattr(cfg.moe, name) for name, ours in MOE_COEFFICIENTS.items()
                 if getattr(cfg.moe, name) != -1}
    if cfg.moe.bias_update_rate > 0:
        overrides["moe_use_aux_free"] = True  # creates zero correction biases where the checkpoint has none
    return overrides


def freeze_moe_parts(cfg: RunConfig, model) -> None:
    """Full fine-tuning: keep the router and the experts `moe.train_experts` leaves out fixed."""
    from models.moe_dispatch import moe_blocks

    frozen = frozen_experts(cfg)
    for _, block in moe_blocks(model):
        for parameter in block.gate.parameters() if cfg.moe.freeze_router else []:
            parameter.stop_gradient = True
    for name, parameter in model.named_parameters():
        if any(re.fullmatch(p, name) for p in frozen):
            parameter.stop_gradient = True


def build_model(cfg: RunConfig, model_dir: Path, dtype: str, parallel_args=None):
    """The model to train, LoRA-wrapped or with its frozen parts fixed. `parallel_args`: the
    TrainingArguments of a model-parallel run, made first (trainer/parallel.py)."""
    from paddleformers.peft import LoRAConfig, LoRAModel

    from models.loader import load_model
    from models.mtp import carried_layers

    from trainer.vision import apply_vl_options, is_vision_model, lora_exclusions

    vision = is_vision_model(model_dir)
    overrides = {**moe_overrides(cfg, model_dir), **model_config_overrides(cfg.gpu, parallel_args)}
    model = load_model(model_dir, dtype=dtype, config_overrides=overrides,
                       pipeline=cfg.gpu.pipeline_parallel_degree > 1)
    if cfg.finetuning.type == "lora":
        lora = cfg.finetuning.lora
        lora_config = LoRAConfig(
            target_modules=lora_target_patterns(model, lora.target_modules,
                                                frozen_experts(cfg) + (lora_exclusions(cfg.vl) if vision else [])),
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            rslora=lora.rslora,
            merge_weights=False,
            dtype=dtype,
            base_model_name_or_path=str(model_dir),
        )
        model = LoRAModel(model, lora_config)
        model.mark_only_lora_as_trainable()
    else:
        freeze_moe_parts(cfg, model)
    if vision:
        apply_vl_options(cfg.vl, model.model if cfg.finetuning.type == "lora" else model)
    trainable = sum(p.numel().item() for p in model.parameters() if not p.stop_gradient)
    total = sum(p.numel().item() for p in model.parameters())
    log(f"model: {model_dir} ({cfg.finetuning.type}); trainable parameters {trainable:,} of {total:,}")
    if carried_layers(model):
        log(f"model: its {carried_layers(model)} multi-token-prediction layer(s) are carried through unchanged "
            "(frozen, no adapters; see docs/real_models.md)")
    quantize_base(cfg.finetuning.base_quant, cfg.finetuning.base_quant_group_size, model, log)
    return model


def check_precision(cfg: RunConfig) -> str:
    import paddle

    if cfg.precision == "fp32":
        return "float32"
    if not paddle.is_compiled_with_cuda():
        raise ConfigError([("precision", f"{cfg.precision} needs a GPU build of paddle (paddlepaddle-gpu); "
                                         "this one is CPU-only; use fp32")])
    if cfg.precision == "bf16" and not paddle.amp.is_bfloat16_supported():
        raise ConfigError([("precision", "bf16 is not supported by this GPU (needs compute capability 8.0+); "
                                         "use fp16 or fp32")])
    return {"bf16": "bfloat16", "fp16": "float16"}[cfg.precision]


def training_arguments(cfg: RunConfig, paths: JobPaths, dtype: str, has_eval: bool):
    from paddleformers.trainer import TrainingArguments

    optim, logging = cfg.optim, cfg.logging
    return TrainingArguments(
        output_dir=str(paths.checkpoints),
        device="cpu" if cfg.devices.device == "cpu" else "gpu",
        per_device_train_batch_size=optim.per_device_batch_size,
        per_device_eval_batch_size=optim.per_device_batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        learning_rate=optim.learning_rate,
        lr_scheduler_type=optim.lr_scheduler,
        warmup_steps=optim.warmup_steps,
        warmup_ratio=optim.warmup_ratio,
        weight_decay=optim.weight_decay,
        num_train_epochs=optim.num_train_epochs,
        max_steps=optim.max_steps,
        max_grad_norm=optim.max_grad_norm,
        seed=optim.seed,
        logging_steps=logging.logging_steps,
        save_steps=logging.save_steps,
        # JobCallback deletes old checkpoints once the new one is complete; paddleformers' rotation
        # runs before that, and with a limit of 1 a crash then left nothing to resume from.
        save_total_limit=None,
        eval_steps=logging.eval_steps or None,
        evaluation_strategy="steps" if has_eval and logging.eval_steps else "no",
        # paddleformers refuses do_eval without an evaluation strategy; the final evaluation after the
        # last step (train()) runs either way
        do_eval=has_eval and bool(logging.eval_steps),
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        fp16_opt_level="O2" if dtype != "float32" else "O1",
        amp_master_grad=dtype != "float32",
        save_checkpoint_format="unified_checkpoint",
        load_checkpoint_format="unified_checkpoint",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        overwrite_output_dir=True,
        **parallel_training_arguments(cfg.gpu),
    )


def save_output(cfg: RunConfig, trainer, model_dir: Path, out_dir: Path, is_main: bool) -> None:
    """Write the final model (full) or adapter (LoRA) with the tokenizer, atomically.

    Every rank takes part in `save_model` (it synchronises the ranks); only rank 0 writes.
    """
    from models.chat_template import ship_template
    from trainer.vision import ship_pixel_limits

    staging = staging_dir(out_dir)
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    if not is_main:
        return
    remove_save_leftovers(staging)
    (staging / "training_args.bin").unlink(missing_ok=True)
    carry_config_keys(staging, model_dir)
    copy_tokenizer_files(model_dir, staging)
    if cfg.model.template != "auto":
        ship_template(staging / "tokenizer_config.json", cfg.model.template)
    if cfg.finetuning.type == "lora":
        write_adapter_info(staging, model_dir, cfg.model.name_or_path, cfg.method)
    ship_pixel_limits(staging, cfg.vl)
    publish(staging, out_dir)


def _truncate_metrics_after(paths: JobPaths, step: int) -> None:
    """On resume, drop metric and expert-load lines logged after the checkpoint we resume from
    (they will be redone)."""
    for path in (paths.metrics, paths.expert_load):
        if not path.exists():
            continue
        kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(path, "".join(kept))


def studio_trainer_class(method: str = "sft"):
    """paddleformers' Trainer (DPOTrainer for DPO), counting the tokens of every training batch for
    the tokens/s figure."""
    import paddleformers.trainer.trainer as trainer_module
    from paddleformers.trainer import Trainer

    from models.mtp import checkpoint_layout
    from trainer.vision import vl_loss

    if not hasattr(trainer_module, "GPTModel"):
        # paddleformers 1.2.0's evaluation_loop tests isinstance(model.model, GPTModel), a name it only
        # imports with paddlefleet installed: evaluating a LoRA model raises NameError without this.
        trainer_module.GPTModel = type("GPTModelUnavailable", (), {})

    base = Trainer
    if method == "dpo":
        # only here: paddleformers' DPO module brings scikit-learn and SciPy, most of a second of imports
        from paddleformers.cli.train.dpo.dpo_trainer import DPOTrainer as base

    class StudioTrainer(base):
        def __init__(self, *args, token_counter, **kwargs):
            super().__init__(*args, **kwargs)
            self.token_counter = token_counter

        def training_step(self, model, inputs, *args, **kwargs):
            self.token_counter.add(inputs["input_ids"])
            return super().training_step(model, inputs, *args, **kwargs)

        # Checkpoints and the output record a carried multi-token-prediction layer as the base has it.
        def _save(self, *args, **kwargs):
            with checkpoint_layout(self.model):
                return super()._save(*args, **kwargs)

        if method == "sft":
            def compute_loss(self, model, inputs, return_outputs=False):
                if "sequence_lengths" in inputs:
                    return token_balanced_loss(model, inputs, return_outputs)
                if "token_type_ids" in inputs:
                    return vl_loss(model, inputs, return_outputs)
                return super().compute_loss(model, inputs, return_outputs=return_outputs)

        if method == "dpo":
            def log(self, logs, **kwargs):
                # DPOTrainer.log multiplies state.epoch by num_train_epochs (its own datasets count
                # epochs differently); ours are ordinary map-style datasets, so undo it beforehand.
                if self.state.epoch is not None and "loss" in logs:
                    self.state.epoch /= self.args.num_train_epochs
                return super().log(logs, **kwargs)

            def _wrap_ref_model(self, model):
                # The reference model only runs forward passes; paddleformers wraps it for pipeline
                # and tensor parallelism, but its fleet.distributed_model needs fleet.init, which a
                # run without hybrid parallelism never calls: there it stays whole on every rank.
                return super()._wrap_ref_model(model) if self.args.use_hybrid_parallel else model

    return StudioTrainer


def token_balanced_loss(model, inputs: dict, return_outputs: bool = False):
    """ERNIE 4.5's multimodal token-balanced loss: the summed loss of each sequence's supervised
    tokens divided by the sequence's whole length, averaged over the batch. (The router losses
    reach the gate through the MoE layers' own gradient hook, as with the ordinary loss.)"""
    import paddle
    import paddle.nn.functional as F

    from trainer.vision import model_inputs

    labels, lengths = inputs["labels"], inputs["sequence_lengths"]
    outputs = model(**model_inputs(inputs), return_dict=True)
    token_loss = F.cross_entropy(outputs.logits.astype("float32"), labels.unsqueeze(-1), ignore_index=-100,
                                 reduction="none").squeeze(-1)
    supervised = (labels != -100).astype("float32")
    per_sequence = (token_loss * supervised).sum(axis=-1) / paddle.clip(lengths.astype("float32"), min=1.0)
    loss = per_sequence.mean()
    return (loss, outputs) if return_outputs else loss


class FailingCollateGuard:
    """paddle's DataLoader runs collate_fn on a thread of its own and, when it raises, that thread
    dies while training waits for a batch forever. Make such an error end the job, recorded as
    failed with its message, as any other failure is."""

    def __init__(self, collate, job_dir: Path, is_main: bool):
        self.collate, self.job_dir, self.is_main = collate, job_dir, is_main

    def __call__(self, batch):
        try:
            return self.collate(batch)
        except Exception as exc:
            traceback.print_exc()
            if self.is_main:
                write_status(self.job_dir, state=FAILED, ended=time.time(),
                             error=f"building a batch failed: {type(exc).__name__}: {exc}")
            sys.stdout.flush()
            os._exit(1)


def dpo_setup(cfg: RunConfig, model, model_dir: Path, dtype: str, parallel_args=None) -> dict:
    """DPOTrainer's extra arguments: its config (the loss, trainer/dpo_losses.py) and the reference
    model, which for LoRA is the policy with its adapter switched off and for full DPO a frozen copy
    of the start. A loss without one (simpo, orpo, dpo.reference_free) gets neither: nothing is
    loaded, and DPOTrainer scores the policy alone."""
    from paddleformers.cli.train.dpo.dpo_argument import DPOConfig

    from models.loader import load_model
    from trainer.dpo_losses import dpo_config_arguments, uses_reference

    lora = cfg.finetuning.type == "lora"
    dpo_config = DPOConfig(**dpo_config_arguments(cfg.dpo, lora))
    model.config.dpo_config = dpo_config
    reference = None
    log(f"dpo: {cfg.dpo.loss_type} loss; reference model: " + (
        "none" if not uses_reference(cfg.dpo) else "the policy with its adapter off" if lora else
        f"a frozen copy of {model_dir}"))
    if not lora and uses_reference(cfg.dpo):
        reference = load_model(model_dir, dtype=dtype, pipeline=cfg.gpu.pipeline_parallel_degree > 1,
                               config_overrides=model_config_overrides(cfg.gpu, parallel_args))
        reference.eval()
        for parameter in reference.parameters():
            parameter.stop_gradient = True
        reference.config.dpo_config = dpo_config
    return {"dpo_config": dpo_config, "ref_model": reference}


def starting_point(cfg: RunConfig, paths: JobPaths) -> Path:
    """The checkpoint directory the job starts from. A LoRA job's output (an adapter) is merged into
    its base first, into JOB/base_model, so a job built on it (SFT, then DPO) stands on its own."""
    from models.registry import resolve_model_dir

    source = Path(cfg.model.name_or_path).expanduser()
    if not (source.is_dir() and is_adapter(source)):
        return resolve_model_dir(cfg.model.name_or_path)
    merged = paths.base_model
    if not (merged / "config.json").is_file():
        if rank() == 0:
            from trainer.export import write_merged

            log(f"model: {source} is a LoRA adapter; merging it into its base at {merged}")
            with staged(merged) as staging:
                write_merged(source, staging)
        else:
            while not (merged / "config.json").is_file():
                time.sleep(1)
    return merged


def train(cfg: RunConfig, paths: JobPaths, resume: bool, stop) -> str:
    """Train; returns the final state (completed or stopped)."""
    import paddle
    from paddleformers.trainer import set_seed

    from models.chat_template import use_template
    from models.loader import load_tokenizer
    from trainer.callbacks import JobCallback, TokenCounter
    from models.vl_inputs import ImageProcessor
    from trainer.datasets import Collator, FeatureDataset, PreferenceCollator, build_datasets
    from trainer.vision import VisionCollator, is_vision_model

    is_main = rank() == 0
    dtype = check_precision(cfg)
    if cfg.devices.device == "cpu":
        paddle.set_device("cpu")
    elif world_size() > 1:
        paddle.set_device("gpu")  # paddle.distributed.launch gives each rank its own visible GPU
    else:
        paddle.set_device(f"gpu:{cfg.devices.gpu_ids.split(',')[0]}")
    set_seed(cfg.optim.seed)

    model_dir = starting_point(cfg, paths)
    tokenizer = load_tokenizer(model_dir)
    use_template(tokenizer, cfg.model.template)
    vision = is_vision_model(model_dir)
    processor = ImageProcessor(model_dir, cfg.vl.min_pixels, cfg.vl.max_pixels) if vision else None
    train_features, eval_features = build_datasets(cfg, tokenizer, log=log, processor=processor)
    # Model parallelism splits the layers as they are built, inside the process groups that
    # paddleformers' TrainingArguments set up; otherwise every rank loads the whole model first
    # (models/loader.py: rank_local_loading needs the groups not to exist yet).
    parallel_args = training_arguments(cfg, paths, dtype, bool(eval_features)) \
        if uses_model_parallelism(cfg.gpu) else None
    model = build_model(cfg, model_dir, dtype, parallel_args)
    args = parallel_args if parallel_args is not None else \
        training_arguments(cfg, paths, dtype, bool(eval_features))
    if cfg.method == "dpo":
        extra = dpo_setup(cfg, model, model_dir, dtype, parallel_args)
        collator = PreferenceCollator(tokenizer, bool(model.config.use_filtered_label_loss))
    else:
        collator_class = VisionCollator if vision else Collator
        extra, collator = {}, collator_class(tokenizer.pad_token_id, with_lengths=cfg.moe.token_balanced_loss)

    checkpoint = None
    if resume:
        last = paths.last_checkpoint()
        if last is None:
            raise RuntimeError(f"--resume: no complete checkpoint in {paths.checkpoints}")
        checkpoint = str(last)
        if is_main:  # the writer of metrics.jsonl; ranks rewriting it together raced on its temp file
            _truncate_metrics_after(paths, checkpoint_step(last))
        log(f"resuming from {checkpoint}")

    tokens = TokenCounter(tokenizer.pad_token_id)
    callback = JobCallback(paths.dir, tokens, stop, is_main, cfg.logging.save_total_limit,
                           bias_update_rate=cfg.moe.bias_update_rate, world_size=world_size())
    trainer = studio_trainer_class(cfg.method)(
        model=model,
        args=args,
        train_dataset=FeatureDataset(train_features),
        eval_dataset=FeatureDataset(eval_features) if eval_features else None,
        data_collator=FailingCollateGuard(collator, paths.dir, is_main),
        tokenizer=tokenizer,
        callbacks=[callback],
        token_counter=tokens,
        **extra,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    if callback.stopped_early:
        return STOPPED
    if eval_features and callback.last_eval_step != trainer.state.global_step:
        trainer.evaluate()
    out_dir = Path(cfg.output.dir) if cfg.output.dir else paths.output
    save_output(cfg, trainer, model_dir, out_dir, is_main)
    log(f"output written to {out_dir}")
    return COMPLETED


def run(cfg: RunConfig, job_dir: Path, resume: bool = False) -> int:
    """Run a job to its end and record the outcome in status.json; returns the exit code."""
    from trainer.callbacks import StopSignal

    stop = StopSignal().install()
    paths = JobPaths(job_dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    is_main = rank() == 0
    if is_main:
        if not paths.config.exists():
            from trainer.config import dump_yaml

            dump_yaml(cfg, paths.config)
        if stop_requested(paths.dir):
            write_status(paths.dir, state=STOPPED, ended=time.time())
            return 0
        write_status(paths.dir, state=RUNNING, pid=os.getpid(), pgid=os.getpgid(0), started=time.time(),
                     error=None, ended=None)
    try:
        state = train(cfg, paths, resume, stop)
    except Exception as exc:  # every failure must reach status.json with its message
        if isinstance(exc, (ConfigError, ModelNotFound, DataError, TokenizationError, QuantError)):
            # a refusal that names its reason; where in the code it was raised tells the user nothing
            print(f"[studio] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        if is_main:
            write_status(paths.dir, state=FAILED, ended=time.time(), error=f"{type(exc).__name__}: {exc}")
        return 1
    if is_main and state == COMPLETED and cfg.eval.after_training:
        from trainer.evaluate import after_training

        write_status(paths.dir, phase="evaluating")
        after_training(cfg, paths.dir, Path(cfg.output.dir) if cfg.output.dir else paths.output, log)
    if is_main:
        step = read_status(paths.dir).get("step")
        write_status(paths.dir, state=state, ended=time.time(), step=step, phase=None)
        log(f"job {state}")
    return 0
