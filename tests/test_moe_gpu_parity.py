"""The portable MoE dispatch against paddleformers' fused GPU path on the same weights: outputs,
router loss and gate gradients. Runs only on a CUDA build of paddle with a GPU (skipped elsewhere);
the measured differences are written to tests/artifacts/moe_gpu_parity.json for docs/moe.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from models.loader import load_model
from models.moe_dispatch import PortableMoeBlock, moe_blocks

ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "moe_gpu_parity.json"

pytestmark = pytest.mark.skipif(
    not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0),
    reason="compares with paddleformers' fused MoE kernels, which need a CUDA GPU")


def run_block(block, x):
    block.train()
    block.clear_gradients()
    x = x.clone()
    x.stop_gradient = False
    out, _, router_loss, _ = block(x)
    (out.astype("float32").square().mean() + router_loss.sum()).backward()
    return out.numpy(), float(router_loss.sum()), block.gate.weight.grad.numpy(), x.grad.numpy()


def test_portable_dispatch_matches_the_fused_gpu_path(tiny_moe_dir):
    paddle.set_device("gpu")
    fused_model = load_model(tiny_moe_dir, moe_dispatch="fused")
    portable_model = load_model(tiny_moe_dir, moe_dispatch="portable")
    figures = {}
    for (layer, fused), (_, portable) in zip(moe_blocks(fused_model), moe_blocks(portable_model)):
        assert not isinstance(fused, PortableMoeBlock) and isinstance(portable, PortableMoeBlock)
        paddle.seed(layer)
        x = paddle.randn([4, 64, fused_model.config.hidden_size])
        out_f, loss_f, gate_f, dx_f = run_block(fused, x)
        out_p, loss_p, gate_p, dx_p = run_block(portable, x)
        figures[f"layer {layer}"] = {
            "output_max_abs_diff": float(np.abs(out_f - out_p).max()),
            "router_loss_abs_diff": abs(loss_f - loss_p),
            "gate_grad_max_abs_diff": float(np.abs(gate_f - gate_p).max()),
            "gate_grad_max_abs": float(np.abs(gate_f).max()),
            "input_grad_max_abs_diff": float(np.abs(dx_f - dx_p).max()),
        }
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"device": paddle.device.cuda.get_device_name(), "paddle": paddle.__version__,
                                    "layers": figures}, indent=2))
    for layer, f in figures.items():
        assert f["output_max_abs_diff"] < 1e-4, (layer, f)
        assert f["router_loss_abs_diff"] < 1e-5, (layer, f)
        assert f["gate_grad_max_abs_diff"] <= 1e-3 * max(f["gate_grad_max_abs"], 1e-6) + 1e-6, (layer, f)
        assert f["input_grad_max_abs_diff"] < 1e-4, (layer, f)
