"""LoRA on a quantized base (`finetuning.base_quant`, trainer/quantized_base.py): a LoRA trained on a
wint4/8 base of the tiny MoE is an ordinary adapter that still gives the trained answers on the
full-precision base; the refusals (full fine-tuning, tensor parallelism, a checkpoint quantized
already, a group size that does not divide a layer) come from validation, before anything loads,
and one found only while the job starts is a one-line job error."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from models.checkpoints import adapter_base, read_model_config
from models.quant_spec import QuantSpec, is_studio_quantized
from tests.conftest import example_config, exact_answer_rate, run_as_written_elsewhere, run_trainer
from trainer import config as C

BASE = {"finetuning.base_quant": "wint4/8"}


@pytest.fixture(scope="module")
def quant_job(workdir, tiny_moe_dir):
    """The SFT-LoRA example on a wint4/8 base, with the steps and rate the `lora_job` fixture trains."""
    job_dir = workdir / "jobs" / "lora-wint4-8"
    config = example_config("tiny_sft_lora.yaml", **BASE, **{"optim.num_train_epochs": 20,
                                                            "optim.learning_rate": 3e-3})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir, result.stdout


def test_a_lora_trained_on_a_wint4_8_base_gives_the_answers_on_the_full_precision_base(quant_job):
    from models.loader import load_checkpoint

    job_dir, log = quant_job
    assert "base quantized to wint4/8 (group size -1): 48 int4, 16 int8 linear layers" in log
    model, tokenizer = load_checkpoint(str(job_dir / "output"))
    assert not any(type(layer).__name__.startswith("Quantized") for layer in model.sublayers())
    assert exact_answer_rate(model, tokenizer) >= 0.8


def test_the_adapter_holds_only_lora_tensors_and_names_the_full_precision_base(quant_job):
    job_dir, _ = quant_job
    files = list((job_dir / "output").glob("*.safetensors"))
    assert files
    names = [name for path in files for name in safe_open(str(path), "np").keys()]
    assert names and all(name.endswith((".lora_A", ".lora_B")) for name in names), names
    assert not is_studio_quantized(read_model_config(adapter_base(job_dir / "output")))


def with_(changes: dict) -> dict:
    return example_config("tiny_sft_lora.yaml", **changes)


def problems(config: dict, local: bool = True) -> dict:
    with pytest.raises(C.ConfigError) as caught:
        C.from_dict(config, local=local)
    return {key: message for key, message in caught.value.problems}


def test_full_fine_tuning_and_tensor_parallelism_are_refused_with_the_reason():
    found = problems(with_({**BASE, "finetuning.type": "full"}), local=False)
    assert "full fine-tuning updates every base weight" in found["finetuning.base_quant"]
    assert "finetuning.type lora" in found["finetuning.base_quant"]
    gpus = {"devices.device": "gpu", "devices.gpu_ids": "0,1", "devices.nproc": 2, "precision": "bf16",
            "gpu.tensor_parallel_degree": 2}
    found = problems(with_({**BASE, **gpus}), local=False)
    assert "tensor_parallel_degree 1" in found["finetuning.base_quant"]
    assert "流水线并行" in found["finetuning.base_quant"].text("zh")
    C.from_dict(with_({**gpus, "finetuning.base_quant": "none"}), local=False)


def test_widths_and_group_sizes_come_from_the_quantization_module():
    found = problems(with_({"finetuning.base_quant": "fp8", "finetuning.base_quant_group_size": 32}), local=False)
    assert "none, wint8, wint4, wint4/8" in found["finetuning.base_quant"]
    assert "-1, 64, 128" in found["finetuning.base_quant_group_size"]


def test_a_group_size_that_does_not_divide_a_layer_is_refused_naming_it(tiny_moe_dir):
    found = problems(with_({**BASE, "finetuning.base_quant_group_size": 64}))
    message = found["finetuning.base_quant_group_size"]
    assert "model.layers.0.mlp.down_proj" in message and "[344, 128]" in message and "use -1" in message
    C.from_dict(with_({**BASE, "finetuning.base_quant_group_size": 64,
                       "model.name_or_path": "ernie-4.5-tiny-dense", "finetuning.base_quant": "none"}))


def test_a_quantized_checkpoint_is_refused_as_a_training_base(tmp_path, tiny_moe_dir):
    model = tmp_path / "quantized"
    model.mkdir()
    for item in tiny_moe_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            (model / item.name).write_bytes(item.read_bytes())
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = QuantSpec("wint4/8").to_config()
    (model / "config.json").write_text(json.dumps(config))
    found = problems(with_({"model.name_or_path": str(model)}))
    message = found["model.name_or_path"]
    assert str(model) in message and "full-precision checkpoint" in message
    assert "finetuning.base_quant wint4/8" in message


def test_a_layer_refused_only_when_the_job_starts_is_one_line_not_a_traceback(tmp_path, tiny_moe_dir):
    """Validated without the machine's checks (as a config written for another machine is), the
    group size reaches quantize_model, which names the layer before replacing any."""
    cfg = C.from_dict(with_({**BASE, "finetuning.base_quant_group_size": 64, "optim.max_steps": 1}), local=False)
    job = tmp_path / "job"
    result = run_as_written_elsewhere(cfg, job)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "[studio] QuantError: finetuning.base_quant_group_size: layer " in result.stderr
    assert "mlp.down_proj [344, 128]: group size 64" in result.stderr
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "failed" and "[344, 128]" in status["error"]


def test_the_estimate_holds_the_quantized_base_in_its_integers_and_scales():
    from trainer.memory import estimate_run

    full = estimate_run(C.from_dict(with_({}), local=False))
    mixed = estimate_run(C.from_dict(with_(BASE), local=False))
    assert mixed.loading == full.loading  # loaded in full precision, quantized after
    assert 0.3 * full.weights < mixed.weights < 0.5 * full.weights
