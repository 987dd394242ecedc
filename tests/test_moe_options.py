"""The run config's `moe` section end to end: validation, what trains (router, routed and shared
experts, LoRA placement), loss coefficients reaching the model, aux-loss-free balancing in a
real run, and the token-balanced loss."""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from tests.conftest import example_config, read_metrics, run_trainer
from trainer import config as C
from trainer.config import ConfigError


def config(**changes) -> C.RunConfig:
    d = example_config("tiny_sft_lora.yaml")
    for key, value in changes.items():
        C.set_key(d, key, value)
    return C.from_dict(d)


def problems(**changes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(**changes)
    return [message for _, message in caught.value.problems]


def test_invalid_moe_settings_are_refused_with_the_key():
    assert problems(**{"moe.aux_loss_coef": -0.5}) == \
        ["moe.aux_loss_coef: must be -1 (keep the checkpoint's value) or >= 0, got -0.5"]
    assert problems(**{"moe.bias_update_rate": 1e-3})[0].startswith(
        "moe.bias_update_rate: aux-loss-free balancing updates the routing biases, which a LoRA adapter")
    assert problems(**{"moe.freeze_router": True})[0].startswith("moe.freeze_router: LoRA never trains the router")
    assert problems(**{"method": "dpo", "moe.token_balanced_loss": True,
                       "data.train": [{"path": "assets/sample_dpo.jsonl"}]})[0].startswith(
        "moe.token_balanced_loss: applies to the SFT loss")
    assert problems(**{"moe.train_experts": "routed"}) == \
        ["moe.train_experts: expected one of all, shared, none; got 'routed'"]


def adapter_layers(model) -> set[str]:
    return {name.rsplit(".lora_", 1)[0] for name, p in model.named_parameters() if ".lora_" in name}


@pytest.mark.parametrize("experts, routed, shared", [("all", True, True), ("shared", False, True),
                                                       ("none", False, False)])
def test_lora_adapters_follow_train_experts(tiny_moe_dir, experts, routed, shared):
    from trainer.train import build_model

    model = build_model(config(**{"moe.train_experts": experts}), tiny_moe_dir, "float32")
    layers = adapter_layers(model)
    assert any(".self_attn." in name for name in layers)
    assert any(".layers.0.mlp." in name for name in layers), "the dense FFN of layer 0 always gets adapters"
    assert any(".mlp.experts." in name for name in layers) == routed
    assert any(".mlp.shared_experts." in name for name in layers) == shared


def test_lora_target_left_without_layers_names_the_moe_setting(tiny_moe_dir):
    from trainer.train import build_model

    cfg = config(**{"moe.train_experts": "none", "finetuning.lora.target_modules": ["experts\\..*"]})
    with pytest.raises(ConfigError, match=r"matches no linear layer of this model \(moe.train_experts"):
        build_model(cfg, tiny_moe_dir, "float32")


def test_full_finetuning_freezes_router_and_routed_experts(tiny_moe_dir):
    from trainer.train import build_model

    cfg = config(**{"finetuning.type": "full", "moe.freeze_router": True, "moe.train_experts": "shared"})
    model = build_model(cfg, tiny_moe_dir, "float32")
    trainable = {name for name, p in model.named_parameters() if not p.stop_gradient}
    assert not any(".mlp.gate." in name for name in trainable)
    assert not any(".mlp.experts." in name for name in trainable)
    assert any(".mlp.shared_experts." in name for name in trainable)
    assert any(".self_attn." in name for name in trainable)


def test_loss_coefficients_reach_the_model_config(tiny_moe_dir):
    from trainer.train import build_model

    cfg = config(**{"moe.aux_loss_coef": 0.0, "moe.orthogonal_loss_coef": 0.02})
    model = build_model(cfg, tiny_moe_dir, "float32")
    assert model.config.router_aux_loss_coef == 0.0
    assert model.config.moe_orthogonal_loss_lambda == 0.02
    assert model.config.router_z_loss_coef == 0.0, "-1 keeps the checkpoint's value"


def test_moe_options_on_a_dense_model_are_refused(tiny_dense_dir):
    from trainer.train import moe_overrides

    cfg = config(**{"finetuning.type": "full", "moe.freeze_router": True})
    with pytest.raises(ConfigError, match="moe.freeze_router: .* is a dense model without experts"):
        moe_overrides(cfg, tiny_dense_dir)


def test_token_balanced_loss_divides_each_sequence_by_its_length(tiny_moe_dir):
    from models.loader import load_model
    from trainer.train import token_balanced_loss

    model = load_model(tiny_moe_dir)
    model.eval()
    paddle.seed(3)
    ids = paddle.randint(5, 1000, [2, 10])
    labels = paddle.full([2, 10], -100, dtype="int64")
    labels[0, 2:6] = ids[0, 3:7]  # 4 supervised tokens in a sequence of 7
    labels[1, 7:9] = ids[1, 8:10]  # 2 in a sequence of 10
    lengths = paddle.to_tensor([7, 10], dtype="int64")
    with paddle.no_grad():
        loss = float(token_balanced_loss(model, {"input_ids": ids, "labels": labels, "sequence_lengths": lengths}))
        logits = model(input_ids=ids, return_dict=True).logits.numpy().astype("float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_sequence = []
    for row, length in enumerate([7, 10]):
        picked = [-log_probs[row, t, int(labels[row, t])] for t in range(10) if int(labels[row, t]) != -100]
        per_sequence.append(sum(picked) / length)
    assert loss == pytest.approx(np.mean(per_sequence), rel=1e-4)


def test_aux_free_balancing_and_token_balanced_loss_in_a_full_run(workdir, tiny_moe_dir):
    job_dir = workdir / "jobs" / "moe-options"
    cfg = example_config("tiny_sft_lora.yaml", **{
        "finetuning.type": "full", "moe.bias_update_rate": 0.01, "moe.token_balanced_loss": True,
        "optim.max_steps": 6, "optim.learning_rate": 1e-3, "logging.logging_steps": 2, "logging.save_steps": 100})
    result = run_trainer(cfg, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = [m for m in read_metrics(job_dir) if "loss" in m]
    assert [m["step"] for m in metrics] == [2, 4, 6] and all(np.isfinite(m["loss"]) for m in metrics)
    loads = [json.loads(line) for line in (job_dir / "expert_load.jsonl").read_text().splitlines()]
    assert [record["step"] for record in loads] == [2, 4, 6]

    from safetensors.numpy import load_file

    weights = {}
    for shard in (job_dir / "output").glob("*.safetensors"):
        weights.update(load_file(str(shard)))
    biases = [value for name, value in weights.items() if name.endswith("e_score_correction_bias")]
    assert len(biases) == 3
    # six steps of +-0.01 from the checkpoint's zeros: every bias moved, by a multiple of the rate
    assert all(np.abs(b).max() > 0 for b in biases)
    np.testing.assert_allclose(np.round(np.concatenate(biases).ravel() / 0.01), np.concatenate(biases).ravel() / 0.01,
                               atol=1e-3)


def test_the_form_knows_which_models_have_experts(tmp_path, tiny_moe_dir, tiny_dense_dir):
    from models.registry import has_experts

    assert has_experts("ERNIE-4.5-21B-A3B") and has_experts("ERNIE-4.5-VL-28B-A3B")
    assert not has_experts("ERNIE-4.5-0.3B") and not has_experts(str(tiny_dense_dir))
    assert has_experts(str(tiny_moe_dir))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_info.json").write_text(json.dumps({"base_model": str(tiny_dense_dir),
                                                           "base_model_name": "ernie-4.5-tiny-dense"}))
    assert not has_experts(str(adapter))
    assert has_experts(str(tmp_path / "missing")), "unknown: the options stay visible, checked at training time"
