"""Exports and outputs of vision-language jobs: a LoRA job whose adapters cover the vision
transformer, the resampler and the language model, merged by `trainer export --merge`, loads in
paddleformers and the chat engine with its processor configs and gives base + adapter's logits on
an image; full fine-tuning outputs keep a frozen vision transformer bit for bit and carry a trained
one as training left it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_trainer

BASE = "ernie-4.5-tiny-vl"
PARTS = {"vision": "vision_model.", "adapter": "model.resampler_model."}


def part(name: str) -> str:
    return next((key for key, prefix in PARTS.items() if name.startswith(prefix)), "lm")


def tensors(checkpoint: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors checkpoint (model or adapter), by name."""
    from safetensors.numpy import load_file

    found = {}
    for path in sorted(Path(checkpoint).glob("*.safetensors")):
        found.update(load_file(str(path)))
    assert found, f"no safetensors in {checkpoint}"
    return found


def stored_transposed(name: str) -> bool:
    """Whether paddleformers stores this VL weight transposed ([out, in], Hugging Face's layout) in
    its safetensors: a merge that adds an adapter in the wrong layout crashes on a rectangular
    layer and silently corrupts a square one."""
    from paddleformers.transformers import Ernie4_5_VLMoeForConditionalGeneration

    return any(re.search(rf"(^|\.){key}\.weight$", name)
               for key in Ernie4_5_VLMoeForConditionalGeneration.transpose_weight_keys)


def vl_config(data: Path, finetuning: dict, steps: int, **vl) -> dict:
    return {"model": {"name_or_path": BASE}, "method": "sft", "finetuning": finetuning,
            "vl": {"freeze_vision": False, "freeze_adapter": False, **vl},
            "data": {"train": [{"path": str(data)}], "max_seq_len": 256},
            "optim": {"learning_rate": 2e-3 if finetuning["type"] == "lora" else 1e-4, "max_steps": steps,
                      "per_device_batch_size": 4},
            "logging": {"logging_steps": 1, "save_steps": steps}, "devices": {"device": "cpu"}}


def trained(config: dict, job_dir: Path) -> Path:
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


@pytest.fixture(scope="module")
def vl_dir(workdir) -> Path:
    from models.tiny import ensure_built

    return ensure_built(BASE, workdir / "models")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from trainer.data.shapes import write_shapes_dataset

    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), rows=12, seed=7)


@pytest.fixture(scope="module")
def lora_job(workdir, vl_dir, shapes) -> Path:
    lora = {"type": "lora", "lora": {"rank": 8, "alpha": 16}}
    return trained(vl_config(shapes, lora, steps=3), workdir / "jobs" / "vl-export-lora")


