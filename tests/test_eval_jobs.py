"""Evaluations as jobs of the queue (trainer/eval_jobs.py) and a training run's
`eval.after_training`: the job store launches `trainer eval --config`, counts its answers as steps,
stops it with the job's Stop, refuses to resume it; a run evaluates its base and its output on its
held-out rows when it ends."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import SAMPLE_SFT, example_config, run_trainer
from tests.conftest import read_metrics as read_job_metrics
from tests.test_jobs import wait_for, wait_state
from trainer.config import ConfigError, from_dict
from trainer.eval_jobs import (KIND, EvalError, after_training_dir, create_eval_job, eval_config, from_mapping,
                               read_metrics, read_predictions)
from trainer.jobs import JobStateError, JobStore


def test_an_eval_config_names_what_is_wrong():
    config = eval_config(["ernie-4.5-tiny-moe"], str(SAMPLE_SFT), max_new_tokens=8)
    assert config["kind"] == KIND and from_mapping(yaml.safe_load(yaml.safe_dump(config))) == config
    for change, said in ((dict(models=[]), "models: expected one or more"),
                         (dict(models=["a", "a"]), "a given more than once"),
                         (dict(data=""), "data: expected a data file"),
                         (dict(batch_size=0), "batch_size: expected a positive whole number, got 0"),
                         (dict(max_new_tokens="8"), "max_new_tokens: expected a positive whole number"),
                         (dict(surprise=1), "unknown key(s) surprise")):
        with pytest.raises(EvalError, match=said.replace("(", r"\(").replace(")", r"\)")):
            from_mapping({**config, **change}, "eval.yaml")
    with pytest.raises(EvalError, match="expected kind: evaluation"):
        from_mapping({"method": "sft"})


def test_an_eval_job_runs_in_the_queue_stops_and_is_not_resumed(tiny_moe_dir, tmp_path):
    store = JobStore(tmp_path / "studio")
    # the base never ends a reply: 60 rows of 128 tokens, 4 at a time, run long enough to stop
    job = create_eval_job(store, eval_config(["ernie-4.5-tiny-moe"], str(SAMPLE_SFT), batch_size=4))
    assert job.state == "queued" and job.name == "eval: ernie-4.5-tiny-moe on sample_sft.jsonl"
    store.start_job(job.id)
    wait_state(store, job.id, "running", timeout_s=240)
    predictions = job.job_dir / "predictions.jsonl"
    wait_for(lambda: (store.refresh(job.id).step or 0) >= 2, 240, "two answers")
    stopped = store.stop_job(job.id)
    assert stopped.state == "stopped", stopped.error
    lines = read_predictions(job.job_dir)
    assert len(lines) == predictions.read_text().count("\n") and 2 <= len(lines) < 60
    assert stopped.step == len(lines) and stopped.total_steps == 60
    assert json.loads((job.job_dir / "status.json").read_text())["unit"] == "answers"
    assert "[eval]" in job.paths.log.read_text()
    with pytest.raises(JobStateError, match="is an evaluation"):
        store.enqueue_resume(job.id)


def test_an_eval_job_with_bad_data_fails_naming_the_file(tmp_path):
    store = JobStore(tmp_path / "studio")
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    job = create_eval_job(store, eval_config(["ernie-4.5-tiny-moe"], str(data)))
    store.start_job(job.id)
    failed = wait_state(store, job.id, "failed", timeout_s=120)
    assert f"{data}" in failed.error and "empty" in failed.error


def test_after_training_evaluates_the_base_and_the_tuned_model_on_the_held_out_rows(tiny_moe_dir, tmp_path):
    with pytest.raises(ConfigError, match="eval.after_training: evaluation needs data"):
        from_dict(example_config("tiny_sft_lora.yaml", **{"eval.after_training": True}))
    job_dir = tmp_path / "job"
    config = example_config("tiny_sft_lora.yaml", **{"eval.after_training": True, "eval.max_new_tokens": 6,
                                                      "data.eval_split": 0.1, "optim.max_steps": 4})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = json.loads((job_dir / "status.json").read_text())
    assert status["state"] == "completed" and status.get("phase") is None
    eval_dir = after_training_dir(job_dir)
    eval_status = json.loads((eval_dir / "status.json").read_text())
    assert eval_status["state"] == "completed" and eval_status["step"] == eval_status["total_steps"] == 12
    metrics = read_metrics(eval_dir)
    tuned = str(job_dir / "output")
    assert metrics["labels"] == {"ernie-4.5-tiny-moe": "base", tuned: "tuned"}
    assert metrics["rows"] == 6 and set(metrics["models"]) == {"ernie-4.5-tiny-moe", tuned}
    for figures in metrics["models"].values():
        assert figures["scored"] == 6 and figures["perplexity"] > 1 and figures["rouge-l"] is not None
    assert len(read_predictions(eval_dir)) == 12
    assert "[eval] metrics written to" in (job_dir / "train.log").read_text()
    # with data.eval_split and logging.eval_steps 0 the run still reports its final evaluation loss
    assert any("eval_loss" in record for record in read_job_metrics(job_dir))
