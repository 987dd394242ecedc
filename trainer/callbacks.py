"""The paddleformers trainer callback that speaks the job-directory protocol.

It writes metrics.jsonl (loss, learning rate, tokens/s, elapsed time, ETA, memory, and for DPO the
rewards, their margin and accuracy; eval lines carry eval_loss) and, for MoE models,
expert_load.jsonl; runs aux-loss-free balancing after every optimizer step; keeps status.json's
step current; marks checkpoints complete once saved (then deletes those beyond save_total_limit);
and turns a stop request (SIGTERM or the STOP file) into "finish this step, save a checkpoint, stop".
"""

from __future__ import annotations

import os
import signal
import time

import psutil
from paddleformers.trainer import TrainerCallback

from plumbing.peak_memory import own_peak_rss_mb
from trainer.jobfiles import (
    JobPaths, append_json_line, append_metrics, mark_checkpoint_complete, prune_checkpoints, stop_requested,
    write_status,
)

STATUS_INTERVAL_S = 1.0


class StopSignal:
    """Remembers a SIGTERM so the training loop can stop at the end of the current step."""

    def __init__(self):
        self.received = False

    def install(self):
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any. Ranks must stop after the same step: one that
    trains on waits in a collective for the others, and the SIGTERM and the STOP file that ask for
    the stop reach only the ranks of the node the studio runs (another machine sees neither)."""
    import paddle
    import paddle.distributed as dist

    votes = paddle.to_tensor([int(flag)], dtype="int32")
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


class TokenCounter:
    """Counts the real (unpadded) tokens the model has trained on."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id
        self.total = 0

    def add(self, input_ids) -> None:
        self.total += int((input_ids != self.pad_id).sum())


