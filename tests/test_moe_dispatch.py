"""The portable MoE dispatch against a naive per-token reference, and its gradients."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from models.loader import load_model
from models.moe_dispatch import PortableMoeBlock, orthogonal_loss


@pytest.fixture(scope="module")
def moe_block(tiny_moe_dir):
    paddle.set_device("cpu")
    model = load_model(tiny_moe_dir)
    blocks = [layer for layer in model.sublayers() if isinstance(layer, PortableMoeBlock)]
    assert len(blocks) == 3, "layers 1-3 of the tiny model are MoE, all switched to the portable dispatch"
    block = blocks[0]
    paddle.seed(7)
    # a non-zero correction bias, so the test also covers "bias picks, scores weigh"
    block.moe_statics.e_score_correction_bias.set_value(paddle.randn([1, 8]) * 0.05)
    return block


def naive_reference(block, x):
    """Token by token: softmax scores, top-k by score + bias, renormalised weights, experts + shared."""
    x_np = x.numpy().reshape([-1, x.shape[-1]])
    gate = block.gate.weight.numpy().astype("float64")
    bias = block.moe_statics.e_score_correction_bias.numpy()[0]
    outputs = []
    for token in x_np:
        logits = token.astype("float64") @ gate
        scores = np.exp(logits - logits.max())
        scores /= scores.sum()
        chosen = np.argsort(-(scores + bias), kind="stable")[: block.k]
        weights = scores[chosen] / max(scores[chosen].sum(), block.config.moe_norm_min)
        token_tensor = paddle.to_tensor(token[None, :])
        out = block.shared_experts(token_tensor).numpy()[0].astype("float64")
        for expert, weight in zip(chosen, weights):
            out += weight * block.experts[int(expert)](token_tensor).numpy()[0]
        outputs.append(out)
    return np.stack(outputs).reshape(x.shape)


def test_matches_naive_per_token_reference(moe_block):
    paddle.seed(1)
    x = paddle.randn([3, 11, 128])
    with paddle.no_grad():
        out, weights, router_loss, logits = moe_block(x)
    np.testing.assert_allclose(out.numpy(), naive_reference(moe_block, x), atol=1e-5, rtol=1e-5)
    assert weights.shape == [33, 2] and logits.shape == [33, 8]


def test_correction_bias_changes_choice_not_weights(moe_block):
    paddle.seed(2)
    x = paddle.randn([64, 128])
    from models.moe_dispatch import route

    with paddle.no_grad():
        saved = moe_block.moe_statics.e_score_correction_bias.numpy().copy()
        moe_block.moe_statics.e_score_correction_bias.set_value(paddle.zeros([1, 8]))
        plain = route(moe_block, x)
        boost = np.zeros([1, 8], dtype="float32")
        boost[0, 5] = 10.0
        moe_block.moe_statics.e_score_correction_bias.set_value(paddle.to_tensor(boost))
        biased = route(moe_block, x)
        moe_block.moe_statics.e_score_correction_bias.set_value(paddle.to_tensor(saved))
    ids_biased = biased.expert_ids.numpy()
    assert (ids_biased == 5).any(axis=1).all(), "a large bias makes expert 5 chosen for every token"
    chosen_scores = np.take_along_axis(plain.scores[0].numpy(), ids_biased, axis=1)
    np.testing.assert_allclose(biased.weights.numpy(), chosen_scores / chosen_scores.sum(1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_allclose(biased.scores[0].numpy(), plain.scores[0].numpy())
    assert not np.array_equal(plain.expert_ids.numpy(), ids_biased)


def test_gradients_reach_gate_and_every_selected_expert(moe_block):
    moe_block.train()
    moe_block.clear_gradients()
    paddle.seed(3)
    x = paddle.randn([2, 9, 128])
    x.stop_gradient = False
    out, _, router_loss, logits = moe_block(x)
    assert not router_loss.stop_gradient, "the router loss must carry a gradient"
    (out.square().mean() + router_loss.sum()).backward()

    gate_grad = moe_block.gate.weight.grad
    assert gate_grad is not None and float(gate_grad.abs().sum()) > 0
    from models.moe_dispatch import route

    with paddle.no_grad():
        expert_ids = route(moe_block, x.detach().reshape([-1, 128])).expert_ids
    selected = set(expert_ids.numpy().ravel().tolist())
    for index, expert in enumerate(moe_block.experts):
        grad = expert.up_gate_proj.weight.grad
        if index in selected:
            assert grad is not None and float(grad.abs().sum()) > 0, f"expert {index} was selected but got no gradient"
        else:
            assert grad is None or float(grad.abs().sum()) == 0
    assert float(moe_block.shared_experts.down_proj.weight.grad.abs().sum()) > 0
    moe_block.eval()


def test_router_loss_gradient_alone_reaches_gate(moe_block):
    x = paddle.randn([256, 128])
    _, _, eval_loss, _ = moe_block(x)
    assert float(eval_loss.sum()) == 0.0, "no router loss outside training"
    moe_block.train()
    moe_block.clear_gradients()
    _, _, router_loss, _ = moe_block(x)
    router_loss.sum().backward()
    moe_block.eval()
    assert float(moe_block.gate.weight.grad.abs().sum()) > 0


def test_orthogonal_loss_zero_for_orthogonal_rows():
    gate = paddle.eye(8, dtype="float32")[:, :4] * 3.0  # [hidden=8, experts=4], orthogonal expert vectors
    assert float(orthogonal_loss(gate)) == pytest.approx(0.0, abs=1e-7)
    same = paddle.ones([8, 4], dtype="float32")
    assert float(orthogonal_loss(same)) > 0.5


def test_whole_model_trains_and_generates_on_cpu(tiny_moe_dir):
    model = load_model(tiny_moe_dir)
    model.train()
    ids = paddle.randint(3, 1000, [2, 12])
    labels = paddle.concat([ids[:, 1:], paddle.full([2, 1], -100, dtype=ids.dtype)], axis=1)
    loss = model(ids, labels=labels, return_dict=True).loss
    loss.backward()
    assert np.isfinite(float(loss))
    model.eval()
    with paddle.no_grad():
        new_ids, _ = model.generate(ids[:1, :4], max_new_tokens=5, decode_strategy="greedy_search")
    assert new_ids.shape == [1, 5]


def test_expert_load_is_counted_in_training_only_and_taken_once(tiny_moe_dir):
    from models.moe_dispatch import balance_step, moe_blocks

    model = load_model(tiny_moe_dir)
    ids = paddle.randint(5, 1000, [2, 12])
    model.eval()
    with paddle.no_grad():
        model(ids, return_dict=True)
    assert all(sum(load.tokens) == 0 for load in balance_step(moe_blocks(model)))
    model.train()
    model(ids, return_dict=True)
    loads = balance_step(moe_blocks(model))
    assert [load.layer for load in loads] == [1, 2, 3]
    assert all(len(load.tokens) == 8 and sum(load.tokens) == 2 * 12 * 2 for load in loads)  # k=2 per token
    assert all(sum(load.tokens) == 0 for load in balance_step(moe_blocks(model)))