@pytest.fixture(scope="module")
def merged(lora_job, tmp_path_factory) -> Path:
    """The LoRA job exported through the CLI, as the UI runs it."""
    out = tmp_path_factory.mktemp("vl-export") / "merged"
    result = subprocess.run([sys.executable, "-m", "trainer", "export", str(lora_job), "--merge", "-o", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def image_prompt(tokenizer, model_dir: Path, shapes: Path):
    from models.vl_inputs import ImageProcessor, encode_vl_conversation

    row = json.loads(shapes.read_text().splitlines()[0])
    return encode_vl_conversation(tokenizer, ImageProcessor(model_dir), row["messages"][:1],
                                  [shapes.parent / row["images"][0]])


def logits(model, vision) -> np.ndarray:
    import paddle

    from models.vl_inputs import prompt_inputs

    with paddle.no_grad():
        return model(**prompt_inputs(vision), return_dict=True).logits.numpy()


def test_lora_job_output_ships_the_processor_config(lora_job, vl_dir):
    output = lora_job / "output"
    assert (output / "preprocessor_config.json").read_bytes() == (vl_dir / "preprocessor_config.json").read_bytes()
    adapted = {part(name) for name in tensors(output) if name.endswith(".lora_A")}
    assert adapted == {"vision", "adapter", "lm"}


def test_archives_of_the_adapter_and_the_export_carry_the_processor_config(lora_job, merged, tmp_path):
    import shutil
    import zipfile

    from trainer.archive import checkpoint_members, job_archive

    for export_dir in (None, merged):
        archive = job_archive(lora_job, tmp_path / "zips", export_dir=export_dir)
        with zipfile.ZipFile(archive) as zf:
            names = {name.split("/", 1)[1] for name in zf.namelist()}
        assert {"preprocessor_config.json", "tokenizer.model", "config.yaml"} <= names, archive.name
    # an adapter saved without the processor's settings gets its base's
    older = tmp_path / "older-adapter"
    shutil.copytree(lora_job / "output", older)
    (older / "preprocessor_config.json").unlink()
    members = checkpoint_members(older, lora_job / "config.yaml")
    assert members["preprocessor_config.json"].parent == Path(json.loads((older / "adapter_info.json").read_text())
                                                               ["base_model"])


def test_merge_adds_each_adapter_to_its_own_layer(lora_job, merged, vl_dir):
    """Every adapted layer of the vision transformer, the resampler and the language model holds
    base + A·B·scaling under the base's name and in the base's layout (square layers included);
    every other tensor is the base's, bit for bit."""
    base, adapter, export = tensors(vl_dir), tensors(lora_job / "output"), tensors(merged)
    assert export.keys() == base.keys()
    scaling = json.loads((lora_job / "output" / "lora_config.json").read_text())["scaling"]
    adapted, trained_parts = set(), set()
    for name in (key for key in adapter if key.endswith(".lora_A")):
        layer = name.removesuffix(".lora_A")
        delta = adapter[name].astype(np.float64) @ adapter[f"{layer}.lora_B"].astype(np.float64) * scaling
        if np.abs(delta).max() > 1e-4:  # an expert that no token reached keeps B at zero
            trained_parts.add(part(layer))
        if stored_transposed(f"{layer}.weight"):
            delta = delta.T
        expected = base[f"{layer}.weight"].astype(np.float64) + delta
        np.testing.assert_allclose(export[f"{layer}.weight"], expected, rtol=0, atol=1e-6, err_msg=layer)
        adapted.add(f"{layer}.weight")
    assert trained_parts == {"vision", "adapter", "lm"}
    for name in base.keys() - adapted:
        assert export[name].dtype == base[name].dtype and np.array_equal(export[name], base[name]), name


def test_merged_export_gives_base_plus_adapter_logits_on_an_image(lora_job, merged, vl_dir, shapes):
    """Compared in float64, so that what remains is the merge: in float32 the two ways of
    computing a layer (x·(W+ΔW) against x·W + (x·A)·B) already differ by about 1e-5 on these
    logits whatever the weights."""
    from models.loader import load_checkpoint, load_model

    with_adapter, tokenizer = load_checkpoint(str(lora_job / "output"))
    export, _ = load_checkpoint(str(merged))
    base = load_model(vl_dir)
    base.eval()
    vision = image_prompt(tokenizer, merged, shapes)
    assert vision.image_tokens > 0
    for model in (with_adapter, export, base):
        model.to(dtype="float64")
    expected, got = logits(with_adapter, vision), logits(export, vision)
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(logits(base, vision) - expected).max() > 1e-2, "the adapter changes nothing to compare"


def test_merged_export_loads_in_paddleformers_as_it_is(merged, vl_dir):
    from paddleformers.transformers import AutoModelForConditionalGeneration, AutoTokenizer
    from paddleformers.transformers.ernie4_5_moe_vl.image_processor import Ernie4_5_VLImageProcessor

    from models.image_facts import IMAGE_PATCH

    assert (merged / "preprocessor_config.json").read_bytes() == (vl_dir / "preprocessor_config.json").read_bytes()
    model = AutoModelForConditionalGeneration.from_pretrained(str(merged))
    stored = tensors(merged)
    loaded = {name: value.numpy() for name, value in model.state_dict().items()}
    assert stored.keys() <= loaded.keys()
    for name in ("vision_model.blocks.0.attn.qkv.weight", "model.resampler_model.mlp.weight",
                 "model.layers.0.self_attn.q_proj.weight"):
        assert np.array_equal(loaded[name], stored[name].T if stored_transposed(name) else stored[name]), name
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    assert tokenizer.convert_tokens_to_ids(IMAGE_PATCH) == model.config.im_patch_id
    processor = Ernie4_5_VLImageProcessor.from_pretrained(str(merged))
    base_processor = json.loads((vl_dir / "preprocessor_config.json").read_text())
    assert (processor.min_pixels, processor.max_pixels) == (base_processor["min_pixels"], base_processor["max_pixels"])


def test_merged_export_chats_like_base_plus_adapter(lora_job, merged, shapes):
    from PIL import Image

    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams

    row = json.loads(shapes.read_text().splitlines()[0])
    image = Image.open(shapes.parent / row["images"][0]).convert("RGB")
    ask = [{"role": "user", "content": row["messages"][0]["content"]}]
    greedy = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    replies = [ChatEngine.load(str(path)).reply(ask, greedy, images=[image])[1]
               for path in (lora_job / "output", merged)]
    assert replies[0] and replies[0] == replies[1]


def test_full_job_with_frozen_vision_keeps_every_vision_weight(workdir, vl_dir, shapes):
    job = trained(vl_config(shapes, {"type": "full"}, steps=2, freeze_vision=True), workdir / "jobs" / "vl-frozen")
    base, output = tensors(vl_dir), tensors(job / "output")
    vision = [name for name in base if name.startswith("vision_model.")]
    assert vision
    for name in vision:
        assert output[name].dtype == base[name].dtype and output[name].tobytes() == base[name].tobytes(), name
    changed = {part(name) for name in base if not np.array_equal(output[name], base[name])}
    assert changed == {"adapter", "lm"}


def test_full_job_output_loads_and_chats_with_the_vision_weights_training_left(workdir, vl_dir, shapes):
    from PIL import Image

    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams
    from trainer.export import export

    job = trained(vl_config(shapes, {"type": "full"}, steps=2), workdir / "jobs" / "vl-full")
    base, output = tensors(vl_dir), tensors(job / "output")
    last = tensors(job / "checkpoints" / "checkpoint-2")
    vision = [name for name in base if name.startswith("vision_model.")]
    assert any(not np.array_equal(output[name], base[name]) for name in vision)
    for name in vision:
        assert np.array_equal(output[name], last[name]), name
    exported = export(job, merge=False, out_dir=workdir / "exports" / "vl-full")
    assert (exported / "preprocessor_config.json").is_file()

    engine = ChatEngine.load(str(exported))
    loaded = dict(engine.model.named_parameters())
    for name in vision:
        assert np.array_equal(loaded[name].numpy(), output[name].T if stored_transposed(name) else output[name]), name
    row = json.loads(shapes.read_text().splitlines()[0])
    image = Image.open(shapes.parent / row["images"][0]).convert("RGB")
    greedy = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    prompt = engine.prepare([{"role": "user", "content": row["messages"][0]["content"]}], 4, images=[image])
    assert prompt.vision is not None and prompt.vision.image_tokens > 0
    assert "".join(chunk.content for chunk in engine.stream(prompt, greedy))


def test_lora_targets_a_name_only_where_it_is_a_linear_layer():
    """A VL model's `mlp` is a Linear in the resampler and a block in every decoder layer and vision
    block; `spatial_linear` a Sequential of linears and activations. LoRA replaces whatever its
    patterns match, so they must match the linear layers alone."""
    import paddle.nn as nn

    from trainer.train import lora_target_patterns

    class Block(nn.Layer):
        def __init__(self):
            super().__init__()
            self.up_proj = nn.Linear(2, 2)

    class Layer(nn.Layer):
        def __init__(self):
            super().__init__()
            self.mlp = Block()

    class Resampler(nn.Layer):
        def __init__(self):
            super().__init__()
            self.spatial_linear = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2), nn.LayerNorm(2))
            self.mlp = nn.Linear(2, 2)

    class Net(nn.Layer):
        def __init__(self):
            super().__init__()
            self.layers = nn.LayerList([Layer(), Layer()])
            self.resampler_model = Resampler()

    net = Net()
    patterns = lora_target_patterns(net, ["all-linear"])
    matched = {name for name, _ in net.named_sublayers() if any(re.fullmatch(p, name) for p in patterns)}
    assert matched == {name for name, layer in net.named_sublayers() if isinstance(layer, nn.Linear)}
    assert "resampler_model.mlp" in matched and "layers.0.mlp" not in matched


def test_a_quantized_export_reports_on_the_rows_with_their_images(lora_job, tmp_path):
    """`export --quantize --report` on a VL job: its rows (all with images) measured with them."""
    out = tmp_path / "wint8"
    result = subprocess.run([sys.executable, "-m", "trainer", "export", str(lora_job), "--merge", "--quantize",
                             "wint8", "--report", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "quant_report.json").read_text())
    assert report["sample"] == {**report["sample"], "source": "train", "rows": 12, "images_skipped": 0}
    assert all(len(answer["images"]) == 1 and "<image>" in answer["messages"][0]["content"]
               for answer in report["answers"])
    full, wint8 = report["results"]
    assert full["perplexity"] > 1 and wint8["perplexity"] > 1 and 0 <= wint8["same_share"] <= 1
    assert "--reasoning-parser ernie-45-vl" in result.stdout
    # the vision transformer and the resampler stay full precision, the language model's layers are int8
    assert wint8["layers"] == {"int8": wint8["layers"]["int8"]} and wint8["weight_bytes"] < full["weight_bytes"]