def _memory() -> dict:
    """Resident memory now and at its peak so far; the peak of paddle's allocator (the tensors): on
    GPU since the start, on CPU since training began (`_reset_tensor_peak`)."""
    info = {"rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "peak_rss_mb": own_peak_rss_mb()}
    import paddle

    if paddle.device.get_device().startswith("gpu"):
        info["gpu_mb"] = round(paddle.device.cuda.max_memory_allocated() / 2**20, 1)
    else:
        info["tensors_peak_mb"] = round(paddle.base.core.host_memory_stat_peak_value("Allocated", 0) / 2**20, 1)
    return info


def _reset_tensor_peak() -> None:
    """Loading a checkpoint briefly allocates more than it ever touches; the CPU tensor peak in the
    metrics is that of training (docs/real_models.md, "Will it fit?")."""
    import paddle

    if not paddle.device.get_device().startswith("gpu"):
        paddle.base.core.host_memory_stat_reset_peak_value("Allocated", 0)


# DPOTrainer's log keys → metrics.jsonl keys (rewards are beta * log-ratio against the reference).
PREFERENCE_METRICS = {
    "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
    "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
    "logps/chosen": "logp_chosen", "logps/rejected": "logp_rejected",
}


def _preference_metrics(logs: dict, prefix: str) -> dict:
    return {prefix + ours: round(float(logs[prefix + theirs]), 6)
            for theirs, ours in PREFERENCE_METRICS.items() if prefix + theirs in logs}


class JobCallback(TrainerCallback):
    def __init__(self, job_dir, tokens: TokenCounter, stop: StopSignal, is_main: bool, keep_checkpoints: int,
                 bias_update_rate: float = 0.0, world_size: int = 1):
        self.job_dir = job_dir
        self.keep_checkpoints = keep_checkpoints
        self.tokens = tokens
        self.stop = stop
        self.is_main = is_main
        self.bias_update_rate = bias_update_rate
        self.world_size = world_size
        self._moe_blocks = None  # found in the model once, then read every optimizer step
        self._expert_load: dict[int, list[int]] = {}
        self._expert_groups: dict[int, list[int]] = {}
        self.stopped_early = False
        self.last_eval_step = None
        self._start = self._last_log_time = time.time()
        self._start_step = 0
        self._last_tokens = 0
        self._last_status = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        _reset_tensor_peak()
        self._start = self._last_log_time = time.time()
        self._start_step = state.global_step
        if self.is_main:
            write_status(self.job_dir, step=state.global_step, total_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self._balance_experts(kwargs.get("model"))
        stop = self.stop.received or stop_requested(self.job_dir)
        if self.world_size > 1:
            stop = any_rank(stop)
        if stop:
            self.stopped_early = True
            control.should_save = True
            control.should_training_stop = True
        now = time.time()
        if self.is_main and (now - self._last_status >= STATUS_INTERVAL_S or control.should_training_stop):
            write_status(self.job_dir, step=state.global_step, total_steps=state.max_steps)
            self._last_status = now
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.is_main or not logs:
            return
        now = time.time()
        record = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4)}
        if "loss" in logs:
            elapsed = now - self._start
            done = max(state.global_step - self._start_step, 1)
            window = max(now - self._last_log_time, 1e-9)
            record.update(
                loss=float(logs["loss"]),
                lr=float(logs.get("learning_rate", 0.0)),
                tokens_per_s=round((self.tokens.total - self._last_tokens) / window, 1),
                elapsed_s=round(elapsed, 2),
                eta_s=round(elapsed / done * max(state.max_steps - state.global_step, 0), 1),
                memory=_memory(),
            )
            if "grad_norm" in logs:
                record["grad_norm"] = float(logs["grad_norm"])
            record.update(_preference_metrics(logs, ""))
            imbalance = self._record_expert_load(state.global_step)
            if imbalance is not None:
                record["expert_imbalance"] = imbalance
            self._last_tokens, self._last_log_time = self.tokens.total, now
        elif "eval_loss" in logs:
            record["eval_loss"] = float(logs["eval_loss"])
            record.update(_preference_metrics(logs, "eval_"))
            self.last_eval_step = state.global_step
        else:
            return
        append_metrics(self.job_dir, record)

    def _balance_experts(self, model) -> None:
        """Once per optimizer step on every rank: collect the expert usage of the step (summed over
        ranks), let aux-loss-free balancing move the correction biases, and add the usage to what
        the next logging step records."""
        from models.moe_dispatch import balance_step, moe_blocks

        if model is None:
            return
        if self._moe_blocks is None:
            self._moe_blocks = moe_blocks(model)
        for load in balance_step(self._moe_blocks, self.bias_update_rate, all_reduce=self.world_size > 1):
            total = self._expert_load.setdefault(load.layer, [0] * len(load.tokens))
            self._expert_load[load.layer] = [a + b for a, b in zip(total, load.tokens)]
            self._expert_groups[load.layer] = load.groups

    def _record_expert_load(self, step: int) -> float | None:
        """Write the tokens each expert received since the last logging step (expert_load.jsonl)
        and return the worst layer's imbalance (max over mean); None for a model without MoE."""
        from models.moe_dispatch import ExpertLoad

        loads = [ExpertLoad(layer, tokens, self._expert_groups[layer]) for layer, tokens in self._expert_load.items()]
        self._expert_load = {}
        if not loads or not any(sum(load.tokens) for load in loads):
            return None
        record = {"step": step, "layers": [load.layer for load in loads], "tokens": [load.tokens for load in loads],
                  "imbalance": [load.imbalance() for load in loads]}
        if any(len(load.groups) > 1 for load in loads):
            record["groups"] = loads[0].groups
        append_json_line(JobPaths(self.job_dir).expert_load, record)
        return max(record["imbalance"])

    def on_save(self, args, state, control, **kwargs):
        if self.is_main:
            checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(checkpoint):
                mark_checkpoint_complete(checkpoint)
                # Older checkpoints go only now (paddleformers' own rotation, switched off in
                # training_arguments, deletes them before this one is complete).
                prune_checkpoints(self.job_dir, self.keep_checkpoints)
