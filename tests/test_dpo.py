"""DPO and DPO-LoRA: the packed preference sequence, truncation, and training that makes the tiny
model prefer the chosen replies, on its own and on top of an SFT job."""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from tests.conftest import ROOT, example_config, read_metrics, run_trainer
from trainer.data.formats import Example, Turn
from trainer.data.tokenize import IGNORE_INDEX, encode_dpo

SAMPLE_DPO = ROOT / "assets" / "sample_dpo.jsonl"
SAMPLE_DPO_MULTITURN = ROOT / "assets" / "sample_dpo_multiturn.jsonl"


def preference_examples(path=SAMPLE_DPO) -> list[Example]:
    from trainer.data.validate import load_examples

    examples, report = load_examples(str(path), "auto", False)
    assert report.rows_invalid == 0 and len(examples) == 60
    return examples


def packed_logps(model, tokenizer, examples, max_seq_len=256, max_prompt_len=128) -> np.ndarray:
    """(chosen, rejected) summed log-probabilities per example, from the packed sequences the
    trainer feeds paddleformers' DPO loss."""
    from trainer.datasets import PreferenceCollator

    collate = PreferenceCollator(tokenizer, use_filtered_label_loss=False)
    result = []
    for example in examples:
        features, _ = encode_dpo(tokenizer, example, max_seq_len, max_prompt_len)
        batch = collate([features])
        with paddle.no_grad():
            logits = model(batch["input_ids"], position_ids=batch["position_ids"],
                           attention_mask=batch["attention_mask"], return_dict=True).logits
        logp = paddle.nn.functional.log_softmax(logits.astype("float32"), axis=-1)[0].numpy()
        labels = np.array(features.response_labels)
        token_logp = np.where(labels != IGNORE_INDEX, logp[np.arange(len(labels)), np.maximum(labels, 0)], 0.0)
        split = features.prompt_len - 1 + features.chosen_len
        result.append((token_logp[:split].sum(), token_logp[split:].sum()))
    return np.array(result)


def separate_logp(model, prompt_ids: list[int], reply_ids: list[int]) -> float:
    ids = paddle.to_tensor([prompt_ids + reply_ids[:-1]])
    with paddle.no_grad():
        logp = paddle.nn.functional.log_softmax(model(ids, return_dict=True).logits.astype("float32"), axis=-1)
    logp = logp[0].numpy()
    start = len(prompt_ids) - 1
    return float(sum(logp[start + i, token] for i, token in enumerate(reply_ids)))


def test_packed_sequence_scores_each_reply_as_if_alone(tiny_moe_dir, tiny_tokenizer):
    """The mask keeps the rejected reply from seeing the chosen one and its positions restart at
    the prompt's end: both scores equal those of prompt+reply run on their own."""
    from models.chat_template import encode_conversation
    from models.loader import load_model

    model = load_model(tiny_moe_dir)
    model.eval()
    example = Example([Turn("system", "Be brief."), Turn("user", "What is the capital of France?")],
                      chosen="Paris is the capital.", rejected="中国的首都是北京。")
    packed = packed_logps(model, tiny_tokenizer, [example])[0]
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    prompt_ids, _ = encode_conversation(tiny_tokenizer, prompt)
    alone = []
    for reply in (example.chosen, example.rejected):
        full, _ = encode_conversation(tiny_tokenizer, prompt + [{"role": "assistant", "content": reply}])
        alone.append(separate_logp(model, prompt_ids, full[len(prompt_ids):]))
    np.testing.assert_allclose(packed, alone, rtol=1e-4, atol=1e-3)


def test_preference_truncation_policies(tiny_tokenizer):
    history = []
    for i in range(6):
        history += [Turn("user", f"Question {i} about rivers and mountains?"), Turn("assistant", f"Answer {i}.")]
    example = Example(history + [Turn("user", "And the last one?")], chosen="Yes, " * 30, rejected="No.")
    full, truncated = encode_dpo(tiny_tokenizer, example, 4096, 4096)
    assert not truncated
    dropped, truncated = encode_dpo(tiny_tokenizer, example, 4096, 40, "drop_oldest_turns")
    assert truncated and dropped.prompt_len <= 40 and dropped.prompt_len < full.prompt_len
    assert tiny_tokenizer.decode(dropped.input_ids[:dropped.prompt_len]).endswith("And the last one?\nAssistant: ")
    cut, _ = encode_dpo(tiny_tokenizer, example, 4096, 40, "truncate_end")
    assert cut.prompt_len == 40
    assert encode_dpo(tiny_tokenizer, example, 4096, 40, "skip_row") == (None, False)
    short, truncated = encode_dpo(tiny_tokenizer, example, full.prompt_len + 20, 4096)
    assert truncated and len(short.input_ids) <= full.prompt_len + 20
    assert short.rejected_len == full.rejected_len and short.chosen_len < full.chosen_len
    assert encode_dpo(tiny_tokenizer, example, full.prompt_len + 20, 4096, "skip_row")[0] is None


