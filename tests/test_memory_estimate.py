"""The memory estimate (models/memory.py, trainer/memory.py, the Train tab's line): its parameters are
paddleformers' own, what trains is what the trainer trains, and its figures are within 25% of the
peaks `python -m trainer run` reaches (measured as bench/memory_estimate.py measures them)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from models.memory import DEFAULTS, GPU_RUNTIME, architecture, estimate, inventory, parameter_count
from models.tiny import MODEL_CONFIGS
from tests.conftest import ROOT, example_config

sys.path.insert(0, str(ROOT / "bench"))
import memory_estimate as bench  # noqa: E402

TINY_MOE = MODEL_CONFIGS["ernie-4.5-tiny-moe"]
_MOE = dict(architectures=["Ernie4_5_MoeForCausalLM"], model_type="ernie4_5_moe", vocab_size=256, hidden_size=32,
            intermediate_size=80, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            moe_num_experts=4, moe_intermediate_size=24)
VARIANTS = {
    "tiny-moe": TINY_MOE,
    "tiny-dense": MODEL_CONFIGS["ernie-4.5-tiny-dense"],
    # an MTP layer, MoE every second layer, biases, untied output head, two shared experts
    "moe-mtp-interval-bias": dict(_MOE, head_dim=16, tie_word_embeddings=False, moe_num_shared_experts=2,
                                  moe_layer_interval=2, num_nextn_predict_layers=1, use_bias=True),
    # MoE from layer 0 (the MTP block too), no correction bias, no shared expert, paddleformers' defaults
    "moe-defaults": dict(_MOE, num_key_value_heads=4, moe_layer_start_index=0, moe_use_aux_free=False,
                         moe_num_shared_experts=0),
    "dense-untied-bias-mqa": dict(architectures=["Ernie4_5ForCausalLM"], model_type="ernie4_5", vocab_size=300,
                                  hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=1,
                                  use_bias=True, tie_word_embeddings=False),
}


def _model(config: dict, tmp_path):
    from paddleformers.transformers import AutoConfig, AutoModelForCausalLM

    (tmp_path / "config.json").write_text(json.dumps(config))
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(tmp_path)))


@pytest.mark.parametrize("name", VARIANTS)
def test_the_parameters_and_linear_layers_are_paddleformers_own(name, tmp_path):
    import paddle
    import paddle.nn as nn

    model = _model(dict(VARIANTS[name], dtype="bfloat16"), tmp_path)
    params, linears = inventory(architecture(VARIANTS[name]))
    assert {p.name: p.shape for p in params} == {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert {p.name for p in params if p.fp32} == {n for n, p in model.named_parameters() if p.dtype == paddle.float32}
    built_frozen = {n for n, p in model.named_parameters() if p.stop_gradient}
    assert {p.name for p in params if p.frozen and ".mtp_" not in p.name} == built_frozen
    assert [lin.name for lin in linears] == [n for n, layer in model.named_sublayers() if isinstance(layer, nn.Linear)]


def test_keys_left_out_take_paddleformers_defaults():
    from paddleformers.transformers.ernie4_5.configuration import Ernie4_5Config
    from paddleformers.transformers.ernie4_5_moe.configuration import Ernie4_5_MoeConfig

    for model_type, cls in (("ernie4_5", Ernie4_5Config), ("ernie4_5_moe", Ernie4_5_MoeConfig)):
        built = cls()
        for key, value in DEFAULTS[model_type].items():
            if key == "moe_layer_end_index":  # paddleformers stores -1 as the last layer's index
                assert built.moe_layer_end_index == built.num_hidden_layers - 1
            elif key == "head_dim" and value is None:
                assert built.head_dim == built.hidden_size // built.num_attention_heads
            else:
                assert getattr(built, key) == value, key


# ERNIE-4.5-21B-A3B's released config.json (the architecture keys), and its hub record's count of
# the parameters the Thinking release stores: 21,825,437,888 in all, 4,425,408 of them fp32 (the
# routers' gates and correction biases); that release has no multi-token-prediction weights.
ERNIE_21B_A3B = dict(model_type="ernie4_5_moe", hidden_size=2560, intermediate_size=12288, num_attention_heads=20,
                     num_key_value_heads=4, num_hidden_layers=28, vocab_size=103424, tie_word_embeddings=True,
                     use_bias=False, moe_num_experts=64, moe_num_shared_experts=2, moe_layer_start_index=1,
                     moe_intermediate_size=1536, moe_k=6, moe_layer_interval=1, moe_use_aux_free=True,
                     num_nextn_predict_layers=1)


def test_the_released_21b_a3b_counts_as_its_hub_record():
    without_mtp = dict(ERNIE_21B_A3B, num_nextn_predict_layers=0)
    params = inventory(architecture(without_mtp))[0]
    assert sum(p.numel for p in params) == 21_825_437_888
    assert sum(p.numel for p in params if p.fp32) == 4_425_408
    # the MTP layer is a dense decoder layer (layer index 0 is below moe_layer_start_index), two norms
    # and the 2h -> h projection
    h, i, qkv = 2560, 12288, 2560 + 2 * 4 * 128
    mtp = h * qkv + h * h + h * 2 * i + i * h + 4 * h + 2 * h * h
    assert parameter_count(ERNIE_21B_A3B) == 21_825_437_888 + mtp


@pytest.mark.parametrize("changes", [
    {"finetuning.type": "lora"},
    {"finetuning.type": "lora", "moe.train_experts": "shared", "finetuning.lora.target_modules": ["qkv_proj", "down_proj"]},
    {"finetuning.type": "full"},
    {"finetuning.type": "full", "moe.freeze_router": True, "moe.train_experts": "none"},
], ids=["lora-all", "lora-shared-experts", "full", "full-frozen-router-and-experts"])
def test_what_trains_is_what_the_trainer_trains(changes, tiny_moe_dir):
    from trainer.config import from_dict
    from trainer.memory import estimate_run, model_config, training
    from trainer.train import build_model

    cfg = from_dict(example_config("tiny_sft_lora.yaml", **changes))
    model = build_model(cfg, tiny_moe_dir, "float32")
    trains = sum(p.numel().item() for p in model.parameters() if not p.stop_gradient)
    assert estimate_run(cfg).trainable == trains
    assert estimate(model_config(cfg.model.name_or_path), training(cfg, TINY_MOE)).parameters == \
        parameter_count(TINY_MOE)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_the_estimate_is_within_25_percent_of_the_measured_peak(kind, workdir, tiny_moe_dir, tmp_path):
    """One short SFT run (3 steps, a checkpoint at step 2, batches 256 tokens wide): the estimate
    against the trainer process's peak RSS, and its tensors against paddle's allocator peak."""
    data = bench.write_data(tmp_path)
    config = bench.case_config("ernie-4.5-tiny-moe", "sft", kind, 8, data["sft"])
    measured = bench.measure(f"tiny-{kind}", config, tmp_path, dict(os.environ))
    assert abs(measured["ratio"] - 1) <= bench.TARGET, measured
    assert abs(measured["tensors_ratio"] - 1) <= bench.TARGET, measured


def _cfg(**changes):
    from trainer.config import from_dict

    return from_dict(example_config("tiny_sft_lora.yaml", **changes), local=False)


def test_a_cpu_run_needs_room_for_all_of_its_processes(workdir):
    from trainer.memory import check_fit

    one, two = check_fit(_cfg()), check_fit(_cfg(**{"devices.nproc": 2}))
    assert one.where == "ram" and one.have > 0 and one.fits
    assert two.need == pytest.approx(2 * one.estimate.peak) and two.processes == 2


def test_a_model_too_big_for_the_machine_does_not_fit_and_the_train_tab_warns(workdir, tmp_path, monkeypatch):
    import psutil

    from trainer.memory import check_fit
    from webui.fit_panel import text

    model = tmp_path / "ernie-21b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(ERNIE_21B_A3B))
    config = example_config("tiny_sft_lora.yaml", **{"model.name_or_path": str(model), "finetuning.type": "full"})
    fit = check_fit(_cfg(**{"model.name_or_path": str(model), "finetuning.type": "full"}))
    assert fit.fits is False and fit.need > 16 * 21.9e9  # fp32 weights, gradients and AdamW moments alone
    line = text(config, workdir)
    assert "Likely too big" in line and "本机可能放不下" in line and "the peak comes" in line
    small = text(example_config("tiny_sft_lora.yaml"), workdir)
    assert "Memory per process" in small and "Likely too big" not in small
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("VM", (), {"total": 10 * 2**20})())
    assert "Likely too big" in text(example_config("tiny_sft_lora.yaml"), workdir)


def test_a_gpu_run_is_set_beside_each_gpu_memory_from_nvidia_smi(workdir, tmp_path, monkeypatch):
    from trainer import memory
    from webui.fit_panel import text

    gpu = {"devices.device": "gpu", "devices.gpu_ids": "0,1", "devices.nproc": 2, "precision": "bf16"}
    monkeypatch.setenv("PATH", str(tmp_path))
    memory.gpu_memory.cache_clear()
    try:
        unknown = memory.check_fit(_cfg(**gpu))
        assert (unknown.where, unknown.have, unknown.fits) == ("gpu", None, None)
        assert "GPU memory unknown" in text(example_config("tiny_sft_lora.yaml", **gpu), workdir)
        smi = tmp_path / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho '0, 81559'\necho '1, 40960'\n")
        smi.chmod(0o755)
        memory.gpu_memory.cache_clear()
        assert memory.gpu_memory() == {0: 81559 * 2**20, 1: 40960 * 2**20}
        fit = memory.check_fit(_cfg(**gpu))
        assert fit.have == 40960 * 2**20 and fit.fits  # the smallest of the run's GPUs
        assert fit.need == fit.estimate.peak and fit.estimate.runtime == GPU_RUNTIME
    finally:
        memory.gpu_memory.cache_clear()


def test_the_train_tab_says_why_there_is_no_estimate(workdir):
    from webui.fit_panel import text

    missing = text(example_config("tiny_sft_lora.yaml", **{"model.name_or_path": "ERNIE-4.5-21B-A3B"}), workdir)
    assert "config.json" in missing and "ERNIE-4.5-21B-A3B" in missing
    invalid = text(example_config("tiny_sft_lora.yaml", **{"optim.per_device_batch_size": 0}), workdir)
    assert "form's problems" in invalid
    no_layer = text(example_config("tiny_sft_lora.yaml", **{"finetuning.lora.target_modules": ["q_proj"]}), workdir)
    assert "'q_proj' matches no linear layer" in no_layer
    no_data = example_config("tiny_sft_lora.yaml")
    no_data["data"]["train"] = []
    assert "Memory per process" in text(no_data, workdir)
