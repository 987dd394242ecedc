"""Configs checked before they run (issue 14, defects 5-7): validation knows the paddle build, the
model directory and where max_prompt_len applies; the GPU-scale settings (`gpu` section) are in
the schema, checked, imported from ERNIEKit, set by the real models' presets and handed to
paddleformers. Optional tests read the released configs in /work/shared/real_ernie."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.registry import MODELS
from plumbing.paddle_build import PaddleBuild, installed_build, read_build
from tests.conftest import ROOT, SAMPLE_SFT, run_as_written_elsewhere
from trainer import config as C
from trainer import erniekit_import as E
from trainer.parallel import model_config_overrides, training_arguments
from trainer.schema import BY_KEY, GpuSection

REAL = Path("/work/shared/real_ernie")
CPU_BUILD = PaddleBuild("paddlepaddle", "3.3.1", "")
GPU_BUILD = PaddleBuild("paddlepaddle-gpu", "3.3.1", "12.6")
TRAIN = {"data": {"train": [{"path": str(SAMPLE_SFT)}]}}
ON_GPU = {**TRAIN, "devices": {"device": "gpu", "gpu_ids": "0"}}


@pytest.fixture
def build(monkeypatch):
    """Pretend this machine has the given paddle build."""
    def use(found: PaddleBuild | None) -> None:
        monkeypatch.setattr("trainer.preflight.installed_build", lambda: found)
    return use


def problems(d: dict, local: bool = True) -> dict[str, str]:
    try:
        C.from_dict(d, local=local)
    except C.ConfigError as exc:
        return dict(exc.problems)
    return {}


def with_(base: dict, **dotted) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in dotted.items():
        C.set_key(out, key.replace("__", "."), value)
    return out


def checkpoint(directory: Path, tokenizer: bool = True, **config) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "ernie4_5", **config}))
    if tokenizer:
        (directory / "tokenizer.model").write_bytes(b"sentencepiece")
    return directory


# ---------------------------------------------------------------- the paddle build (defect 5)

def test_gpu_on_a_cpu_build_is_refused_with_how_to_get_the_gpu_build(build):
    build(CPU_BUILD)
    found = problems(ON_GPU)
    assert list(found) == ["devices.device"]
    message = found["devices.device"]
    assert "CPU build (paddlepaddle 3.3.1)" in message
    assert "pip install paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/" in message
    assert 'README, "GPU machines"' in message and "devices.device=cpu precision=fp32" in message
    assert "paddlepaddle-gpu==3.3.1" in message.text("zh") and "GPU 版" in message.text("zh")
    assert list(problems(with_(ON_GPU, precision="bf16"))) == ["devices.device"]
    build(GPU_BUILD)
    assert problems(with_(ON_GPU, precision="bf16")) == {}
    build(None)
    assert "none is installed" in problems(ON_GPU)["devices.device"]


def test_a_config_written_for_another_machine_skips_the_machine_checks(build):
    build(CPU_BUILD)
    assert C.from_dict(ON_GPU, local=False).devices.device == "gpu"


def test_the_build_is_read_from_paddles_version_file(tmp_path):
    (tmp_path / "cpu.py").write_text("full_version     = '3.3.1'\ncuda_version     = 'False'\n")
    (tmp_path / "gpu.py").write_text("full_version     = '3.3.1'\ncuda_version     = '12.6'\n")
    assert read_build(tmp_path / "cpu.py", "paddlepaddle") == CPU_BUILD
    assert read_build(tmp_path / "gpu.py", "paddlepaddle-gpu") == GPU_BUILD
    assert not CPU_BUILD.has_cuda and GPU_BUILD.has_cuda
    here = installed_build()
    import importlib.metadata

    assert here is not None and here.version == importlib.metadata.version(here.distribution)


def test_finding_the_build_never_imports_paddle():
    code = ("import sys, trainer.config; from plumbing.paddle_build import installed_build; "
            "b = installed_build(); print(b.version, 'paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split()[-1] == "False"


ERNIEKIT_SFT = """\
train_dataset_type: "erniekit"
train_dataset_path: "{data}"
train_dataset_prob: "1.0"
max_seq_len: 512
model_name_or_path: ernie-4.5-tiny-moe
fine_tuning: LoRA
stage: SFT
max_steps: 1
tensor_parallel_degree: 1
pipeline_parallel_degree: 1
sharding: stage1
recompute: False
tensorwise_offload_optimizer: True
compute_type: bf16
"""


@pytest.mark.skipif(bool(installed_build() and installed_build().has_cuda), reason="this machine has a GPU build")
def test_an_imported_gpu_config_fails_validation_not_with_a_traceback(tmp_path):
    """ERNIEKit configs ask for a GPU; on a CPU-only install `trainer run` used to end in paddle's
    `ValueError: The device should not be ... gpu:0` traceback."""
    source = tmp_path / "run_sft_lora_8k.yaml"
    source.write_text(ERNIEKIT_SFT.format(data=tmp_path / "train.jsonl"))
    (tmp_path / "train.jsonl").write_text('{"src": ["hi"], "tgt": ["hello"]}\n')
    out = tmp_path / "run.yaml"
    imported = subprocess.run([sys.executable, "-m", "trainer", "config", "import-erniekit", str(source), "-o",
                               str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert imported.returncode == 0 and "to do before it runs on this machine (1)" in imported.stdout
    for command in (["config", "validate", str(out)], ["run", str(out), "--job-dir", str(tmp_path / "job")]):
        result = subprocess.run([sys.executable, "-m", "trainer", *command], capture_output=True, text=True,
                                cwd=ROOT, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "devices.device: gpu needs PaddlePaddle built with CUDA" in result.stderr
        assert "paddlepaddle-gpu" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "job" / "status.json").exists()


# ---------------------------------------------------------------- max_prompt_len (defect 5)

def test_max_prompt_len_is_checked_for_dpo_only():
    short = with_(TRAIN, data__max_seq_len=256)  # below the default max_prompt_len (512)
    assert problems(short) == {}
    dpo = with_(short, method="dpo", data__train=[{"path": "pairs.jsonl", "format": "erniekit_dpo"}])
    assert "must be below data.max_seq_len (256) for method dpo" in problems(dpo, local=False)["data.max_prompt_len"]


def test_an_erniekit_sft_import_leaves_max_prompt_len_alone():
    sft, _, notes = E.convert_erniekit({"stage": "SFT", "max_seq_len": 1024, "device": "cpu",
                                        "train_dataset_path": "a.jsonl"})
    assert "max_prompt_len" not in sft["data"] and not any("max_prompt_len" in note for note in notes)
    assert C.from_dict(sft, local=False).data.max_seq_len == 1024
    sft, unmapped, notes = E.convert_erniekit({"stage": "SFT", "max_prompt_len": 2048, "device": "cpu",
                                               "train_dataset_path": "a.jsonl"})
    assert "max_prompt_len" not in sft["data"] and "max_prompt_len: 2048" not in unmapped
    assert any("applies to DPO only" in note for note in notes)
    dpo, _, notes = E.convert_erniekit({"stage": "DPO", "max_seq_len": 8192, "device": "cpu",
                                        "train_dataset_path": "a.jsonl"})
    assert dpo["data"]["max_prompt_len"] == 2048 and any("max_prompt_len=2048" in note for note in notes)


# ---------------------------------------------------------------- the model directory (defect 6)

def test_the_model_directory_is_checked(tmp_path):
    def model_problem(name) -> str:
        return problems(with_(TRAIN, model__name_or_path=str(name))).get("model.name_or_path", "")

    assert "model directory not found" in model_problem(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "config.json is missing" in model_problem(tmp_path / "empty")
    assert "'llama' is not an ERNIE 4.5 model" in model_problem(checkpoint(tmp_path / "llama", model_type="llama"))
    vl = checkpoint(tmp_path / "vl", model_type="ernie4_5_moe_vl")
    assert model_problem(vl) == ""
    assert "has no tokenizer" in model_problem(checkpoint(tmp_path / "bare", tokenizer=False))
    good = checkpoint(tmp_path / "good")
    assert model_problem(good) == ""
    assert model_problem("ernie-4.5-tiny-moe") == "" and model_problem("ernie-4.5-tiny-dense") == ""
    assert "nothing is downloaded" in model_problem("ERNIE-4.5-VL-28B-A3B")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_info.json").write_text(json.dumps({"base_model": str(good), "base_model_name": "g",
                                                           "method": "sft"}))
    assert model_problem(adapter) == ""
    (adapter / "adapter_info.json").write_text(json.dumps({"base_model": str(tmp_path / "gone")}))
    assert "base model" in model_problem(adapter) and "missing" in model_problem(adapter)


def test_a_real_model_name_that_is_not_here_is_refused_with_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ERNIE_STUDIO_HOME", str(tmp_path))
    found = problems(with_(TRAIN, model__name_or_path="ERNIE-4.5-0.3B"))["model.name_or_path"]
    assert str(tmp_path / "models" / "ERNIE-4.5-0.3B") in found
    checkpoint(tmp_path / "models" / "ERNIE-4.5-0.3B", num_attention_heads=16, num_key_value_heads=2)
    assert problems(with_(TRAIN, model__name_or_path="ERNIE-4.5-0.3B")) == {}


def test_trainer_run_of_dpo_on_a_vl_checkpoint_prints_its_refusal_only(tmp_path):
    vl = checkpoint(tmp_path / "vl", model_type="ernie4_5_moe_vl")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(with_(TRAIN, model__name_or_path=str(vl), method="dpo")))
    result = subprocess.run([sys.executable, "-m", "trainer", "run", str(config), "--job-dir",
                             str(tmp_path / "job")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{config}: method: dpo is not supported for the vision-language model {vl}; use sft"]


def test_vl_options_belong_to_vl_models_and_must_leave_something_to_train(tmp_path):
    vl = checkpoint(tmp_path / "vl", model_type="ernie4_5_moe_vl")
    on_text = problems(with_(TRAIN, vl__freeze_vision=True, vl__vision_lr_ratio=0.1))
    assert on_text["vl.freeze_vision"].endswith("is a text model; this option is for vision-language models")
    assert "vl.vision_lr_ratio" in on_text
    frozen = problems(with_(TRAIN, model__name_or_path=str(vl), vl__freeze_vision=True, vl__freeze_adapter=True,
                            vl__freeze_lm=True, vl__min_pixels=10000, vl__max_pixels=5000))
    assert "leave nothing to train" in frozen["vl.freeze_lm"]
    assert frozen["vl.min_pixels"] == "vl.min_pixels: 10000 is above vl.max_pixels 5000"
    assert "视觉语言" in problems(with_(TRAIN, vl__freeze_lm=True))["vl.freeze_lm"].text("zh")


def test_a_refusal_found_while_training_is_one_line_not_a_traceback(tmp_path, tiny_dense_dir):
    """A checkpoint that validation could not see (its config replaced after the check) is refused
    by the loader: the job fails with the reason, and the log has no traceback."""
    model = tmp_path / "model"
    model.mkdir()
    for item in tiny_dense_dir.iterdir():
        if item.is_file():
            (model / item.name).write_bytes(item.read_bytes())
    cfg = C.from_dict(with_(TRAIN, model__name_or_path=str(model), optim__max_steps=1))
    (model / "config.json").write_text(json.dumps({**json.loads((model / "config.json").read_text()),
                                                   "model_type": "llama"}))
    job = tmp_path / "job"
    result = run_as_written_elsewhere(cfg, job)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "[studio] ModelNotFound:" in result.stderr and "'llama'" in result.stderr
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "failed" and "'llama'" in status["error"]


# ---------------------------------------------------------------- GPU-scale settings (defect 7)

GPU_KEYS = [key for key in BY_KEY if key.startswith("gpu.")]


def test_the_gpu_settings_are_advanced_fields_of_the_devices_group():
    assert GPU_KEYS == ["gpu.tensor_parallel_degree", "gpu.pipeline_parallel_degree", "gpu.sharding",
                        "gpu.sharding_parallel_degree", "gpu.expert_parallel_degree", "gpu.recompute",
                        "gpu.offload_optimizer"]
    for key in GPU_KEYS:
        spec = BY_KEY[key]
        assert spec.advanced and spec.group == "devices" and spec.help.endswith("GPU runs only."), key
    assert BY_KEY["gpu.sharding"].choices == ("none", "stage1", "stage2", "stage3")


def test_the_train_tab_shows_them_in_the_closed_devices_advanced_accordion(tmp_path):
    import gradio as gr

    from webui import train_tab
    from webui.context import make_context

    with gr.Blocks():
        tab = train_tab.build(make_context(tmp_path))
    form = tab.form
    assert {form.accordion_of[key] for key in GPU_KEYS} == {"devices-advanced"}
    assert form.accordions["devices-advanced"].open is False and form.accordions["devices"].open is False
    assert form.boxes["data.max_prompt_len"].visible is False, "max_prompt_len is shown for DPO only"


def test_gpu_settings_are_refused_on_cpu_with_the_reason():
    cpu = with_(TRAIN, gpu={"tensor_parallel_degree": 2, "sharding": "stage1", "recompute": True,
                            "offload_optimizer": True})
    found = problems(cpu)
    assert sorted(found) == ["gpu.offload_optimizer", "gpu.recompute", "gpu.sharding", "gpu.tensor_parallel_degree"]
    assert found["gpu.tensor_parallel_degree"].startswith("gpu.tensor_parallel_degree: 2 is a GPU-scale setting "
                                                          "and devices.device is cpu (model parallelism runs on NCCL")
    assert "set it back to none or run on gpu" in found["gpu.sharding"]
    assert "optimizer state in CPU memory already" in found["gpu.offload_optimizer"]
    assert "GPU 规模训练" in found["gpu.recompute"].text("zh")


def gpus(n: int, **gpu) -> dict:
    return with_(TRAIN, devices={"device": "gpu", "nproc": n, "gpu_ids": ",".join(map(str, range(n)))}, gpu=gpu)


def test_the_parallel_layout_follows_paddleformers_rules():
    assert problems(gpus(8, tensor_parallel_degree=4, pipeline_parallel_degree=2, sharding="stage1",
                         sharding_parallel_degree=1, offload_optimizer=True), local=False) == {}
    assert problems(gpus(8, tensor_parallel_degree=2, sharding="stage1", recompute=True, offload_optimizer=True),
                    local=False) == {}
    found = problems(gpus(4, tensor_parallel_degree=8), local=False)
    assert found == {"gpu.tensor_parallel_degree": "gpu.tensor_parallel_degree x gpu.pipeline_parallel_degree = "
                                                   "8 x 1 must divide devices.nproc x devices.nnodes = 4 process(es); "
                                                   "give more processes or lower the degrees"}
    assert "shards nothing" in problems(gpus(4, sharding_parallel_degree=2), local=False)["gpu.sharding_parallel_degree"]
    assert "must divide" in problems(gpus(6, sharding="stage1", sharding_parallel_degree=4),
                                     local=False)["gpu.sharding_parallel_degree"]
    assert "must be -1" in problems(gpus(2, sharding_parallel_degree=0), local=False)["gpu.sharding_parallel_degree"]
    assert "use stage1" in problems(gpus(4, pipeline_parallel_degree=2, sharding="stage2"), local=False)["gpu.sharding"]
    offload = problems(gpus(4, offload_optimizer=True), local=False)["gpu.offload_optimizer"]
    assert "(4 replicas here)" in offload and "gpu.sharding stage1" in offload
    assert problems(gpus(4, offload_optimizer=True, sharding="stage1"), local=False) == {}
    assert "not with plain data parallelism (2 replicas here)" in \
        problems(gpus(4, expert_parallel_degree=2, sharding="stage1", sharding_parallel_degree=2),
                 local=False)["gpu.expert_parallel_degree"]
    assert problems(gpus(4, expert_parallel_degree=4, sharding="stage1"), local=False) == {}


def test_settings_that_depend_on_the_model_are_checked_against_its_config(tmp_path, build):
    build(GPU_BUILD)
    dense = checkpoint(tmp_path / "dense", num_attention_heads=16, num_key_value_heads=2, num_hidden_layers=2)
    on = with_(gpus(4, tensor_parallel_degree=4), model__name_or_path=str(dense))
    assert problems(on) == {"gpu.tensor_parallel_degree": "gpu.tensor_parallel_degree: 4 must divide the model's "
                                                          "attention heads (num_key_value_heads 2)"}
    on = with_(gpus(4, pipeline_parallel_degree=4), model__name_or_path=str(dense))
    assert "4 stages for a model of 2 layers" in problems(on)["gpu.pipeline_parallel_degree"]
    on = with_(gpus(4, expert_parallel_degree=4, sharding="stage1"), model__name_or_path=str(dense))
    assert "dense model without experts" in problems(on)["gpu.expert_parallel_degree"]
    on = with_(gpus(4, expert_parallel_degree=4, sharding="stage1"), model__name_or_path="ernie-4.5-tiny-dense")
    assert "dense model without experts" in problems(on)["gpu.expert_parallel_degree"]
    assert problems(with_(gpus(2, tensor_parallel_degree=2), model__name_or_path=str(dense))) == {}


def test_the_settings_reach_paddleformers_training_arguments(tmp_path):
    gpu = GpuSection(tensor_parallel_degree=2, pipeline_parallel_degree=2, sharding="stage1",
                     sharding_parallel_degree=2, expert_parallel_degree=2, recompute=True, offload_optimizer=True)
    kwargs = training_arguments(gpu)
    assert kwargs == {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2, "sharding": "stage1",
                      "sharding_parallel_size": 2, "tensorwise_offload_optimizer": True,
                      "expert_model_parallel_size": 2, "use_expert_parallel": True, "recompute_granularity": "full",
                      "recompute_method": "uniform", "recompute_num_layers": 1}
    assert training_arguments(GpuSection())["sharding"] == ""
    from paddleformers.trainer import TrainingArguments

    # every keyword is one of TrainingArguments' own (a one-process run turns the parallel ones off)
    args = TrainingArguments(output_dir=str(tmp_path), device="cpu", report_to=[], amp_master_grad=False, **kwargs)
    assert args.recompute_granularity == "full" and args.tensorwise_offload_optimizer is True


def test_recompute_makes_paddleformers_recompute_every_layer_with_the_same_gradients(tiny_dense_dir):
    import numpy as np
    import paddle

    from models.loader import load_model

    paddle.seed(0)
    ids = paddle.randint(0, 100, [2, 16])
    grads, calls = [], []
    for recompute in (False, True):
        model = load_model(tiny_dense_dir, config_overrides=model_config_overrides(GpuSection(recompute=recompute)))
        model.train()
        inner = model.model.recompute_training
        done: list[int] = []
        model.model.recompute_training = lambda *a, _inner=inner, _done=done, **k: (_done.append(1), _inner(*a, **k))[1]
        out = model(input_ids=ids, labels=ids)
        (out[0] if isinstance(out, tuple) else out.loss).backward()
        grads.append(model.model.layers[0].mlp.down_proj.weight.grad.numpy())
        calls.append(len(done))
    assert calls == [0, len(model.model.layers)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-7)


def test_erniekit_gpu_settings_are_imported():
    data, unmapped, notes = E.convert_erniekit({
        "stage": "SFT", "fine_tuning": "Full", "train_dataset_path": "a.jsonl", "moe_group": "mp",
        "tensor_parallel_degree": 2, "pipeline_parallel_degree": 1, "sharding": "stage1", "recompute": True,
        "recompute_granularity": "core_attn", "tensorwise_offload_optimizer": True, "use_sp_callback": True,
    })
    assert data["gpu"] == {"tensor_parallel_degree": 2, "pipeline_parallel_degree": 1, "sharding": "stage1",
                           "recompute": True, "offload_optimizer": True}
    assert (data["devices"]["nproc"], data["devices"]["gpu_ids"]) == (2, "0,1")
    assert unmapped == ["use_sp_callback: true"]
    assert any("recompute_granularity 'core_attn'" in note for note in notes)
    assert C.from_dict(data, local=False).gpu.tensor_parallel_degree == 2

    dpo, _, notes = E.convert_erniekit({"stage": "DPO", "train_dataset_path": "a.jsonl", "offload_optim": True,
                                        "tensor_parallel_degree": 4, "pipeline_parallel_degree": 2,
                                        "sharding_parallel_degree": 1, "sharding": "stage2 offload"})
    assert dpo["gpu"]["sharding"] == "stage2" and dpo["gpu"]["offload_optimizer"] is True
    assert dpo["devices"]["nproc"] == 8 and any("sharding 'stage2 offload'" in note for note in notes)


def test_a_cpu_import_leaves_the_gpu_settings_out_and_validates():
    data, _, notes = E.convert_erniekit({"stage": "SFT", "device": "cpu", "train_dataset_path": str(SAMPLE_SFT),
                                         "tensor_parallel_degree": 2, "recompute": True, "sharding": "stage1"})
    assert "gpu" not in data
    assert any(note.startswith("gpu.tensor_parallel_degree, gpu.sharding, gpu.recompute: GPU-scale settings")
               for note in notes)
    assert C.from_dict(data).devices.device == "cpu"


def test_a_multi_node_erniekit_config_is_written_with_the_master_left_to_fill(tmp_path):
    source = tmp_path / "run_sft_8k.yaml"
    source.write_text("stage: SFT\nfine_tuning: Full\ntrain_dataset_path: a.jsonl\ntensor_parallel_degree: 8\n"
                      "pipeline_parallel_degree: 5\nsharding: stage1\nrecompute: True\n")
    out = tmp_path / "run.yaml"
    assert E.main([str(source), "-o", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert list(written) == list(C.to_dict(C.RunConfig()))
    assert written["devices"] | {"master": ""} == {"device": "gpu", "gpu_ids": "0,1,2,3,4,5,6,7", "nproc": 8,
                                                   "nnodes": 5, "master": ""}
    filled = C.apply_overrides(written, ["devices.master=10.0.0.1:8090"])
    assert C.from_dict(filled, local=False).gpu.pipeline_parallel_degree == 5


def test_real_model_presets_use_erniekits_gpu_settings():
    def scale(model: str, preset: str) -> tuple:
        p = MODELS[model].presets[preset]
        return (p["gpu.tensor_parallel_degree"], p["gpu.pipeline_parallel_degree"], p["gpu.sharding"],
                p["gpu.recompute"], p["gpu.offload_optimizer"], p["devices.nproc"] * p.get("devices.nnodes", 1))

    assert scale("ERNIE-4.5-0.3B", "sft-lora") == (1, 1, "stage1", False, True, 1)
    assert scale("ERNIE-4.5-21B-A3B", "sft-full") == (2, 1, "stage1", True, True, 8)
    assert scale("ERNIE-4.5-21B-A3B", "dpo-full") == (4, 2, "stage1", False, True, 8)
    assert scale("ERNIE-4.5-300B-A47B", "dpo-full") == (8, 14, "stage1", True, True, 112)
    assert scale("ERNIE-4.5-300B-A47B", "dpo-lora") == (8, 2, "stage1", True, False, 16)
    for name in ("ernie-4.5-tiny-moe", "ernie-4.5-tiny-dense"):
        for preset in MODELS[name].presets.values():
            assert not any(key.startswith("gpu.") for key in preset), "the CPU demo presets stay off the GPU"


# ---------------------------------------------------------------- the released configs (optional)

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="needs /work/shared/real_ernie")


@needs_real
def test_released_configs_bound_the_tensor_parallel_degree(tmp_path, build):
    build(GPU_BUILD)
    small = tmp_path / "0.3b"
    small.mkdir()
    (small / "config.json").write_bytes((REAL / "ERNIE-4.5-0.3B-Base-PT" / "config.json").read_bytes())
    (small / "tokenizer.model").write_bytes((REAL / "tokenizer" / "tokenizer.model").read_bytes())
    moe = tmp_path / "21b"
    moe.mkdir()
    released = json.loads((REAL / "ERNIE-4.5-21B-A3B-Paddle" / "config.fastdeploy-test.json").read_text())
    released.pop("quantization_config", None)
    (moe / "config.json").write_text(json.dumps(released))
    (moe / "tokenizer.model").write_bytes((REAL / "tokenizer" / "tokenizer.model").read_bytes())
    assert problems(with_(gpus(2, tensor_parallel_degree=2), model__name_or_path=str(small))) == {}
    assert "num_key_value_heads 2" in problems(with_(gpus(4, tensor_parallel_degree=4),
                                                     model__name_or_path=str(small)))["gpu.tensor_parallel_degree"]
    assert problems(with_(gpus(8, tensor_parallel_degree=4, pipeline_parallel_degree=2, sharding="stage1",
                               sharding_parallel_degree=1), model__name_or_path=str(moe))) == {}
    assert "num_attention_heads 20" in problems(with_(gpus(8, tensor_parallel_degree=8),
                                                      model__name_or_path=str(moe)))["gpu.tensor_parallel_degree"]