def test_a_multi_turn_pair_keeps_its_history_and_tools_in_the_prompt(tiny_tokenizer):
    """The conversation before the compared reply (earlier replies, a tool call and its result, the
    tool list) is the prompt, read and never learned; only the two replies are."""
    from models.chat_template import encode_conversation
    from trainer.data.formats import convert

    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    row = {"tools": [weather], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "rainy"}'},
        {"role": "assistant", "content": "Rainy."},
        {"role": "user", "content": "Should I take an umbrella?"}],
        "chosen_response": [{"role": "assistant", "content": "Yes, it rains in Oslo."}],
        "rejected_response": [{"role": "assistant", "content": "Rainy."}]}
    example = convert(row, "chatml_dpo")
    features, truncated = encode_dpo(tiny_tokenizer, example, 1024, 1024)
    prompt_ids, _ = encode_conversation(tiny_tokenizer, [t.to_message() for t in example.messages], tools=[weather])
    assert not truncated and features.input_ids[:features.prompt_len] == prompt_ids
    prompt = tiny_tokenizer.decode(prompt_ids)
    assert all(text in prompt for text in ("get_weather", '"city": "Oslo"', "rainy", "Rainy.", "umbrella"))
    labels = features.response_labels
    assert set(labels[:features.prompt_len - 1]) == {IGNORE_INDEX}
    learned = labels[features.prompt_len - 1:]
    assert IGNORE_INDEX not in learned and len(learned) == features.chosen_len + features.rejected_len
    assert tiny_tokenizer.decode(learned[:features.chosen_len]).startswith("Yes, it rains in Oslo.")
    assert tiny_tokenizer.decode(learned[features.chosen_len:]).startswith("Rainy.")


def test_sft_and_dpo_refuse_the_other_kind_of_data(workdir, tiny_moe_dir, tmp_path):
    config = example_config("tiny_sft_lora.yaml", **{"optim.max_steps": 2})
    config["data"]["train"] = [{"path": str(SAMPLE_DPO), "format": "auto"}]
    result = run_trainer(config, tmp_path / "sft-on-pairs")
    assert result.returncode == 1
    error = json.loads((tmp_path / "sft-on-pairs" / "status.json").read_text())["error"]
    assert "data.train[0]" in error and "holds preference rows" in error and "method sft needs sft data" in error


# The DPO-LoRA example in 12 epochs at a higher learning rate instead of 20: the tuned model
# prefers as many chosen replies (95%, the rest being replies far longer than their rejected one);
# logging every 4 steps puts a metrics line on the last step (12 epochs of 8 steps).
DPO_EPOCHS = 12


@pytest.fixture(scope="module")
def dpo_lora_job(workdir, tiny_moe_dir):
    job_dir = workdir / "jobs" / "dpo-lora"
    config = example_config("tiny_dpo_lora.yaml", **{"optim.num_train_epochs": DPO_EPOCHS,
                                                     "optim.learning_rate": 3e-3, "logging.logging_steps": 4})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


def test_dpo_lora_makes_the_model_prefer_the_chosen_replies(dpo_lora_job, tiny_moe_dir, tiny_tokenizer):
    from models.loader import load_checkpoint

    examples = preference_examples()
    base, _ = load_checkpoint(str(tiny_moe_dir))
    base_rate = float(np.mean(np.diff(packed_logps(base, tiny_tokenizer, examples), axis=1) < 0))
    tuned, tokenizer = load_checkpoint(str(dpo_lora_job / "output"))
    tuned_rate = float(np.mean(np.diff(packed_logps(tuned, tokenizer, examples), axis=1) < 0))
    assert 0.25 <= base_rate <= 0.75 and tuned_rate >= 0.9, (base_rate, tuned_rate)

    metrics = [m for m in read_metrics(dpo_lora_job) if "loss" in m]
    assert all({"reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy"} <= set(m) for m in metrics)
    assert metrics[0]["reward_accuracy"] < 0.8 and metrics[-1]["reward_accuracy"] >= 0.9
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"] and metrics[-1]["loss"] < metrics[0]["loss"]
    assert metrics[-1]["epoch"] == pytest.approx(DPO_EPOCHS)


