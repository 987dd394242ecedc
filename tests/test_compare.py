"""The Compare tab without a browser: job directories written by hand (config.yaml through the job
store, status.json and metrics.jsonl through trainer.jobfiles), then the overlaid curves, the
final-figures table and the table of differing settings read back from them. The browser test is
test_browser_compare.py."""

from __future__ import annotations

import json
import time

import gradio as gr
import pytest

from trainer.eval_jobs import after_training_dir, create_eval_job, eval_config
from trainer.jobfiles import append_metrics, write_status
from webui import compare_tab, monitor
from webui.compare_tab import MISSING, compare


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio")


def sft_job(ctx, name: str, lr: float, rank: int, **extra):
    config = {"method": "sft", "optim": {"learning_rate": lr}, "finetuning": {"type": "lora", "lora": {"rank": rank}},
              **extra}
    return ctx.store.create_job(config, name=name)


@pytest.fixture
def two_jobs(ctx):
    """`high`: completed after 65 s, eval loss at steps 2 and 4, an evaluation after training;
    `low`: still running at step 2 of 4, no eval, its config naming data.eval_split, which high's lacks."""
    high = sft_job(ctx, "high", 2e-3, 8)
    low = sft_job(ctx, "low", 1e-3, 16, data={"eval_split": 0.1})
    now = time.time()
    for step, loss in enumerate((3.0, 2.0, 1.5, 1.25), start=1):
        append_metrics(high.job_dir, {"step": step, "loss": loss, "lr": 2e-3, "tokens_per_s": 1234.4})
        if step % 2 == 0:
            append_metrics(high.job_dir, {"step": step, "eval_loss": {2: 1.8, 4: 1.9}[step]})
    write_status(high.job_dir, state="completed", step=4, total_steps=4, started=now - 65, ended=now)
    for step, loss in ((1, 3.5), (2, 2.5)):
        append_metrics(low.job_dir, {"step": step, "loss": loss, "lr": 1e-3, "tokens_per_s": 999.0})
    write_status(low.job_dir, state="running", step=2, total_steps=4, started=now - 10)
    results = {"exact_match": 0.9, "rouge-1": 91.234, "rouge-2": 80.0, "rouge-l": 90.5, "bleu-4": 75.25,
               "perplexity": 1.23456, "not_computed": {}}
    after_training_dir(high.job_dir).mkdir()
    (after_training_dir(high.job_dir) / "metrics.json").write_text(json.dumps(
        {"labels": {"ernie-4.5-tiny-moe": "base", str(high.paths.output): "tuned"},
         "models": {str(high.paths.output): results,
                    "ernie-4.5-tiny-moe": {**results, "exact_match": 0.0}}}))
    return high, low


def rows_of(frame) -> dict[str, list[str]]:
    return {row[0]: list(row[1:]) for row in frame.itertuples(index=False)}


def test_curves_are_overlaid_one_colour_per_job(ctx, two_jobs):
    high, low = two_jobs
    view = compare(ctx, [high.id, low.id], "margin", "en")
    assert view.status == ""
    loss = view.loss["value"]
    assert list(loss.columns) == ["step", "loss", "job"]
    assert loss[loss.job == "high"].loss.tolist() == [3.0, 2.0, 1.5, 1.25]
    assert loss[loss.job == "low"].step.tolist() == [1.0, 2.0]  # a running job's curve so far
    assert set(view.loss["color_map"]) == {"high", "low"} and len(set(view.loss["color_map"].values())) == 2
    evals = view.evals["value"]
    assert view.evals["visible"] and evals.job.tolist() == ["high", "high"] and evals.eval_loss.tolist() == [1.8, 1.9]
    assert view.rewards["visible"] is False and view.reward_series["visible"] is False


def test_final_figures_have_a_column_per_job_and_a_dash_where_one_has_none(ctx, two_jobs):
    high, low = two_jobs
    frame = compare(ctx, [high.id, low.id], None, "en").metrics["value"]
    assert list(frame.columns) == ["Figure", "high", "low"]
    rows = rows_of(frame)
    assert rows["state"] == ["completed", "running"]
    assert rows["steps done"] == ["4/4", "2/4"]
    assert rows["final training loss"] == ["1.2500", "2.5000"]
    assert rows["best eval loss"] == ["1.8000", MISSING] and rows["final eval loss"] == ["1.9000", MISSING]
    assert rows["runtime"][0] == "1:05"
    assert rows["tokens/s (last logging step)"] == ["1,234", "999"]
    assert rows["exact match · tuned"] == ["90.0%", MISSING] and rows["exact match · base"] == ["0.0%", MISSING]
    assert list(rows)[7:9] == ["exact match · base", "exact match · tuned"]  # the base first, whatever the file's order
    assert rows["ROUGE-1 · tuned"] == ["91.23", MISSING] and rows["perplexity · tuned"] == ["1.235", MISSING]
    assert not any("reward" in label for label in rows)  # no DPO job chosen: no reward rows
    zh = rows_of(compare(ctx, [high.id, low.id], None, "zh").metrics["value"])
    assert zh["状态"] == ["已完成", "运行中"] and zh["精确匹配 · 微调后"] == ["90.0%", MISSING]


