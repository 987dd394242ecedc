"""End-to-end training through `python -m trainer run`: it learns, it exports, and it fails clearly."""

from __future__ import annotations

import json

import numpy as np
import paddle

from tests.conftest import exact_answer_rate, example_config, read_metrics, run_trainer
from trainer.jobfiles import read_status


def test_untuned_base_knows_none_of_the_answers(tiny_moe_dir):
    from models.loader import load_checkpoint

    model, tokenizer = load_checkpoint(str(tiny_moe_dir))
    assert exact_answer_rate(model, tokenizer) <= 0.05


def test_sft_lora_learns_the_sample_answers(lora_job):
    from models.loader import load_checkpoint

    status = json.loads((lora_job / "status.json").read_text())
    assert status["state"] == "completed" and status["step"] == status["total_steps"]
    metrics = read_metrics(lora_job)
    assert [m["step"] for m in metrics] == sorted({m["step"] for m in metrics})
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 5
    assert all(m["tokens_per_s"] > 0 and "eta_s" in m and m["memory"]["rss_mb"] > 0 for m in metrics)
    assert (lora_job / "output" / "adapter_info.json").is_file()
    model, tokenizer = load_checkpoint(str(lora_job / "output"))
    assert exact_answer_rate(model, tokenizer) >= 0.8


def test_full_sft_learns_the_sample_answers(workdir, tiny_moe_dir):
    from models.loader import load_checkpoint

    job_dir = workdir / "jobs" / "full-learns"
    # 12 of the example's 20 epochs: still 98% of the answers (10 get 98%, 8 only half)
    result = run_trainer(example_config("tiny_sft_full.yaml", **{"optim.num_train_epochs": 12}), job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model, tokenizer = load_checkpoint(str(job_dir / "output"))
    assert exact_answer_rate(model, tokenizer) >= 0.8


def test_export_merges_adapter_with_identical_logits(lora_job, tmp_path):
    from models.loader import load_checkpoint, load_model
    from trainer.export import export

    out = export(lora_job, merge=True, out_dir=tmp_path / "merged")
    assert {"config.json", "tokenizer.model", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    assert not (out / "adapter_info.json").exists()

    lora_model, _ = load_checkpoint(str(lora_job / "output"))
    lora_model.merge()
    exported = load_model(out)
    exported.eval()
    ids = paddle.to_tensor([[2, 17, 99, 5, 300, 41, 7]])
    with paddle.no_grad():
        in_memory = lora_model(ids, return_dict=True).logits.numpy()
        reloaded = exported(ids, return_dict=True).logits.numpy()
    np.testing.assert_allclose(reloaded, in_memory, atol=1e-5, rtol=1e-5)


def test_eval_split_logs_eval_loss_once_per_eval(workdir, tiny_moe_dir):
    job_dir = workdir / "jobs" / "with-eval"
    config = example_config("tiny_sft_lora.yaml", **{"optim.max_steps": 4, "data.eval_split": 0.1,
                                                     "logging.eval_steps": 2, "logging.logging_steps": 2})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 evaluation sequences" in result.stdout
    evals = [m for m in read_metrics(job_dir) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [2, 4]
    assert all(m["eval_loss"] > 0 for m in evals)


def _failed(job_dir) -> str:
    status = json.loads((job_dir / "status.json").read_text())
    assert status["state"] == "failed"
    return status["error"]


def test_lora_targets_matching_no_module_fail_clearly(workdir, tiny_moe_dir):
    job_dir = workdir / "jobs" / "bad-targets"
    config = example_config("tiny_sft_lora.yaml", **{"finetuning.lora.target_modules": ["q_proj"]})
    result = run_trainer(config, job_dir, timeout=120)
    assert result.returncode == 1
    assert "'q_proj' matches no linear layer of this model" in _failed(job_dir)
    assert "qkv_proj" in _failed(job_dir), "the message lists the layers that do exist"


def test_missing_model_directory_is_refused_before_anything_runs(workdir, tmp_path):
    job_dir = workdir / "jobs" / "no-model"
    config = example_config("tiny_sft_lora.yaml", **{"model.name_or_path": str(tmp_path / "no-such-model")})
    result = run_trainer(config, job_dir, timeout=120)
    assert result.returncode == 1
    assert f"model.name_or_path: model directory not found: {tmp_path / 'no-such-model'}" in result.stderr
    assert "Traceback" not in result.stderr and not (job_dir / "status.json").exists()


def test_malformed_data_line_fails_with_file_and_line(workdir, tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                    '{"messages": [\n')
    job_dir = workdir / "jobs" / "bad-data"
    config = example_config("tiny_sft_lora.yaml", **{"data.train": [{"path": str(data), "format": "auto"}]})
    result = run_trainer(config, job_dir, timeout=120)
    assert result.returncode == 1
    assert "broken.jsonl:2" in _failed(job_dir)


def test_unknown_config_key_is_refused_before_anything_runs(tmp_path):
    result = run_trainer(example_config("tiny_sft_lora.yaml", **{"optim.lr": 0.1}), tmp_path / "job", timeout=60)
    assert result.returncode == 1
    assert "unknown key 'optim.lr'" in result.stderr and "optim.learning_rate" in result.stderr
    assert not (tmp_path / "job" / "status.json").exists()


def test_a_batch_that_cannot_be_built_fails_the_job_instead_of_hanging(tmp_path):
    """paddle's DataLoader waits forever when its collate_fn raises; the guard ends the job."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = f"""
import paddle
from pathlib import Path
from trainer.train import FailingCollateGuard

def collate(batch):
    raise ValueError("row 3 has no tokens")

loader = paddle.io.DataLoader(list(range(4)), batch_size=2, num_workers=0,
                              collate_fn=FailingCollateGuard(collate, Path({str(tmp_path)!r}), True))
for batch in loader:
    pass
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "building a batch failed: ValueError: row 3 has no tokens" in status["error"]


def test_full_sft_resumes_from_a_checkpoint_taken_before_every_expert_saw_a_token(workdir, tiny_moe_dir):
    """One 16-token row leaves experts unchosen by step 1: they still get a (zero) gradient, so the
    optimizer state saved there covers every expert and the resumed run can load it."""
    job_dir = workdir / "jobs" / "resume-unchosen-experts"
    config = example_config("tiny_sft_full.yaml", **{"optim.max_steps": 1, "logging.save_steps": 1,
                                                      "optim.per_device_batch_size": 1, "data.max_seq_len": 16})
    first = run_trainer(config, job_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    config["optim"]["max_steps"] = 3
    resumed = run_trainer(config, job_dir, "--resume")
    assert resumed.returncode == 0, (job_dir / "train.log").read_text()[-3000:]
    assert read_status(job_dir)["step"] == 3
