"""ERNIE 4.5 MoE checkpoints with a multi-token-prediction (MTP) layer, as every released 21B and
300B one has: LoRA targets, training (LoRA and full, resumed), merge, export and serving carry the
layer through unchanged (models/mtp.py); and the config keys the studio refuses by name
(models/config_keys.py). On a tiny MoE with one MTP layer built here, no shared files needed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from models.checkpoints import ModelNotFound, copy_tokenizer_files, read_model_config
from tests.conftest import ROOT, example_config, run_trainer
from tests.weights import mtp_names, stored_dtypes, stored_tensor

MTP_PARAMETERS = ["model.mtp_block.0.input_layernorm.weight", "model.mtp_block.0.mlp.down_proj.weight",
                  "model.mtp_block.0.mlp.up_gate_proj.weight", "model.mtp_block.0.post_attention_layernorm.weight",
                  "model.mtp_block.0.self_attn.o_proj.weight", "model.mtp_block.0.self_attn.qkv_proj.weight",
                  "model.mtp_emb_norm.0.weight", "model.mtp_hidden_norm.0.weight", "model.mtp_linear_proj.0.weight"]


@pytest.fixture(scope="module")
def mtp_dir(tiny_moe_dir, tmp_path_factory):
    """The tiny MoE with `num_nextn_predict_layers: 1`, random weights built by paddleformers."""
    from models.tiny import EMBEDDING_SCALE, MODEL_CONFIGS, build_weights

    out = tmp_path_factory.mktemp("tiny-moe-mtp")
    copy_tokenizer_files(tiny_moe_dir, out)
    build_weights({**MODEL_CONFIGS["ernie-4.5-tiny-moe"], "num_nextn_predict_layers": 1}, out, EMBEDDING_SCALE)
    return out


def parameters(model) -> dict[str, np.ndarray]:
    return {name: parameter.numpy() for name, parameter in model.named_parameters()}


def short_job(mtp_dir, **changes) -> dict:
    return example_config("tiny_sft_lora.yaml", **{"model.name_or_path": str(mtp_dir), "optim.max_steps": 2,
                                                   "optim.per_device_batch_size": 2, "logging.logging_steps": 1,
                                                   **changes})


def test_all_linear_expands_to_layer_names_and_leaves_the_mtp_layer_out(mtp_dir):
    import paddle.nn as nn

    from models.loader import load_model
    from trainer.config import ConfigError
    from trainer.train import layer_name, lora_target_patterns

    model = load_model(mtp_dir)
    linear = [name for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)]
    assert "model.mtp_linear_proj.0" in linear
    patterns = lora_target_patterns(model, ["all-linear"])
    adapted = {name for name in linear if any(re.fullmatch(p, name) for p in patterns)}
    assert adapted == {name for name in linear if ".mtp_" not in name and not name.endswith(".gate")}
    assert layer_name("model.mtp_linear_proj.0") == "mtp_linear_proj"
    with pytest.raises(ConfigError, match="'mtp_linear_proj' matches no linear layer .*carried through unchanged"):
        lora_target_patterns(model, ["mtp_linear_proj"])


def test_a_layer_kept_in_a_list_is_targeted_by_the_list_name():
    import paddle.nn as nn

    from trainer.train import lora_target_patterns

    class Body(nn.Layer):
        def __init__(self):
            super().__init__()
            self.proj = nn.LayerList([nn.Linear(2, 2), nn.Linear(2, 2)])

    class Net(nn.Layer):
        def __init__(self):
            super().__init__()
            self.model = Body()

    patterns = lora_target_patterns(Net(), ["all-linear"])
    assert len(patterns) == 1 and all(re.fullmatch(patterns[0], n) for n in ("model.proj.0", "model.proj.1"))


def test_a_loaded_mtp_model_trains_and_evaluates_as_its_main_model(mtp_dir):
    """paddleformers runs the MTP layer in training (and then wants `nbatch_pack_offset`) and drops
    the last label in evaluation; loaded by the studio the model runs its main layers only."""
    from models.loader import load_model
    from models.mtp import carried_layers, checkpoint_layout

    model = load_model(mtp_dir)
    assert carried_layers(model) == 1 and model.config.num_nextn_predict_layers == 0
    with checkpoint_layout(model):
        assert model.config.num_nextn_predict_layers == 1
    assert model.config.num_nextn_predict_layers == 0
    assert sorted(name for name, _ in model.named_parameters() if ".mtp_" in name) == MTP_PARAMETERS
    ids = paddle.to_tensor([[2, 17, 99, 5, 300, 41, 7, 3]])
    model.train()
    loss = model(ids, labels=ids, return_dict=True).loss
    loss.backward()
    gradients = {name: p.grad is not None for name, p in model.named_parameters()}
    assert not any(gradients[name] for name in MTP_PARAMETERS)
    assert gradients["model.layers.0.self_attn.qkv_proj.weight"]
    model.eval()
    with paddle.no_grad():
        assert np.isfinite(model(ids, labels=ids, return_dict=True).loss.item())


def test_lora_training_merge_and_export_carry_the_mtp_layer_unchanged(mtp_dir, tmp_path):
    from models.loader import load_checkpoint
    from models.mtp import carried_layers, is_mtp

    job = tmp_path / "lora"
    result = run_trainer(short_job(mtp_dir), job)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 multi-token-prediction layer(s) are carried through unchanged" in result.stdout
    targets = json.loads((job / "output" / "lora_config.json").read_text())["target_modules"]
    assert not any(re.fullmatch(t, n) for t in targets for n in ("model.mtp_linear_proj.0",
                                                                 "model.mtp_block.0.self_attn.qkv_proj"))

    export = subprocess.run([sys.executable, "-m", "trainer", "export", str(job), "--merge", "-o", str(tmp_path / "x")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    export = tmp_path / "x"
    assert stored_dtypes(export) == stored_dtypes(mtp_dir), "the base's tensors, no more (no zero biases), no less"
    assert len(mtp_names(mtp_dir)) == 12 and all(is_mtp(name) for name in mtp_names(mtp_dir))
    for name in mtp_names(mtp_dir):
        assert np.array_equal(stored_tensor(export, name), stored_tensor(mtp_dir, name)), name
    assert not np.array_equal(stored_tensor(export, "model.layers.0.self_attn.q_proj.weight"),
                              stored_tensor(mtp_dir, "model.layers.0.self_attn.q_proj.weight"))
    assert (export / "config.json").read_text() == (mtp_dir / "config.json").read_text()

    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams

    model, tokenizer = load_checkpoint(str(export))
    assert carried_layers(model) == 1
    _, reply = ChatEngine(model, tokenizer).reply([{"role": "user", "content": "Hello"}],
                                                  SamplingParams(temperature=0, max_tokens=4))
    assert isinstance(reply, str)


def test_full_training_keeps_the_mtp_layer_frozen(mtp_dir, tmp_path):
    from models.loader import load_model

    job = tmp_path / "full"
    result = run_trainer(short_job(mtp_dir, **{"finetuning.type": "full", "logging.save_steps": 1}), job)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert read_model_config(job / "output")["num_nextn_predict_layers"] == 1
    assert read_model_config(job / "checkpoints" / "checkpoint-1")["num_nextn_predict_layers"] == 1

    base, tuned = parameters(load_model(mtp_dir)), parameters(load_model(job / "output"))
    assert tuned.keys() == base.keys()
    assert all(np.array_equal(tuned[name], base[name]) for name in MTP_PARAMETERS)
    assert not np.array_equal(tuned["model.layers.0.self_attn.qkv_proj.weight"],
                              base["model.layers.0.self_attn.qkv_proj.weight"])


def _with_config(source, target, **changes):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_the_mtp_layers_built_are_the_ones_the_weights_hold(mtp_dir, tiny_moe_dir, tmp_path):
    from models.loader import load_model
    from models.mtp import carried_layers

    # paddleformers' MoE config defaults to one MTP layer: without the key it would add a random one
    unsaid = load_model(_with_config(mtp_dir, tmp_path / "unsaid", num_nextn_predict_layers=None))
    assert carried_layers(unsaid) == 1
    assert np.array_equal(parameters(unsaid)["model.mtp_linear_proj.0.weight"],
                          parameters(load_model(mtp_dir))["model.mtp_linear_proj.0.weight"])
    assert carried_layers(load_model(_with_config(tiny_moe_dir, tmp_path / "none", num_nextn_predict_layers=None))) == 0
    claimed = _with_config(tiny_moe_dir, tmp_path / "claimed", num_nextn_predict_layers=1)
    with pytest.raises(ModelNotFound, match="num_nextn_predict_layers is 1 but the weights .* hold 0"):
        load_model(claimed)
    with pytest.raises(ModelNotFound, match="pipeline-parallel .* would drop"):
        load_model(mtp_dir, pipeline=True)


BASE_MOE = {"model_type": "ernie4_5_moe", "hidden_size": 64, "moe_num_experts": 8}


@pytest.mark.parametrize("changes, words", [
    ({"use_rmsnorm": False}, "use_rmsnorm is False: paddleformers' ERNIE 4.5 classes always use RMSNorm"),
    ({"moe_gate": "top2_fused"}, "moe_gate is 'top2_fused'"),
    ({"model_type": "ernie4_5", "num_nextn_predict_layers": 1}, "num_nextn_predict_layers is 1: paddleformers' dense"),
    ({"moe_aux_loss_lambda": 1e-5}, "moe_aux_loss_lambda is ERNIEKit's name, .* rename it to router_aux_loss_coef"),
    ({"quantization_config": {"quantization": "wint8", "weight_quantize_algo": "weight_only_int8"}},
     "quantization_config.weight_quantize_algo: only FastDeploy's serving recipe"),
])
def test_config_values_paddleformers_would_ignore_are_refused_by_name(tmp_path, changes, words):
    (tmp_path / "config.json").write_text(json.dumps({**BASE_MOE, **changes}))
    with pytest.raises(ModelNotFound, match=re.escape(str(tmp_path / "config.json")) + ": .*" + words):
        read_model_config(tmp_path)


def test_fastdeploy_quantization_recipe_is_accepted_and_carried(tmp_path):
    from models.checkpoints import carry_config_keys

    recipe = {"quantization": "mix_quant", "dense_quant_type": "wint8", "moe_quant_type": "w4a8",
              "kv_cache_quant_type": "int8", "modules_to_quant": {"wint8": {"layer_range": "3-7"}}}
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps({**BASE_MOE, "quantization_config": recipe,
                                                               "num_nextn_predict_layers": 1}))
    assert read_model_config(tmp_path / "base")["quantization_config"] == recipe
    # what paddleformers writes when it saves that config: part of the recipe only
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text(json.dumps({
        **BASE_MOE, "num_nextn_predict_layers": 0,
        "quantization_config": {"quantization": "mix_quant", "dense_quant_type": "wint8", "moe_quant_type": "w4a8"}}))
    carry_config_keys(tmp_path / "saved", tmp_path / "base")
    saved = read_model_config(tmp_path / "saved")
    assert saved["quantization_config"] == recipe and saved["num_nextn_predict_layers"] == 1