def test_only_the_settings_that_differ_are_listed_with_their_labels(ctx, two_jobs):
    high, low = two_jobs
    view = compare(ctx, [high.id, low.id], None, "en")
    frame = view.differ["value"]
    assert view.differ["visible"] and view.same == ""
    assert list(frame.columns) == ["Setting", "Key", "high", "low"]
    assert frame.values.tolist() == [  # schema order; a key only one config names shows a dash for the other
        ["LoRA rank", "finetuning.lora.rank", "8", "16"],
        ["Eval split", "data.eval_split", MISSING, "0.1"],
        ["Learning rate", "optim.learning_rate", "0.002", "0.001"],
    ]
    zh = compare(ctx, [high.id, low.id], None, "zh").differ["value"]
    assert "学习率" in zh["设置"].tolist() and "LoRA 秩" in zh["设置"].tolist()
    twin = sft_job(ctx, "twin", 2e-3, 8)
    same = compare(ctx, [high.id, twin.id], None, "en")
    assert same.differ["visible"] is False and "same settings" in same.same


def test_dpo_jobs_show_the_chosen_reward_curve_and_their_last_accuracy(ctx):
    jobs = [ctx.store.create_job({"method": "dpo", "dpo": {"beta": beta}}, name=f"beta {beta}") for beta in (0.1, 0.5)]
    for job, accuracy in zip(jobs, (0.75, 0.5)):
        for step in (1, 2):
            append_metrics(job.job_dir, {"step": step, "loss": 0.6, "reward_chosen": 0.1, "reward_rejected": -0.1,
                                         "reward_margin": 0.2 * step, "reward_accuracy": accuracy})
    view = compare(ctx, [job.id for job in jobs], "accuracy", "en")
    assert view.rewards["visible"] and view.reward_series == {"__type__": "update", "value": "accuracy",
                                                             "visible": True}
    assert sorted(view.rewards["value"].value.tolist()) == [0.5, 0.5, 0.75, 0.75]
    assert compare(ctx, [job.id for job in jobs], "margin", "en").rewards["value"].value.tolist() == [0.2, 0.4] * 2
    rows = rows_of(view.metrics["value"])
    assert rows["final reward accuracy"] == ["75.0%", "50.0%"] and rows["final reward margin"] == ["0.4000"] * 2
    assert rows_of(view.differ["value"])["DPO beta"] == ["dpo.beta", "0.1", "0.5"]


def test_fewer_than_two_more_than_four_or_gone_jobs_are_refused_clearly(ctx, two_jobs):
    high, low = two_jobs
    one = compare(ctx, [high.id], None, "en")
    assert "at least two" in one.status and "(1 chosen)" in one.status and one.metrics["visible"] is False
    assert "至少选择两个" in compare(ctx, [], None, "zh").status
    extra = [sft_job(ctx, f"extra {i}", 1e-4, 4).id for i in range(3)]
    many = compare(ctx, [high.id, low.id, *extra], None, "en")
    assert "at most four" in many.status and "(5 chosen)" in many.status and many.differ["visible"] is False
    assert compare(ctx, [high.id, low.id, *extra[:2]], None, "en").metrics["value"].shape[1] == 5
    ctx.store.delete_job(low.id)
    gone = compare(ctx, [high.id, low.id], None, "en")
    assert f"Job {low.id} no longer exists" in gone.status and "at least two" in gone.status
    assert "no longer exists" in compare(ctx, [high.id, "not-an-id"], None, "en").status


def test_the_choices_are_the_training_jobs_and_keep_what_still_exists(ctx, two_jobs, tmp_path):
    high, low = two_jobs
    data = tmp_path / "rows.jsonl"
    evaluation = create_eval_job(ctx.store, eval_config(["ernie-4.5-tiny-moe"], str(data)))
    with gr.Blocks():
        tab = compare_tab.build(ctx)
    out = compare_tab.refresh(ctx, tab, [high.id, "20000101-000000-dead"], "margin", "en")
    choices = out[tab.jobs]["choices"]
    assert {value for _, value in choices} == {high.id, low.id}
    assert out[tab.jobs]["value"] == [high.id] and "at least two" in out[tab.status]
    assert "is an evaluation" in compare(ctx, [high.id, evaluation.id], None, "en").status


def test_a_long_curve_is_thinned_and_keeps_its_last_point():
    points = [[step, float(step)] for step in range(1, 10_001)]
    thinned = monitor.thin(points, 1000)
    assert len(thinned) <= 1001 and thinned[0] == [1, 1.0] and thinned[-1] == [10_000, 10_000.0]
    assert monitor.thin(points[:5], 1000) == points[:5]


def test_a_value_that_is_not_a_number_is_left_off_the_curve(ctx, two_jobs):
    high, low = two_jobs
    append_metrics(low.job_dir, {"step": 3, "loss": "lots"})
    loss = compare(ctx, [high.id, low.id], None, "en").loss["value"]
    assert loss[loss.job == "low"].step.tolist() == [1.0, 2.0]


def test_a_job_whose_config_cannot_be_read_is_named_and_still_compared(ctx, two_jobs):
    high, low = two_jobs
    high.paths.config.write_text("model: [unclosed")
    view = compare(ctx, [high.id, low.id], None, "en")
    assert "The settings of high cannot be read" in view.status
    assert rows_of(view.metrics["value"])["state"] == ["completed", "running"]
    assert view.differ["visible"] is False and view.same == ""  # one config alone is not "the same settings"
    other = sft_job(ctx, "other", 1e-3, 4)
    three = compare(ctx, [high.id, low.id, other.id], None, "en").differ["value"]
    assert set(three["high"]) == {MISSING} and three["low"].tolist() == ["16", "0.1"]
