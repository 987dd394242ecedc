"""`python -m trainer eval`: the metrics against their libraries, the tuned job against the base on
the sample set, and the bad inputs (no references, a checkpoint that fails to load, an empty data
set, prompts over the context, a bad row, a Stop mid-eval)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SAMPLE_SFT, answer_budget, sample_conversations
from trainer.eval_metrics import METRICS, mean_scores, scores


def run_eval(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "eval", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_metrics_agree_with_the_libraries():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    english = scores("The cat sat on the mat.", "The cat is on the mat.")
    # jieba's words: The cat sat on the mat . / The cat is on the mat . -> 6 of 7 words shared,
    # 4 of 6 bigrams, a longest common subsequence of 6
    assert english["rouge-1"] == pytest.approx(600 / 7, abs=1e-4)
    assert english["rouge-2"] == pytest.approx(400 / 6, abs=1e-4)
    assert english["rouge-l"] == pytest.approx(600 / 7, abs=1e-4)
    chinese = scores("北京是中国的首都。", "中国的首都是北京。")
    # 北京/是/中国/的/首都/。 against 中国/的/首都/是/北京/。: every word shared, 2 of 5 bigrams, LCS 4 of 6
    assert chinese["rouge-1"] == pytest.approx(100.0)
    assert chinese["rouge-2"] == pytest.approx(40.0)
    assert chinese["rouge-l"] == pytest.approx(400 / 6, abs=1e-4)
    for prediction, reference, result in (("The cat sat on the mat.", "The cat is on the mat.", english),
                                          ("北京是中国的首都。", "中国的首都是北京。", chinese)):
        # BLEU-4 over characters with smoothing method3, as LLaMA-Factory scores it, x100
        expected = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
        assert result["bleu-4"] == pytest.approx(expected * 100, abs=1e-4)
        assert 0 < result["bleu-4"] < 100
        assert result["exact_match"] == 0.0
    same = scores("  Blue.\n", "Blue.")
    assert same == {"exact_match": 1.0, "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "bleu-4": 100.0}
    assert scores("", "Blue.")["rouge-1"] == 0.0
    assert mean_scores([english, same])["exact_match"] == 0.5
    assert mean_scores([]) == {}


def test_the_tuned_job_beats_the_base_and_a_broken_checkpoint_is_named(lora_job, tiny_moe_dir, tmp_path):
    from models.loader import load_tokenizer

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    budget = max(answer_budget(load_tokenizer(tiny_moe_dir), c) for c in sample_conversations())
    out = tmp_path / "eval"
    done = run_eval("--model", "ernie-4.5-tiny-moe", "--model", lora_job, "--model", broken, "--data", SAMPLE_SFT,
                    "-o", out, "--max-new-tokens", budget)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    base, tuned = metrics["models"]["ernie-4.5-tiny-moe"], metrics["models"][str(lora_job)]
    assert tuned["exact_match"] >= 0.8, tuned
    assert base["exact_match"] <= 0.05, base
    assert tuned["rouge-l"] > base["rouge-l"] and tuned["bleu-4"] > base["bleu-4"]
    assert tuned["perplexity"] < base["perplexity"] / 10
    assert tuned["rows"] == tuned["answered"] == tuned["scored"] == 60 and tuned["not_computed"] == {}
    assert f"cannot read {broken / 'config.json'}" in metrics["models"][str(broken)]["error"]
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "completed" and status["failed_models"] == [str(broken)]
    assert status["step"] == status["total_steps"] == 180
    lines = read_lines(out / "predictions.jsonl")
    assert len(lines) == 120 and {line["model"] for line in lines} == {"ernie-4.5-tiny-moe", str(lora_job)}
    hits = [line for line in lines if line["model"] == str(lora_job) and line["scores"]["exact_match"]]
    assert hits and all(line["answer"].strip() == line["reference"].strip() for line in hits)
    assert str(broken) in (out / "eval.log").read_text()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["models"] == ["ernie-4.5-tiny-moe", str(lora_job), str(broken)] and config["max_new_tokens"] == budget


def test_prompts_without_references_get_predictions_and_over_long_ones_are_reported(tiny_moe_dir, tmp_path):
    long_turn = "word " * 1100  # about 2200 tokens: over the tiny model's 2048 alone
    rows = [
        {"messages": [{"role": "user", "content": "What is your name?"}]},
        {"messages": [{"role": "user", "content": long_turn}, {"role": "assistant", "content": "Yes."},
                      {"role": "user", "content": "What color is the sky?"}]},  # fits once its first exchange goes
        {"messages": [{"role": "user", "content": long_turn * 2}]},  # cannot fit at all
    ]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "eval"
    done = run_eval("--model", "ernie-4.5-tiny-moe", "--data", data, "-o", out, "--max-new-tokens", 4)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((out / "metrics.json").read_text())["models"]["ernie-4.5-tiny-moe"]
    assert all(figures[name] is None for name in (*METRICS, "perplexity"))
    assert set(figures["not_computed"]) == {*METRICS, "perplexity"}
    assert "no references" in figures["not_computed"]["exact_match"]
    assert (figures["answered"], figures["prompts_truncated"], figures["prompts_skipped"]) == (2, 1, 1)
    lines = sorted(read_lines(out / "predictions.jsonl"), key=lambda line: line["index"])
    assert [line["reference"] for line in lines] == [None] * 3
    assert lines[1]["dropped_messages"] == 2 and lines[1]["answer"] is not None
    assert lines[2]["answer"] is None and "maximum context length" in lines[2]["skipped"]

    alpaca = tmp_path / "alpaca.jsonl"  # alpaca without `output` reads as prompts too
    alpaca.write_text(json.dumps({"instruction": "Say hi"}) + "\n")
    from trainer.evaluate import read_rows

    name, read, _ = read_rows(alpaca)
    assert name == "alpaca" and read[0].reference is None and read[0].messages[-1]["content"] == "Say hi"


def test_a_tool_row_is_asked_with_its_tools_and_scored_with_its_call(tiny_moe_dir, tmp_path):
    """A function-calling row is evaluated as it is trained: its prompt lists the row's tools, and a
    reply that is a call is the reference (the call as the studio's layout writes it) and is scored
    as a call."""
    from models.chat_engine import ChatEngine
    from trainer.data.tool_set import TOOLS, call_row
    from trainer.evaluate import StopFlag, predict, read_rows, reference_perplexity

    row = call_row(TOOLS, "What is the weather in Oslo?", "get_weather", {"city": "Oslo"}, {"sky": "rainy"}, "Rainy.")
    called = {**row, "messages": row["messages"][:2]}  # the reply to score is the call itself
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (row, called)))
    _, rows, _ = read_rows(data)
    assert [r.tools for r in rows] == [TOOLS, TOOLS]
    assert rows[0].reference == "Rainy." and rows[0].messages[-1]["role"] == "tool"
    assert rows[1].reference.startswith("<tool_call>") and '"city": "Oslo"' in rows[1].reference
    engine = ChatEngine.load(str(tiny_moe_dir))
    asked = []
    prepare = engine.prepare
    engine.prepare = lambda *args, **kwargs: asked.append(prepared := prepare(*args, **kwargs)) or prepared
    lines = []
    predict(engine, rows, "base", 4, 2, StopFlag(tmp_path), lines.append)
    assert len(lines) == 2 and all("get_weather" in prompt.text for prompt in asked)
    ppl, why, counts = reference_perplexity(engine, rows)
    assert why is None and ppl > 1 and counts["perplexity_rows"] == 2


def test_bad_data_is_refused_before_anything_is_loaded(tmp_path):
    empty, empty_array, header_only = tmp_path / "empty.jsonl", tmp_path / "empty.json", tmp_path / "empty.csv"
    empty.write_text("")
    empty_array.write_text("[]")
    header_only.write_text("instruction,output\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
                   + "\n" + json.dumps({"messages": [{"role": "user", "content": 3}]}) + "\n")
    for data, said in ((empty, "file is empty"), (empty_array, "the JSON array is empty"),
                       (header_only, "no data rows"), (bad, f"{bad}:2: field 'messages[0].content'")):
        out = tmp_path / f"out-{data.name}"
        done = run_eval("--model", "ernie-4.5-tiny-moe", "--data", data, "-o", out, timeout=60)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert not out.exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    done = run_eval("--model", "m", "--data", SAMPLE_SFT, "-o", taken, timeout=60)
    assert done.returncode == 2 and "not an empty directory" in done.stderr
    done = run_eval("--model", "m", "--model", "m", "--data", SAMPLE_SFT, timeout=60)
    assert done.returncode == 2 and "more than once" in done.stderr


def test_a_stop_mid_eval_leaves_whole_predictions_and_status_stopped(tiny_moe_dir, tmp_path):
    out = tmp_path / "eval"
    # the base never ends a reply, so 60 rows of 128 tokens, 4 at a time, run long enough to stop
    process = subprocess.Popen([sys.executable, "-m", "trainer", "eval", "--model", "ernie-4.5-tiny-moe",
                                "--data", str(SAMPLE_SFT), "-o", str(out), "--batch-size", "4"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    predictions = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (predictions.exists() and predictions.read_text().count("\n") >= 2):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    lines = read_lines(predictions)  # every line whole JSON
    assert 2 <= len(lines) < 60
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and status["step"] == len(lines) and status["total_steps"] == 60
    assert "stopped after" in (out / "eval.log").read_text()