# The multi-turn example (each conversation's last reply compared with a repeat of the answer to
# the turn before) at the single-turn fixture's learning rate: its reward accuracy is 1.0 from
# about step 12, so 5 epochs (40 steps, a metrics line every 4) leave a wide margin.
MULTITURN_EPOCHS = 5


@pytest.fixture(scope="module")
def dpo_multiturn_job(workdir, tiny_moe_dir):
    job_dir = workdir / "jobs" / "dpo-multiturn"
    config = example_config("tiny_dpo_multiturn_lora.yaml", **{
        "optim.num_train_epochs": MULTITURN_EPOCHS, "optim.learning_rate": 3e-3, "logging.logging_steps": 4})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


def test_multi_turn_dpo_teaches_answering_the_last_turn_as_single_turn_dpo_teaches_its_pairs(
        dpo_multiturn_job, dpo_lora_job, tiny_moe_dir, tiny_tokenizer):
    """Both jobs' reward accuracy starts low and ends at least 0.9; on every pair of the multi-turn
    set the tuned model's implicit reward (its log-probability over the base's) is higher for the
    answer to the last question than for the repeat of the answer before it, and per token it
    prefers that answer where the base model does not. (Summed log-probabilities would favour the
    shorter reply whatever was learned: the chosen reply is the longer in a third of the pairs.)"""
    from models.loader import load_checkpoint

    for job in (dpo_multiturn_job, dpo_lora_job):
        metrics = [m for m in read_metrics(job) if "loss" in m]
        assert metrics[0]["reward_accuracy"] < 0.8 and metrics[-1]["reward_accuracy"] >= 0.9, (job.name, metrics)
        assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"] and metrics[-1]["loss"] < metrics[0]["loss"]
    examples = preference_examples(SAMPLE_DPO_MULTITURN)
    assert all(len(e.messages) >= 3 and any(t.content == e.rejected for t in e.messages) for e in examples)
    packed = [encode_dpo(tiny_tokenizer, e, 256, 192)[0] for e in examples]
    lengths = np.array([[f.chosen_len, f.rejected_len] for f in packed])
    base, _ = load_checkpoint(str(tiny_moe_dir))
    base_logps = packed_logps(base, tiny_tokenizer, examples, max_prompt_len=192)
    tuned, tokenizer = load_checkpoint(str(dpo_multiturn_job / "output"))
    tuned_logps = packed_logps(tuned, tokenizer, examples, max_prompt_len=192)
    rewards = tuned_logps - base_logps
    assert np.mean(rewards[:, 0] > rewards[:, 1]) >= 0.9

    def per_token_preference(logps: np.ndarray) -> float:
        return float(np.mean(logps[:, 0] / lengths[:, 0] > logps[:, 1] / lengths[:, 1]))

    assert per_token_preference(base_logps) <= 0.75 and per_token_preference(tuned_logps) >= 0.9, \
        (per_token_preference(base_logps), per_token_preference(tuned_logps))


def test_full_dpo_on_the_dense_model_with_a_frozen_reference(workdir, tiny_dense_dir):
    job_dir = workdir / "jobs" / "dpo-full-dense"
    config = example_config("tiny_dpo_lora.yaml", **{
        "model.name_or_path": "ernie-4.5-tiny-dense", "finetuning.type": "full", "optim.learning_rate": 2e-4,
        "optim.num_train_epochs": 2})  # reward accuracy 0.28 at step 5, 0.72 at step 15
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = [m for m in read_metrics(job_dir) if "loss" in m]
    assert metrics[-1]["reward_accuracy"] > metrics[0]["reward_accuracy"]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert (job_dir / "output" / "config.json").is_file() and not (job_dir / "output" / "adapter_info.json").exists()


def test_dpo_on_top_of_an_sft_lora_job(workdir, lora_job):
    from models.loader import load_checkpoint

    job_dir = workdir / "jobs" / "sft-then-dpo"
    config = example_config("tiny_dpo_lora.yaml", **{"model.name_or_path": str(lora_job / "output"),
                                                      "optim.max_steps": 2})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    info = json.loads((job_dir / "output" / "adapter_info.json").read_text())
    assert info["base_model"] == str(job_dir / "base_model") and info["method"] == "dpo"
    assert (job_dir / "base_model" / "config.json").is_file()
    model, tokenizer = load_checkpoint(str(job_dir / "output"))
    assert model is not None and tokenizer.chat_template
