"""The embedded tiny models, their tokenizer and chat template, and the model registry."""

from __future__ import annotations

import hashlib
import json

import pytest

from models.chat_template import conversation_segments
from models.checkpoints import ModelNotFound
from models.registry import MODELS, resolve_model_dir
from models.tiny import build, ensure_built


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_build_is_deterministic(tmp_path):
    for attempt in ("a", "b"):
        (tmp_path / attempt).mkdir()
        build("ernie-4.5-tiny-moe", tmp_path / attempt)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["moe_num_experts"] >= 8 and config["moe_k"] == 2 and config["moe_num_shared_experts"] == 1
    assert config["moe_layer_start_index"] == 1, "the first layer is dense, as in ERNIE 4.5"
    assert not list((tmp_path / "a").glob("saved_signal_*"))


def test_ensure_built_reuses_a_current_build(workdir, tiny_moe_dir):
    before = (tiny_moe_dir / "build_info.json").stat().st_mtime
    assert ensure_built("ernie-4.5-tiny-moe", workdir / "models") == tiny_moe_dir
    assert (tiny_moe_dir / "build_info.json").stat().st_mtime == before


def test_dense_variant_loads_and_runs(tiny_dense_dir):
    import paddle

    from models.loader import load_model

    model = load_model(tiny_dense_dir)
    names = [name for name, _ in model.named_parameters()]
    assert not any(".experts." in n for n in names), "the dense variant has no experts"
    assert any("self_attn" in n for n in names) and any(".mlp." in n for n in names)
    with paddle.no_grad():
        logits = model(paddle.to_tensor([[2, 40, 50]]), return_dict=True).logits
    assert logits.shape[-1] == 1536


def test_tokenizer_round_trips_english_chinese_and_special_tokens(tiny_tokenizer):
    text = "Fine-tune ERNIE 4.5 today. 今天我们微调模型。😀\n<think>hmm</think>"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    sep = tiny_tokenizer.convert_tokens_to_ids("<|end_of_sentence|>")
    assert tiny_tokenizer("ok<|end_of_sentence|>", add_special_tokens=False)["input_ids"][-1] == sep


def test_chat_template_is_ernie_format_and_segments_mark_assistant_text(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Sky?"},
                {"role": "assistant", "content": "Blue."}]
    rendered = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert rendered == ("<|begin_of_sentence|>Be brief.\nUser: Hi\nAssistant: Hello.<|end_of_sentence|>"
                        "User: Sky?\nAssistant: Blue.<|end_of_sentence|>")
    segments = conversation_segments(tiny_tokenizer, messages)
    assert "".join(text for text, _ in segments) == rendered
    assert [text for text, trained in segments if trained] == ["Hello.<|end_of_sentence|>", "Blue.<|end_of_sentence|>"]
    prompt = conversation_segments(tiny_tokenizer, messages[:4])
    assert prompt[-1] == ("User: Sky?\nAssistant: ", False)


def test_registry_describes_the_family():
    assert {"ernie-4.5-tiny-moe", "ERNIE-4.5-0.3B", "ERNIE-4.5-21B-A3B", "ERNIE-4.5-300B-A47B",
            "ERNIE-4.5-VL-28B-A3B", "ERNIE-4.5-VL-424B-A47B"} <= set(MODELS)
    assert MODELS["ERNIE-4.5-21B-A3B"].kind == "moe" and MODELS["ERNIE-4.5-0.3B"].kind == "dense"
    assert MODELS["ERNIE-4.5-VL-28B-A3B"].vision_experts == 64
    for spec in MODELS.values():
        assert {"sft-lora", "sft-full"} <= set(spec.presets)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="model directory not found: .*nowhere"):
        resolve_model_dir(str(tmp_path / "nowhere"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="config.json is missing"):
        resolve_model_dir(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ModelNotFound, match="ERNIE-4.5-21B-A3B is not embedded"):
        resolve_model_dir("ERNIE-4.5-21B-A3B", tmp_path)


def test_importing_registry_does_not_import_paddle():
    import subprocess
    import sys

    code = "import sys, models.registry, trainer.config, trainer.jobs; sys.exit('paddle' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
