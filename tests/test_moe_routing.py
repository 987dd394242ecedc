"""ERNIE 4.5 MoE routing on the portable dispatch: capacity, modality-isolated routing of the VL
layout, dense and MoE layer placement, and aux-loss-free balancing."""

from __future__ import annotations

import copy

import numpy as np
import paddle
import pytest

from models.loader import load_model
from models.moe_dispatch import (
    PortableMoeBlock, balance_step, capacity, moe_blocks, route, use_portable_moe,
)


@pytest.fixture(scope="module")
def tiny_model(tiny_moe_dir):
    paddle.set_device("cpu")
    return load_model(tiny_moe_dir)


def first_block(model) -> PortableMoeBlock:
    return moe_blocks(model)[0][1]


def with_capacity(block, factors):
    """The block with its own copy of the config, holding other capacity factors."""
    block.config = copy.copy(block.config)
    block.config.moe_capacity = factors
    return block


def reference_with_drops(block, x, limit):
    """Token by token in order, each expert accepting only its first `limit` assignments; the
    surviving weights of a token are renormalised."""
    routing = route(block, x)
    ids, weights = routing.expert_ids.numpy(), routing.weights.numpy().astype("float64")
    taken = np.zeros(len(block.experts), dtype=int)
    outputs = []
    for token in range(x.shape[0]):
        row = x[token : token + 1]
        kept = []
        for slot, expert in enumerate(ids[token]):
            if taken[expert] < limit:
                taken[expert] += 1
                kept.append((int(expert), weights[token, slot]))
        total = sum(w for _, w in kept)
        out = block.shared_experts(row).numpy()[0].astype("float64")
        for expert, weight in kept:
            out += weight / total * block.experts[expert](row).numpy()[0]
        outputs.append(out)
    return np.stack(outputs)


def test_capacity_drops_later_tokens_and_renormalises(tiny_model):
    block = with_capacity(first_block(tiny_model), [1, 1, 1])
    block.eval()
    paddle.seed(11)
    x = paddle.randn([40, 128])
    limit = capacity(block, 40)
    assert limit == 5  # int(1 * 40 // 8): 80 assignments, at most 40 served
    with paddle.no_grad():
        out, weights, _, _ = block(x)
    np.testing.assert_allclose(out.numpy(), reference_with_drops(block, x, limit), atol=1e-5, rtol=1e-5)
    assert (weights.numpy() == 0).any(), "some assignments were dropped"


def test_generous_capacity_drops_nothing(tiny_model):
    block = with_capacity(first_block(tiny_model), [8, 8, 8])  # the tiny model's own: capacity = tokens
    block.eval()
    x = paddle.randn([24, 128])
    with paddle.no_grad():
        _, weights, _, _ = block(x)
    np.testing.assert_allclose(weights.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert (weights.numpy() > 0).all()


@pytest.mark.parametrize("factors, message", [
    ([8, 8], "must be three positive numbers"),
    ([8, 0, 8], "must be three positive numbers"),
    ([0.01, 0.01, 0.01], "lets an expert take no token"),
])
def test_unusable_capacity_is_refused_with_the_reason(tiny_model, factors, message):
    block = with_capacity(first_block(tiny_model), factors)
    block.eval()
    with pytest.raises(ValueError, match=message):
        with paddle.no_grad():
            block(paddle.randn([16, 128]))


@pytest.mark.parametrize("start, end, interval, expected", [
    (1, 3, 1, [1, 2, 3]),
    (0, 3, 2, [1, 3]),
    (2, 2, 1, [2]),
])
def test_moe_layers_are_placed_by_start_end_and_interval(tiny_moe_dir, start, end, interval, expected):
    from paddleformers.transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(tiny_moe_dir))
    config.fuse_rms_norm = False
    config.moe_layer_start_index, config.moe_layer_end_index, config.moe_layer_interval = start, end, interval
    model = AutoModelForCausalLM.from_config(config)
    use_portable_moe(model)
    assert [index for index, _ in moe_blocks(model)] == expected
    dense = [i for i, layer in enumerate(model.model.layers) if i not in expected]
    assert all(not hasattr(model.model.layers[i].mlp, "experts") for i in dense)
    ids = paddle.randint(5, 1000, [1, 8])
    assert np.isfinite(float(model(ids, labels=ids, return_dict=True).loss))


@pytest.fixture(scope="module")
def vl_block():
    """One MoE layer of the ERNIE 4.5 VL architecture at tiny size: 4 text experts then 4 vision
    experts, a text gate (`gate.weight`) and a vision gate (`gate.weight_1`), correction biases
    [2, 4], one shared expert; built by paddleformers' own VL decoder layer."""
    from paddleformers.transformers.ernie4_5_moe_vl.model import modeling_moe
    from paddleformers.transformers.ernie4_5_moe_vl.model.configuration import Ernie4_5_VLMoeConfig

    paddle.set_device("cpu")
    paddle.seed(5)
    config = Ernie4_5_VLMoeConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, moe_num_experts=[4, 4], moe_k=2, moe_intermediate_size=[16, 16],
        moe_num_shared_experts=1, moe_layer_start_index=[0, 0], moe_layer_end_index=[0, 0],
        moe_layer_interval=1, moe_use_aux_free=True, moe_use_hard_gate=True, moe_capacity=[8, 8, 8],
        moe_multimodal_dispatch_use_allgather="v2-alltoall-unpad", fuse_rms_norm=False,
        router_aux_loss_coef=0.01, moe_orthogonal_loss_lambda=0.01)
    config.moe_world_size = 1
    config.moe_group = modeling_moe._parse_moe_group("dummy")
    layer = modeling_moe.Ernie4_5_DecoderLayer(config, 0)
    assert use_portable_moe(layer) == 1
    block = layer.mlp
    # paddleformers builds a group's experts as copies of one; a checkpoint's differ
    for name, parameter in block.named_parameters():
        if name.startswith("experts."):
            parameter.set_value(paddle.randn(parameter.shape) * 0.2)
    assert [name for name, _ in block.gate.named_parameters()] == ["weight", "weight_1"]
    assert block.moe_statics.e_score_correction_bias.shape == [2, 4]
    return block


