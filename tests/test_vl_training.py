"""Vision-language fine-tuning of the embedded tiny VL model learns what only the images show.

The synthetic shapes set (trainer/data/shapes.py) asks about colour, shape, count and side; the
answers are in the pixels alone. Trained with the example config (examples/tiny_vl_sft_lora.yaml,
in half its epochs: conftest.VL_EPOCHS) and with full fine-tuning, the model must answer the
questions of images it never saw; the untuned model, and the tuned one shown a blank image, must
stay near chance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import example_config, read_metrics, run_trainer
from trainer.data.shapes import write_shapes_dataset

TEST_ROWS = 40


@pytest.fixture(scope="module")
def shapes_test(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes-test"), TEST_ROWS, seed=2)


@pytest.fixture(scope="module")
def vl_full_job(workdir):
    job_dir = workdir / "jobs" / "vl-full"
    config = example_config("tiny_vl_sft_lora.yaml", finetuning__type="full", optim__num_train_epochs=6)
    result = run_trainer(config, job_dir, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


def _engine(path):
    from models.chat_engine import ChatEngine

    return ChatEngine.load(str(path))


def test_lora_answers_what_only_unseen_images_show_and_a_blank_image_leaves_it_guessing(vl_lora_job, shapes_test):
    from trainer.data.shapes import evaluate

    engine = _engine(vl_lora_job / "output")
    seen = evaluate(engine, shapes_test, choice=False)
    assert seen["exact"] >= 0.9, seen
    blank = evaluate(engine, shapes_test, blank=True, exact=False)
    assert abs(blank["choice"] - blank["chance"]) <= 0.10, blank


def test_full_fine_tuning_answers_what_only_unseen_images_show(vl_full_job, shapes_test):
    from trainer.data.shapes import evaluate

    engine = _engine(vl_full_job / "output")
    seen = evaluate(engine, shapes_test, choice=False)
    assert seen["exact"] >= 0.9, seen
    blank = evaluate(engine, shapes_test, blank=True, exact=False)
    assert abs(blank["choice"] - blank["chance"]) <= 0.10, blank


def test_the_untuned_model_is_at_chance(workdir, shapes_test):
    from models.tiny import ensure_built
    from trainer.data.shapes import evaluate

    untuned = evaluate(_engine(ensure_built("ernie-4.5-tiny-vl", workdir / "models")), shapes_test)
    assert untuned["exact"] <= 0.05, untuned
    assert abs(untuned["choice"] - untuned["chance"]) <= 0.10, untuned


def test_the_job_records_text_and_vision_expert_groups_apart(vl_lora_job):
    records = [json.loads(line) for line in (vl_lora_job / "expert_load.jsonl").read_text().splitlines()]
    assert records and all(r["groups"] == [4, 4] for r in records)
    # images went to the vision experts, text to the text experts: both groups carry tokens
    last = np.asarray(records[-1]["tokens"])
    assert last[:, :4].sum() > 0 and last[:, 4:].sum() > 0
    metrics = read_metrics(vl_lora_job)
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 5


def test_text_tokens_never_reach_vision_experts_in_a_training_step(workdir, shapes_test, monkeypatch):
    import paddle

    import models.moe_dispatch as dispatch
    from models.loader import load_model, load_tokenizer
    from models.tiny import ensure_built
    from models.vl_inputs import ImageProcessor
    from trainer.data.rows import Example, Turn
    from trainer.data.vl_encode import encode_vl_sft
    from trainer.vision import VisionCollator, vl_loss

    model_dir = ensure_built("ernie-4.5-tiny-vl", workdir / "models")
    tokenizer, processor = load_tokenizer(model_dir), ImageProcessor(model_dir)
    rows = [json.loads(line) for line in shapes_test.read_text().splitlines()[:4]]
    features = [encode_vl_sft(tokenizer, processor, Example(
        [Turn(m["role"], m["content"]) for m in row["messages"]],
        images=tuple(str(shapes_test.parent / i) for i in row["images"])), 256)[0] for row in rows]
    text_only = encode_vl_sft(tokenizer, processor, Example([Turn("user", "What colour is red?"),
                                                             Turn("assistant", "red")]), 256)[0]
    batch = VisionCollator(tokenizer.pad_token_id)([*features, text_only])

    seen = []
    route = dispatch.route

    def recording(block, x, token_type_ids=None):
        routing = route(block, x, token_type_ids)
        seen.append((token_type_ids.reshape([-1]).numpy().copy(), routing.expert_ids.numpy().copy()))
        return routing

    monkeypatch.setattr(dispatch, "route", recording)
    model = load_model(model_dir)
    model.train()
    vl_loss(model, batch).backward()
    assert len(seen) == 3  # the three MoE layers
    for types, experts in seen:
        assert (types == 1).any() and (types == 0).any()
        assert (experts[types == 0] < 4).all(), "a text token went to a vision expert"
        assert (experts[types == 1] >= 4).all(), "an image token went to a text expert"
    assert model.vision_model.blocks[0].attn.qkv.weight.grad is not None
    assert paddle.isfinite(model.model.layers[1].mlp.gate.weight_1.grad).all()

    # the multimodal token-balanced loss takes the same VL batch (each sequence's loss over its length)
    from trainer.train import token_balanced_loss

    balanced = VisionCollator(tokenizer.pad_token_id, with_lengths=True)([*features, text_only])
    assert np.isfinite(float(token_balanced_loss(model, balanced)))


def test_the_shipped_shapes_set_is_what_the_project_code_draws(tmp_path):
    from PIL import Image

    from tests.conftest import ROOT

    shipped = ROOT / "assets" / "shapes"
    fresh = write_shapes_dataset(tmp_path, 600, seed=1, name="train.jsonl")
    assert fresh.read_text() == (shipped / "train.jsonl").read_text()
    for image in sorted((tmp_path / "images").iterdir())[::50]:
        assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(shipped / "images" / image.name)))


def test_the_heatmap_heads_text_and_vision_experts_apart_and_shades_each_group_on_its_own():
    from webui.monitor import expert_heatmap_html

    record = {"step": 7, "layers": [1], "tokens": [[30, 10, 0, 0, 5, 5, 5, 5]], "imbalance": [3.0], "groups": [4, 4]}
    html = expert_heatmap_html(record, "step {step}", ("text experts", "vision experts"))
    assert '<th colspan="4" class="studio-expert-group">text experts</th>' in html
    assert '<th colspan="4" class="studio-expert-group">vision experts</th>' in html
    assert html.count("border-left: 3px") == 1
    assert ">75%</td>" in html and html.count(">25%</td>") == 5  # 30 of the 40 text tokens; 5 of 20 vision
    plain = expert_heatmap_html({**record, "groups": None}, "step {step}")
    assert "studio-expert-group" not in plain and ">50%</td>" in plain  # 30 of all 60


def test_the_openai_client_sends_an_unseen_image_as_a_data_url_and_gets_the_trained_answer(
        vl_lora_job, shapes_test, tmp_path):
    import base64

    import openai

    from models.server_process import ModelServer
    from trainer.data.shapes import questions

    server = ModelServer(str(vl_lora_job / "output"), name="vl-tuned", log_path=tmp_path / "server.log")
    server.start()
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        asked = [q for q in questions(shapes_test) if q[3] == "colour"][:8]
        right = 0
        for image, question, answer, _ in asked:
            url = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()
            reply = client.chat.completions.create(
                model="vl-tuned", temperature=0, max_tokens=8,
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                       {"type": "text", "text": question}]}])
            right += reply.choices[0].message.content.strip() == answer
            assert reply.usage.prompt_tokens_details.image_tokens == 18  # 16 patch tokens, start and end
        assert right >= 7, f"{right} of {len(asked)} colours right"
    finally:
        server.stop()
