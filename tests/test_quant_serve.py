"""Low-bit chat: a studio-quantized checkpoint of the tiny MoE offered in the Chat tab, served by
`python -m models.serve` with the greedy answers of the same model quantized in memory, its
`/v1/models` card saying the quantization; a checkpoint that lost a scale tensor ends the server
with the tensor's name. (The full-precision server's card says `quantization: null`: test_serve.py's
test_models_and_health.)"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from models.chat_client import ChatError
from models.checkpoints import staging_dir
from models.server_process import ModelServer
from tests.conftest import shown
from trainer.export_facts import default_export_dir
from trainer.jobfiles import write_status

WIDTH = "wint4/8"
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def quantized(tiny_moe_dir, tmp_path_factory):
    """(the tiny MoE saved as wint4/8, a ChatEngine on the same quantized model in memory)."""
    from models.chat_engine import ChatEngine
    from models.loader import load_checkpoint
    from models.quant import quantize_model
    from models.quant_io import save_quantized
    from models.quant_spec import parse_spec

    spec = parse_spec(WIDTH)
    model, tokenizer = load_checkpoint(str(tiny_moe_dir))
    quantize_model(model, spec)
    out = save_quantized(model, spec, tmp_path_factory.mktemp("quant") / "tiny-wint4-8", source_dir=tiny_moe_dir)
    return out, ChatEngine(model, tokenizer)


def completed_job(ctx, name: str):
    job = ctx.store.create_job({"method": "sft", "model": {"name_or_path": "ernie-4.5-tiny-moe"}}, name=name)
    write_status(job.job_dir, state="completed")
    return ctx.store.refresh(job.id)


def test_a_quantized_export_is_offered_in_chat_and_answers_as_the_model_quantized_in_memory(
        quantized, tiny_moe_dir, tmp_path):
    from models.chat_request import SamplingParams
    from tests.conftest import sample_conversations
    from webui import chat_tab
    from webui.context import make_context
    from webui.model_servers import list_checkpoints

    checkpoint, engine = quantized
    ctx = make_context(tmp_path / "studio")
    job = completed_job(ctx, "low-bit")
    shutil.copytree(checkpoint, default_export_dir(job.job_dir, WIDTH))
    shutil.copytree(checkpoint, staging_dir(default_export_dir(job.job_dir, WIDTH)))  # one being written
    # another job exported (full precision) to a directory of the user's choice, as export.json records it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny_moe_dir / "config.json", elsewhere)
    other = completed_job(ctx, "plain")
    other.paths.export_state.write_text(json.dumps({"out_dir": str(elsewhere), "pid": 1, "exit_code": 0}))

    offered = {c.value: c.label for c in list_checkpoints(ctx.store, ctx.workdir)}
    export = str(default_export_dir(job.job_dir, WIDTH))
    assert [value for value in offered if value.startswith(str(job.job_dir))] == [export]
    assert offered[export] == f"low-bit · {job.id}: export (merged, wint4/8)"
    assert offered[str(elsewhere)] == f"plain · {other.id}: export in {elsewhere} (merged)"
    assert {c.value: c.label for c in list_checkpoints(ctx.store, ctx.workdir, "zh")}[export] == \
        f"low-bit · {job.id}：导出（已合并，wint4/8）"
    assert chat_tab.bot_label(ctx, export, "en") == offered[export]

    try:
        status = list(chat_tab.load(ctx, export))[-1]
        assert shown(status).endswith("Weights: wint4/8 (int4 experts, int8 elsewhere), one scale per output "
                                      "channel; dequantized layer by layer (portable).")
        assert "权重：wint4/8（专家 int4，其余 int8），每个输出通道一个缩放因子" in shown(status, "zh")
        client = ctx.models.client(export)
        card = client.model_card()
        assert card["quantization"] == {"width": WIDTH, "group_size": -1, "kernel": "portable"}
        for conversation in sample_conversations()[:3]:
            prompt = conversation[:-1]
            expected = engine.reply(prompt, SamplingParams(temperature=0, max_tokens=NEW_TOKENS))[1]
            streamed = client.complete(prompt, temperature=0, max_tokens=NEW_TOKENS)
            assert streamed.content == expected and streamed.usage["completion_tokens"] > 0
        plain = httpx.post(f"{client.base_url}/v1/chat/completions", timeout=60, json={
            "messages": prompt, "temperature": 0, "max_tokens": NEW_TOKENS}).json()
        assert plain["choices"][0]["message"]["content"] == expected
    finally:
        ctx.models.stop_all()


def test_a_quantized_checkpoint_without_a_scale_ends_the_server_naming_the_tensor(quantized, tmp_path):
    from safetensors.numpy import load_file, save_file

    checkpoint, _ = quantized
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = load_file(str(broken / "model.safetensors"))
    lost = sorted(name for name in weights if name.endswith(".weight_scale"))[-1]
    del weights[lost]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "paddle"})

    server = ModelServer(str(broken), log_path=tmp_path / "serve.log")
    with pytest.raises(ChatError, match="exited") as failed:
        server.start(timeout=60)
    assert server.process.returncode == 1
    layer = lost.rpartition(".")[0]
    assert f"the weights hold no tensor {lost!r} (the scales of quantized layer {layer})" in str(failed.value)


def test_an_adapter_on_a_quantized_checkpoint_is_refused_before_loading(quantized, tmp_path):
    from models.checkpoints import ModelNotFound
    from models.loader import locate_checkpoint

    checkpoint, _ = quantized
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "lora_config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="is a quantized checkpoint, and a LoRA adapter .* is applied only to "
                                            "a full-precision base"):
        locate_checkpoint(str(checkpoint), str(adapter))
    (adapter / "adapter_info.json").write_text(json.dumps({"base_model": str(checkpoint)}))
    with pytest.raises(ModelNotFound, match="export its job with --merge --quantize"):
        locate_checkpoint(str(adapter))
