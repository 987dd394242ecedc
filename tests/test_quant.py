"""Weight-only quantization (models/quant_spec.py, quant.py, quant_io.py): the numpy reference and
its error bound, int4 packing, the portable Paddle forward and its gradients, quantizing the tiny
models in place, quantized checkpoints written and loaded in a fresh process, and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.quant_spec import GROUP_SIZES, QuantError, QuantSpec, keeps_full_precision, parse_spec

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [5, 100, 200, 300, 400, 17, 33, 901, 1200, 77]
CASES = [(bits, group) for bits in (8, 4) for group in GROUP_SIZES]


def greedy(model, prompt=PROMPT, steps: int = 8) -> tuple[list[int], np.ndarray]:
    """(greedy continuation, logits of the prompt) without a KV cache: the same code in and out of
    process."""
    import paddle

    ids = list(prompt)
    with paddle.no_grad():
        logits = model(paddle.to_tensor([ids])).logits.numpy()[0]
        for _ in range(steps):
            ids.append(int(model(paddle.to_tensor([ids])).logits.numpy()[0, -1].argmax()))
    return ids[len(prompt):], logits


def quantized_copy(model_dir: Path, width: str, group_size: int = -1):
    from models.loader import load_model
    from models.quant import quantize_model

    model = load_model(model_dir)
    model.eval()
    return model, quantize_model(model, QuantSpec(width, group_size))


# ---- numpy reference ----------------------------------------------------------------------------

@pytest.mark.parametrize("bits,group_size", CASES)
def test_round_trip_error_is_within_half_a_step(bits, group_size):
    from models.quant import QMAX, dequantize_np, quantize_np

    w = np.random.default_rng(bits + group_size).standard_normal((256, 48)).astype(np.float32) * 0.05
    w[:, 3] = 0.0  # a column of zeros gets scale 0 and dequantizes to 0
    q, scale = quantize_np(w, bits, group_size)
    groups = 1 if group_size == -1 else 256 // group_size
    assert q.dtype == np.int8 and scale.shape == (groups, 48) and np.abs(q).max() == QMAX[bits]
    restored = dequantize_np(q, scale, group_size)
    step = np.repeat(scale, 256 // groups, axis=0)
    assert np.all(np.abs(w - restored) <= step / 2 * (1 + 1e-5))
    assert np.all(restored[:, 3] == 0)
    # the bound is tight: some element is off by close to half a step
    assert np.max(np.abs(w - restored) / np.where(step > 0, step, 1)) > 0.45


@pytest.mark.parametrize("rows", [1, 2, 7, 64, 129])
def test_int4_packing_round_trips_exactly(rows):
    from models.quant import pack_int4, unpack_int4

    q = np.random.default_rng(rows).integers(-7, 8, (rows, 15)).astype(np.int8)
    q[0, :15] = np.arange(-7, 8)
    packed = pack_int4(q)
    assert packed.dtype == np.int8 and packed.shape == ((rows + 1) // 2, 15)
    np.testing.assert_array_equal(unpack_int4(packed, rows), q)


# ---- portable Paddle ----------------------------------------------------------------------------

@pytest.mark.parametrize("bits,group_size", CASES)
def test_portable_forward_matches_the_numpy_reference(bits, group_size):
    import paddle

    from models.quant import QuantizedLinear, dequantize_np, unpack_int4

    paddle.seed(bits * 7 + group_size)
    linear = paddle.nn.Linear(129 if group_size == -1 else 128, 40)
    layer = QuantizedLinear.from_linear(linear, bits, group_size, "test.linear")
    ints = layer.quant_weight.numpy()
    ints = unpack_int4(ints, linear.weight.shape[0]) if bits == 4 else ints
    reference = dequantize_np(ints, layer.weight_scale.numpy(), group_size)
    np.testing.assert_array_equal(layer.dequantized_weight().numpy(),
                                  reference)

    x = paddle.randn([3, 5, linear.weight.shape[0]])
    x.stop_gradient = False
    y = layer(x)
    np.testing.assert_allclose(y.numpy(), x.numpy() @ reference + linear.bias.numpy(), rtol=0, atol=2e-5)
    upstream = paddle.randn(y.shape)
    (y * upstream).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), upstream.numpy() @ reference.T, rtol=0, atol=2e-5)
    assert layer.quant_weight.grad is None and layer.weight_scale.grad is None


def test_lora_on_a_quantized_base_trains_only_the_adapter():
    import paddle
    from paddleformers.peft.lora.lora_layers import LoRALinear

    from models.quant import QuantizedLoRALinear

    paddle.seed(1)
    lora = LoRALinear(64, 32, r=4, lora_alpha=8)
    lora.lora_B.set_value(paddle.randn(lora.lora_B.shape) * 0.1)
    layer = QuantizedLoRALinear(lora, 4, 64, "test.lora")
    assert layer.lora_A is lora.lora_A and layer.lora_B is lora.lora_B and "weight" not in layer._parameters
    x = paddle.randn([6, 64])
    x.stop_gradient = False
    y = layer(x)
    base = layer.dequantized_weight().numpy()
    expected = x.numpy() @ base + x.numpy() @ lora.lora_A.numpy() @ lora.lora_B.numpy() * lora.scaling
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=2e-5)
    y.sum().backward()
    assert lora.lora_A.grad is not None and lora.lora_B.grad is not None and x.grad is not None
    assert layer.quant_weight.grad is None
    with pytest.raises(QuantError, match="full-precision base"):
        layer.merge()


# ---- whole models -------------------------------------------------------------------------------

def test_quantized_dense_model_stays_close(tiny_dense_dir):
    from models.loader import load_model
    from models.quant import QuantizedLinear

    reference = load_model(tiny_dense_dir)
    reference.eval()
    _, expected = greedy(reference, steps=0)
    model, summary = quantized_copy(tiny_dense_dir, "wint8")
    _, logits = greedy(model, steps=0)
    # measured 0.049 on logits of magnitude ~4.7
    assert np.abs(logits - expected).max() < 0.1
    assert summary.layers == {8: 16} and all(isinstance(layer, QuantizedLinear) for layer in
                                             (model.model.layers[0].self_attn.qkv_proj,
                                              model.model.layers[3].mlp.down_proj))
    assert summary.bytes_after < 0.45 * summary.bytes_before  # float32 -> int8 linear layers


def test_wint4_8_on_the_moe_gives_int4_experts_and_int8_elsewhere(tiny_moe_dir):
    import paddle

    from models.loader import load_model
    from models.quant import quantized_layers, weight_bytes

    reference = load_model(tiny_moe_dir)
    reference.eval()
    _, expected = greedy(reference, steps=0)
    model, summary = quantized_copy(tiny_moe_dir, "wint4/8")
    bits = {name: layer.bits for name, layer in quantized_layers(model)}
    assert bits["model.layers.1.mlp.experts.5.up_gate_proj"] == 4
    assert bits["model.layers.2.mlp.shared_experts.down_proj"] == 8
    assert bits["model.layers.1.self_attn.qkv_proj"] == 8 and bits["model.layers.0.mlp.down_proj"] == 8
    assert summary.layers == {4: 48, 8: 16} and summary.to_dict()["layers"] == {"int4": 48, "int8": 16}
    assert all(not keeps_full_precision(name) for name in bits)
    assert isinstance(model.model.layers[1].mlp.gate.weight, paddle.Tensor)
    assert model.model.embed_tokens.weight.dtype == paddle.float32
    assert weight_bytes(model, "bfloat16") < 0.5 * weight_bytes(reference, "bfloat16")
    _, logits = greedy(model, steps=0)
    # an MoE block routes a token elsewhere when its top gate scores are close, so single logits
    # can move (measured max 0.89 at one position) while the bulk stays close (median 0.069)
    assert np.median(np.abs(logits - expected)) < 0.15
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() >= 0.7


def test_the_vl_model_quantizes_its_language_model_only(workdir):
    import paddle

    from models.loader import load_model
    from models.quant import quantized_layers
    from models.tiny import ensure_built
    from models.vl_inputs import VisionInput, prompt_inputs

    model_dir = ensure_built("ernie-4.5-tiny-vl", workdir / "models")
    text = VisionInput()
    text.add_text(PROMPT, learned=False)
    reference = load_model(model_dir)
    reference.eval()
    with paddle.no_grad():
        expected = reference(**prompt_inputs(text), use_cache=False, return_dict=True).logits.numpy()
    model, summary = quantized_copy(model_dir, "wint4/8")
    names = [name for name, _ in quantized_layers(model)]
    assert names and all(name.startswith("model.layers.") for name in names)
    assert any(".mlp.experts." in name for name in names) and summary.layers[4] > 0
    assert isinstance(model.vision_model.blocks[0].attn.qkv, paddle.nn.Linear)
    assert isinstance(model.model.resampler_model.mlp, paddle.nn.Linear)
    with paddle.no_grad():
        logits = model(**prompt_inputs(text), use_cache=False, return_dict=True).logits.numpy()
    # measured: median |difference| 0.088 (max 0.56, logits up to 4.4), 8 of 10 argmax tokens the same
    assert np.median(np.abs(logits - expected)) < 0.2 and (logits.argmax(-1) == expected.argmax(-1)).mean() >= 0.7


def test_lora_model_quantized_after_wrapping_keeps_its_adapter(tiny_moe_dir):
    import paddle
    from paddleformers.peft import LoRAConfig, LoRAModel

    from models.loader import load_model
    from models.quant import QuantizedLoRALinear, quantize_model

    def wrapped():
        model = LoRAModel(load_model(tiny_moe_dir), LoRAConfig(target_modules=[".*_proj"], r=4, lora_alpha=8))
        model.mark_only_lora_as_trainable()
        return model

    plain = wrapped()
    model = wrapped()
    quantize_model(model, QuantSpec("wint4/8"))
    assert sum(isinstance(layer, QuantizedLoRALinear) for layer in model.sublayers()) == 64
    # the adapter is the one a full-precision base would carry, name for name
    assert list(model.get_trainable_state_dict()) == list(plain.get_trainable_state_dict())
    ids = paddle.to_tensor([PROMPT])
    model(input_ids=ids, labels=ids).loss.backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trained and all("lora_" in name for name in trained)
    assert any("experts.3.up_gate_proj.lora_B" in name for name in trained)


def test_a_saved_quantized_checkpoint_reloads_in_a_fresh_process(tiny_moe_dir, tmp_path):
    from models.checkpoints import check_checkpoint_dir
    from models.quant_io import save_quantized

    model, _ = quantized_copy(tiny_moe_dir, "wint4/8")
    tokens, logits = greedy(model)
    out = save_quantized(model, QuantSpec("wint4/8"), tmp_path / "q", source_dir=tiny_moe_dir)
    config = check_checkpoint_dir(out)
    assert config["quantization_config"] == QuantSpec("wint4/8").to_config()
    assert not (tmp_path / "q.partial").exists()
    script = ("import json, sys; from tests.test_quant import greedy; from models.loader import load_model; "
              "m = load_model(sys.argv[1]); m.eval(); t, l = greedy(m); "
              "print(json.dumps({'tokens': t, 'logits': l.tolist()}))")
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["tokens"] == tokens
    np.testing.assert_allclose(np.asarray(reloaded["logits"]), logits, rtol=0, atol=1e-5)


def test_the_mtp_layer_stays_full_precision_and_comes_back_unchanged(tiny_moe_dir, tmp_path):
    from models.checkpoints import copy_tokenizer_files
    from models.loader import load_model
    from models.mtp import is_mtp, stored_mtp_layers
    from models.quant import quantize_model, quantized_layers
    from models.quant_io import save_quantized
    from models.tiny import EMBEDDING_SCALE, MODEL_CONFIGS, build_weights

    source = tmp_path / "mtp"
    source.mkdir()
    copy_tokenizer_files(tiny_moe_dir, source)
    build_weights({**MODEL_CONFIGS["ernie-4.5-tiny-moe"], "num_nextn_predict_layers": 1}, source, EMBEDDING_SCALE)
    model = load_model(source)
    before = {name: p.numpy() for name, p in model.named_parameters() if is_mtp(name)}
    quantize_model(model, QuantSpec("wint8"))
    assert before and not any(is_mtp(name) for name, _ in quantized_layers(model))
    out = save_quantized(model, QuantSpec("wint8"), tmp_path / "q", source_dir=source)
    assert stored_mtp_layers(out) == 1
    reloaded = {name: p.numpy() for name, p in load_model(out).named_parameters() if is_mtp(name)}
    assert reloaded.keys() == before.keys()
    assert all(np.array_equal(reloaded[name], before[name]) for name in before)


REAL_0P3B = ROOT.parent / "shared" / "real_ernie" / "ERNIE-4.5-0.3B-Base-PT"


@pytest.mark.skipif(not REAL_0P3B.is_dir(), reason=f"{REAL_0P3B} is absent")
def test_a_real_width_model_takes_group_wise_wint4(tmp_path):
    """The released 0.3B config at full width (2 layers): every linear layer's input rows divide
    by 128, so group-wise int4 applies, and its checkpoint reloads in a fresh process."""
    from models.quant_io import save_quantized
    from tests.test_real_checkpoints import build

    source = build("0.3B", tmp_path / "real")
    model, summary = quantized_copy(source, "wint4", 128)
    assert summary.layers == {4: 8} and summary.bytes_after < summary.bytes_before
    tokens, _ = greedy(model, steps=4)
    out = save_quantized(model, QuantSpec("wint4", 128), tmp_path / "q", source_dir=source)
    script = ("import sys; from tests.test_quant import greedy; from models.loader import load_model; "
              "m = load_model(sys.argv[1]); m.eval(); print(greedy(m, steps=4)[0])")
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(tokens)


# ---- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("width,group_size,says", [
    ("int3", -1, "unsupported bit width 'int3'; supported: wint8, wint4, wint4/8"),
    ("wint8", 32, "unsupported group size 32; supported: -1, 64, 128"),
    ("fp8", -1, "compute capability 8.9"),
    ("wfp8afp8", 128, "fp8 weights need a CUDA GPU"),
    ("wint2", -1, "2-bit weights are not offered"),
    ("2bit", 64, "convolutional code quantization"),
])
def test_unsupported_requests_are_refused_with_the_reason(width, group_size, says):
    with pytest.raises(QuantError) as caught:
        parse_spec(width, group_size)
    assert says in str(caught.value)
    assert parse_spec("wint4/8", "128") == QuantSpec("wint4/8", 128)


def test_a_group_size_that_does_not_divide_a_layer_changes_nothing(tiny_moe_dir, tmp_path):
    from models.loader import load_model
    from models.quant import quantize_model, quantized_layers

    model = load_model(tiny_moe_dir)
    with pytest.raises(QuantError, match=r"layer model\.layers\.0\.mlp\.down_proj \[344, 128\]: group size 64 "
                                         r"does not divide its 344 input rows"):
        quantize_model(model, QuantSpec("wint8", 64))
    assert quantized_layers(model) == []


def test_saving_under_another_spec_writes_nothing(tiny_moe_dir, tmp_path):
    from models.quant_io import save_quantized

    model, _ = quantized_copy(tiny_moe_dir, "wint8")
    with pytest.raises(QuantError, match="is int8 with group size -1, but wint4 with group size -1 makes it int4"):
        save_quantized(model, QuantSpec("wint4"), tmp_path / "q", source_dir=tiny_moe_dir)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def saved_wint8(tiny_moe_dir, tmp_path_factory) -> Path:
    from models.quant_io import save_quantized

    model, _ = quantized_copy(tiny_moe_dir, "wint8")
    return save_quantized(model, QuantSpec("wint8"), tmp_path_factory.mktemp("quant") / "wint8",
                          source_dir=tiny_moe_dir)


def broken_copy(saved: Path, tmp_path: Path, drop: str | None = None, config_change: dict | None = None) -> Path:
    from safetensors.numpy import load_file, save_file

    target = tmp_path / "broken"
    target.mkdir()
    for item in saved.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    if drop:
        tensors = load_file(str(target / "model.safetensors"))
        del tensors[drop]
        save_file(tensors, str(target / "model.safetensors"))
    if config_change:
        config = json.loads((target / "config.json").read_text())
        config["quantization_config"].update(config_change)
        (target / "config.json").write_text(json.dumps(config))
    return target


def test_a_missing_scale_is_refused_by_name(saved_wint8, tmp_path):
    from models.checkpoints import ModelNotFound
    from models.loader import load_model

    broken = broken_copy(saved_wint8, tmp_path, drop="model.layers.2.mlp.experts.4.down_proj.weight_scale")
    with pytest.raises(ModelNotFound, match=r"no tensor 'model\.layers\.2\.mlp\.experts\.4\.down_proj\.weight_scale' "
                                            r"\(the scales of quantized layer model\.layers\.2\.mlp\.experts\.4"):
        load_model(broken)


def test_shapes_that_disagree_with_the_config_are_refused(saved_wint8, tmp_path):
    from models.loader import load_model

    broken = broken_copy(saved_wint8, tmp_path, config_change={"weight_quantize_algo": "weight_only_int4"})
    with pytest.raises(QuantError, match=r"model\.safetensors: tensor 'model\.layers\.0\.self_attn\.qkv_proj\."
                                         r"quant_weight' has shape \[128, 256\], but config\.json \(wint4, group "
                                         r"size -1\) makes it \[64, 256\]"):
        load_model(broken)


def test_an_unknown_quantization_config_is_refused_by_key(saved_wint8, tmp_path):
    from models.checkpoints import ModelNotFound
    from models.loader import load_model

    broken = broken_copy(saved_wint8, tmp_path, config_change={"group_size": 96})
    with pytest.raises(ModelNotFound, match=r"config\.json: quantization_config\.group_size: unsupported group "
                                            r"size 96"):
        load_model(broken)


# ---- the fused GPU kernel -----------------------------------------------------------------------

def _cuda() -> bool:
    import paddle

    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


@pytest.mark.parametrize("bits,group_size", CASES)
def test_fused_kernel_matches_the_portable_path(bits, group_size):
    if not _cuda():
        pytest.skip("Paddle's fused weight_only_linear needs a CUDA device")
    import paddle

    from models.quant import QuantizedLinear, use_fused_kernels

    device = paddle.device.get_device()
    paddle.set_device("gpu")
    try:
        paddle.seed(3)
        layer = QuantizedLinear.from_linear(paddle.nn.Linear(256, 128, bias_attr=False), bits, group_size, "test")
        x = paddle.randn([4, 256]).astype("float16")
        portable = layer(x).astype("float32").numpy()
        assert use_fused_kernels(layer) == 1
        fused = layer(x).astype("float32").numpy()
    finally:
        paddle.set_device(device)
    np.testing.assert_allclose(fused, portable, rtol=1e-2, atol=1e-2)