def test_modality_isolation_keeps_text_and_vision_experts_apart(vl_block):
    paddle.seed(6)
    x = paddle.randn([64, 32])
    types = paddle.to_tensor(np.random.RandomState(0).randint(0, 2, size=64), dtype="int64")
    # a bias that would pull every token to vision expert 4 (row 1) and text expert 0 (row 0)
    vl_block.moe_statics.e_score_correction_bias.set_value(paddle.to_tensor([[5.0, 0, 0, 0], [5.0, 0, 0, 0]]))
    with paddle.no_grad():
        routing = route(vl_block, x, types)
    ids, is_image = routing.expert_ids.numpy(), types.numpy() == 1
    assert (ids[~is_image] < 4).all(), "a text token went to a vision expert"
    assert (ids[is_image] >= 4).all(), "an image token went to a text expert"
    assert (ids[~is_image] == 0).any(axis=1).all() and (ids[is_image] == 4).any(axis=1).all()
    vl_block.moe_statics.e_score_correction_bias.set_value(paddle.zeros([2, 4]))


def test_text_tokens_ignore_the_vision_gate_and_experts(vl_block):
    paddle.seed(7)
    x = paddle.randn([1, 20, 32])
    types = paddle.to_tensor([[0, 1] * 10], dtype="int64")
    # the VL decoder hands its block the labels' token types too: one more per row
    with_label = paddle.concat([types, types[:, -1:]], axis=1)
    vl_block.eval()
    with paddle.no_grad():
        before, _, _, _ = vl_block(x, with_label)
        saved = vl_block.gate.weight_1.numpy().copy()
        vl_block.gate.weight_1.set_value(paddle.randn(saved.shape))
        after, _, _, _ = vl_block(x, with_label)
        vl_block.gate.weight_1.set_value(paddle.to_tensor(saved))
    text = types.numpy()[0] == 0
    np.testing.assert_allclose(after.numpy()[0][text], before.numpy()[0][text], atol=1e-6)
    assert not np.allclose(after.numpy()[0][~text], before.numpy()[0][~text])


def test_text_only_input_routes_among_text_experts(vl_block):
    with paddle.no_grad():
        routing = route(vl_block, paddle.randn([16, 32]))
    assert (routing.expert_ids.numpy() < 4).all()


def test_unknown_token_type_is_refused(vl_block):
    with pytest.raises(ValueError, match=r"token_type_ids \[3\] name no expert group"):
        with paddle.no_grad():
            vl_block(paddle.randn([1, 4, 32]), paddle.to_tensor([[0, 1, 3, 0, 0]], dtype="int64"))


def test_vl_usage_and_bias_updates_are_per_modality(vl_block):
    vl_block.train()
    vl_block.moe_statics.e_score_correction_bias.set_value(paddle.zeros([2, 4]))
    types = paddle.to_tensor([[0] * 30 + [1] * 10 + [0]], dtype="int64")
    # one text and one image token repeated: each modality loads two of its experts only
    x = paddle.concat([paddle.randn([1, 32]).tile([30, 1]), paddle.randn([1, 32]).tile([10, 1])]).unsqueeze(0)
    vl_block(x, types)
    vl_block.eval()
    (load,) = balance_step(moe_blocks(vl_block), bias_update_rate=0.01)
    assert load.groups == [4, 4]
    assert sorted(load.tokens[:4]) == [0, 0, 30, 30] and sorted(load.tokens[4:]) == [0, 0, 10, 10]
    bias = vl_block.moe_statics.e_score_correction_bias.numpy()
    used = np.array(load.tokens).reshape(2, 4) > 0
    np.testing.assert_allclose(bias, np.where(used, -0.01, 0.01), rtol=1e-5)
    vl_block.moe_statics.e_score_correction_bias.set_value(paddle.zeros([2, 4]))


def test_aux_free_balancing_evens_out_a_skewed_router(tiny_moe_dir):
    """The rule the trainer applies after every optimizer step (balance_step) on a router skewed
    towards two experts: the imbalance (max over mean) falls at least twofold in 300 steps."""
    model = load_model(tiny_moe_dir)
    block = first_block(model)
    block.moe_statics.e_score_correction_bias.set_value(paddle.zeros([1, 8]))
    with paddle.no_grad():
        weight = block.gate.weight.numpy()
        weight[:, :2] += 0.05  # tokens' hidden states have a positive mean below, so experts 0-1 win
        block.gate.weight.set_value(paddle.to_tensor(weight))
    block.train()
    rng = np.random.RandomState(0)

    def step(rate):
        block(paddle.to_tensor(rng.randn(256, 128).astype("float32") + 0.5))  # training forward counts usage
        (load,) = [load for load in balance_step(moe_blocks(model), rate) if load.layer == 1]
        return load.imbalance()

    start = np.mean([step(0.0) for _ in range(5)])
    assert start > 2.5, f"the skew should be strong to begin with, imbalance {start}"
    for _ in range(300):
        step(1e-3)
    end = np.mean([step(0.0) for _ in range(5)])
    assert end <= start / 2, f"imbalance {start:.2f} -> {end:.2f}"
