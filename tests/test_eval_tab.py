"""The Evaluate tab and the Jobs tab's evaluation figures without a browser, on evaluation
directories written by hand as trainer/evaluate.py writes them: the metrics table (one column per
checkpoint, what was not computed and why, a failed checkpoint's error), the answers side by side
(coloured against the reference, filtered), the downloads, the list of evaluations, Start's refusals,
Stop, Clone, and the Jobs tab showing figures instead of curves."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import SAMPLE_SFT, shown
from trainer.eval_jobs import after_training_dir, create_eval_job, eval_config
from trainer.jobfiles import write_status

BASE, BROKEN = "ernie-4.5-tiny-moe", "/nowhere/broken"
QUESTIONS = [("What color is the sky?", "Blue."), ("2 plus 3 equals?", "5."), ("Say hi", "Hi."), ("Long one?", "Yes.")]
# (base's answer, tuned's answer) per row; None: the prompt was skipped
ANSWERS = [("Blue.", "Blue."), ("Seven", "5."), ("Hello", "Hello"), (None, "No.")]


def figures(exact: float, **more) -> dict:
    return {"exact_match": exact, "rouge-1": 40.0, "rouge-2": 20.0, "rouge-l": 35.5, "bleu-4": 12.345,
            "perplexity": 12.5, "not_computed": {}, "rows": 4, "answered": 3, "prompts_truncated": 1,
            "prompts_skipped": 1, "with_reference": 4, "scored": 3, **more}


def write_evaluation(directory: Path, tuned: str, state: str = "completed") -> None:
    """An evaluation of the base, a tuned job's output and a checkpoint that failed to load."""
    directory.mkdir(parents=True, exist_ok=True)
    models, labels = [BASE, tuned, BROKEN], {BASE: "base", tuned: "tuned"}
    config = eval_config(models, str(SAMPLE_SFT), max_new_tokens=8, labels=labels)
    if not (directory / "config.yaml").exists():
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for model, column in ((BASE, 0), (tuned, 1)):
        for index, ((question, reference), answers) in enumerate(zip(QUESTIONS, ANSWERS)):
            base = {"index": index, "line": index + 1, "model": model, "reference": reference,
                    "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]}
            answer = answers[column]
            if answer is None:
                lines.append({**base, "answer": None, "skipped": "the prompt is over the maximum context length"})
            else:
                lines.append({**base, "answer": answer + "\n", "finish_reason": "stop",
                              "scores": {"exact_match": float(answer == reference)}})
    (directory / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    tuned_figures = figures(0.75, perplexity=None, not_computed={"perplexity": "stopped before it was measured"})
    metrics = {"data": str(SAMPLE_SFT), "format": "messages", "rows": 4, "rows_with_images_left_out": 1,
               "labels": labels, "models": {BASE: figures(0.25), tuned: tuned_figures,
                                            BROKEN: {"error": f"ModelNotFound: cannot read {BROKEN}/config.json"}}}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    write_status(directory, state=state, step=12, total_steps=12, unit="answers", started=time.time() - 9,
                 ended=time.time(), failed_models=[BROKEN])


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio")


@pytest.fixture
def tuned_job(ctx):
    """A completed training job with a LoRA output and evaluation rows (data.eval_split)."""
    job = ctx.store.create_job({"method": "sft", "model": {"name_or_path": BASE},
                                "data": {"train": [{"path": str(SAMPLE_SFT)}], "eval_split": 0.1}}, name="tuned-run")
    job.paths.output.mkdir()
    (job.paths.output / "config.json").write_text("{}")
    write_status(job.job_dir, state="completed", step=5, total_steps=5, started=time.time() - 5, ended=time.time())
    return ctx.store.get_job(job.id)


@pytest.fixture
def eval_job(ctx, tuned_job):
    job = create_eval_job(ctx.store, eval_config([BASE, str(tuned_job.paths.output), BROKEN], str(SAMPLE_SFT),
                                                 labels={str(tuned_job.paths.output): "tuned-run"}))
    write_evaluation(job.job_dir, str(tuned_job.paths.output))
    return ctx.store.get_job(job.id)


def test_the_metrics_table_has_a_column_per_checkpoint_and_says_what_is_missing(tmp_path):
    from webui.eval_figures import figures_table

    write_evaluation(tmp_path / "eval", "/jobs/abc/output")
    table = figures_table(tmp_path / "eval", "en")
    assert list(table.columns) == ["Figure", "base", "tuned", "broken"]
    rows = {row[0]: row[1:] for row in table.values.tolist()}
    assert rows["exact match"] == ["25.0%", "75.0%", "—"]
    assert rows["ROUGE-L"] == ["35.50", "35.50", "—"] and rows["BLEU-4"] == ["12.35", "12.35", "—"]
    assert rows["perplexity"] == ["12.5", "not computed: stopped before it was measured", "—"]
    assert rows["answered"] == ["3 / 4", "3 / 4", "—"]
    assert rows["prompts skipped (too long)"] == ["1", "1", "—"]
    assert rows["error"] == ["—", "—", "ModelNotFound: cannot read /nowhere/broken/config.json"]
    chinese = figures_table(tmp_path / "eval", "zh")
    assert list(chinese.columns) == ["指标", "基座", "微调后", "broken"]
    assert chinese.values.tolist()[5][2] == "未计算：stopped before it was measured"
    assert figures_table(tmp_path / "nothing", "en") is None


def test_answers_side_by_side_are_coloured_against_the_reference_and_filtered(tmp_path):
    from webui.eval_figures import checkpoints, checkpoint_names
    from webui.eval_results import default_pair, example_rows, filtered, table_html
    from trainer.eval_jobs import read_predictions

    tuned = "/jobs/abc/output"
    write_evaluation(tmp_path / "eval", tuned)
    models, labels = checkpoints(tmp_path / "eval")
    assert default_pair(models, labels) == (tuned, BASE)
    assert default_pair(["a", "b", "c"], {}) == ("c", "a")
    assert default_pair(["a", "b", "c"], {"b": "my-job"}) == ("b", "a")
    assert default_pair(["a"], {}) == ("a", "a")
    rows = example_rows(read_predictions(tmp_path / "eval"))
    assert [row.question for row in rows] == [q for q, _ in QUESTIONS]
    assert [r.index for r in filtered(rows, "a-ref", tuned, BASE)] == [2, 3]
    assert [r.index for r in filtered(rows, "a-ref", BASE, tuned)] == [1, 2, 3]
    assert [r.index for r in filtered(rows, "a-b", tuned, BASE)] == [1, 3]  # both said Hello on row 2
    assert [r.index for r in filtered(rows, "all", tuned, BASE)] == [0, 1, 2, 3]

    names = checkpoint_names(models, labels, "en")
    page = table_html(filtered(rows, "a-b", tuned, BASE), len(rows), models, names, "en")
    assert 'data-rows="2"' in page and "2 of 4 rows shown." in page
    assert '<td class="eval-differs" data-model="ernie-4.5-tiny-moe" title="Seven\n">Seven</td>' in page
    assert '<td class="eval-match" data-model="/jobs/abc/output" title="5.\n">5.</td>' in page
    assert "skipped: the prompt is over the maximum context length" in page
    assert page.count("eval-differs") == 3  # Seven, the skipped prompt, No.
    assert "not evaluated: the checkpoint failed" in table_html(rows, 4, models, names, "en", frozenset({BROKEN}))
    assert "<th>base</th><th>tuned</th><th>broken</th>" in page
    assert "No row matches" in table_html([], 4, models, names, "en")
    assert "<th>参考答案</th><th>基座</th>" in table_html(rows, 4, models, checkpoint_names(models, labels, "zh"), "zh")


def test_the_downloads_hold_every_row_and_the_predictions_as_written(tmp_path):
    from trainer.eval_jobs import read_predictions
    from webui.eval_figures import checkpoint_names, checkpoints
    from webui.eval_results import example_rows, write_downloads

    write_evaluation(tmp_path / "eval", "/jobs/abc/output")
    models, labels = checkpoints(tmp_path / "eval")
    rows = example_rows(read_predictions(tmp_path / "eval"))
    predictions = tmp_path / "eval" / "predictions.jsonl"
    table, lines = write_downloads(tmp_path / "downloads", "evaluation-x", predictions, rows, models,
                                   checkpoint_names(models, labels))
    assert lines.read_bytes() == predictions.read_bytes()
    read = list(csv.reader(io.StringIO(table.read_text())))
    assert read[0] == ["index", "line", "prompt", "reference", "answer: base", "exact_match: base", "answer: tuned",
                       "exact_match: tuned", "answer: broken", "exact_match: broken"]
    assert read[2] == ["1", "2", "2 plus 3 equals?", "5.", "Seven\n", "0", "5.\n", "1", "", ""]
    assert read[4][4:6] == ["", "0"] and len(read) == 5
    assert write_downloads(tmp_path / "downloads", "none", tmp_path / "missing.jsonl", [], models, {}) is None


def test_the_tab_lists_evaluations_and_after_training_ones_and_draws_only_what_changed(ctx, tuned_job, eval_job):
    from webui import eval_tab

    write_evaluation(after_training_dir(tuned_job.job_dir), str(tuned_job.paths.output))
    evaluations = eval_tab.list_evaluations(ctx)
    assert [e.value for e in evaluations] == [eval_job.id, tuned_job.id + "/eval"]
    labels = [label for label, _ in eval_tab.evaluation_choices(evaluations, "en")]
    assert labels[0].startswith("eval: ernie-4.5-tiny-moe vs tuned-run vs broken on sample_sft.jsonl · completed")
    assert labels[1] == f"Evaluation after training: tuned-run · completed · {tuned_job.id}"

    view = eval_tab.tick(ctx, None, "all", None, None, {}, "en")
    assert view.evaluation["value"] == eval_job.id and view.stop["interactive"] is False
    assert 'data-state="completed"' in view.progress and "answer 12 / 12" in view.progress
    assert "Data: sample_sft.jsonl (messages), 4 rows." in shown(view.status)
    assert "1 rows with images were left out" in shown(view.status)
    assert list(view.metrics["value"].columns) == ["Figure", BASE, "tuned-run", "broken"]
    assert view.model_a["value"] == str(tuned_job.paths.output) and view.model_b["value"] == BASE
    assert 'data-rows="4"' in view.examples
    assert view.csv["visible"] and Path(view.csv["value"]).parent.name == eval_job.id
    assert Path(view.jsonl["value"]).name == f"evaluation-{eval_job.id}-predictions.jsonl"
    again = eval_tab.tick(ctx, eval_job.id, "all", view.model_a["value"], view.model_b["value"], view.shown, "en")
    assert all(value == {"__type__": "update"} for value in again[:-1]), again
    narrowed = eval_tab.tick(ctx, eval_job.id, "a-ref", view.model_a["value"], view.model_b["value"], view.shown, "en")
    assert 'data-rows="2"' in narrowed.examples
    assert narrowed.metrics == narrowed.model_a == {"__type__": "update"}, "a filter redraws only the answers"

    after = eval_tab.tick(ctx, tuned_job.id + "/eval", "all", None, None, view.shown, "zh")
    assert list(after.metrics["value"].columns) == ["指标", "基座", "微调后", "broken"]
    assert Path(after.csv["value"]).name == f"evaluation-{tuned_job.id}-after-training.csv"


def test_an_evaluation_under_way_shows_its_model_and_eta_and_can_be_stopped(ctx, tuned_job, eval_job):
    from webui import eval_tab

    write_status(eval_job.job_dir, state="running", step=3, total_steps=12, eta_s=30, model=str(tuned_job.paths.output))
    view = eval_tab.tick(ctx, eval_job.id, "all", None, None, {}, "en")
    assert view.stop["interactive"] is True
    assert "answer 3 / 12 · 25%" in view.progress and " · now: tuned-run" in view.progress
    assert "ETA 0:2" in view.progress  # 30 s as of the status write, a moment ago
    assert view.csv["visible"] is False, "the downloads wait for the end"
    assert shown(eval_tab.stop(ctx, eval_job.id)) == "Stopping eval: ernie-4.5-tiny-moe vs tuned-run vs broken on " \
                                                     "sample_sft.jsonl: the answers written so far are kept."
    assert shown(eval_tab.stop(ctx, "../victim")).startswith("Cannot do that: ")
    assert eval_tab.tick(ctx, "../victim", "all", None, None, {}, "en").evaluation["value"] == eval_job.id


def test_start_refuses_what_cannot_be_evaluated_and_queues_the_rest(ctx, tuned_job, tmp_path):
    from webui import eval_tab

    output = str(tuned_job.paths.output)
    data = eval_tab.data_choices(ctx, "en")
    assert data == [(f"Evaluation rows of job tuned-run · {tuned_job.id}", f"job:{tuned_job.id}")]
    assert output in {value for _, value in eval_tab.checkpoint_choices(ctx)}

    def said(*args) -> str:
        return shown(eval_tab.start(ctx, *args, "cpu", "en").start_status)

    assert said([], "", "job:" + tuned_job.id, 8, 4) == "Pick at least one checkpoint, or write one under Other " \
                                                         "checkpoints."
    assert said([BASE], "", None, 8, 4) == "Pick the data to evaluate on."
    assert said([BASE], "", str(tmp_path / "nope.jsonl"), 8, 4) == f"{tmp_path / 'nope.jsonl'} is not a file or a " \
                                                                   "job directory."
    assert said([BASE], "\n /no/such/dir \n", str(SAMPLE_SFT), 8, 4) == "/no/such/dir does not exist."
    assert said([BASE], "", str(SAMPLE_SFT), 8, 0) == "Cannot start the evaluation: batch_size: expected a positive " \
                                                      "whole number, got 0"
    assert said([BASE], BASE, str(SAMPLE_SFT), 8, 4).endswith("ernie-4.5-tiny-moe given more than once")
    assert len(ctx.store.list_jobs()) == 1, "nothing was queued"

    started = eval_tab.start(ctx, [BASE, output], "", "job:" + tuned_job.id, 8.0, 4, "cpu", "en")
    job = next(j for j in ctx.store.list_jobs() if j.id != tuned_job.id)
    assert shown(started.start_status).startswith(f"Queued evaluation {job.name} ({job.id})")
    assert started.evaluation["value"] == job.id
    config = job.paths.read_config()
    assert config["models"] == [BASE, output] and config["labels"] == {output: "tuned-run"}
    assert config["data"] == str(tuned_job.job_dir) and config["max_new_tokens"] == 8
    assert ctx.store.get_job(job.id).state == "queued"

    filled = eval_tab.fill(ctx, job.id, {**config, "models": [BASE, output, "/elsewhere/ckpt"]}, "en")
    assert filled.models["value"] == [BASE, output] and filled.other == "/elsewhere/ckpt"
    assert filled.data["value"] == "job:" + tuned_job.id and (filled.max_new_tokens, filled.batch_size) == (8, 4)
    assert "press Start evaluation to run it again" in shown(filled.start_status)


def test_the_jobs_tab_shows_an_evaluation_s_figures_instead_of_curves(ctx, tuned_job, eval_job):
    from webui import eval_figures, export_tab, jobs_tab

    out = jobs_tab.render(ctx, eval_job.id, None, "en")
    assert out.loss["visible"] is False and out.lr["visible"] is False
    assert "answer 12 / 12 · 100%" in out.progress and "on sample_sft.jsonl" in out.header
    panel = eval_figures.job_view(ctx, out.watch, "en")
    assert panel.box["visible"] and "The figures of this evaluation" in shown(panel.note)
    assert list(panel.table.columns) == ["Figure", BASE, "tuned-run", "broken"]
    assert eval_figures.job_view(ctx, out.watch, "en").box == {"__type__": "update"}, "unchanged: not sent again"
    assert [job_id for _, job_id in export_tab.completed_choices(ctx)] == [tuned_job.id], "nothing to export"
    table = jobs_tab.jobs_frame(ctx.store.list_jobs(), "en")
    assert table.values.tolist()[0][3:5] == [f"{BASE}, {tuned_job.paths.output}, {BROKEN}", "evaluation"]

    training = jobs_tab.render(ctx, tuned_job.id, None, "en")
    assert training.loss["visible"] is True
    assert eval_figures.job_view(ctx, training.watch, "en").box["visible"] is False
    write_evaluation(after_training_dir(tuned_job.job_dir), str(tuned_job.paths.output))
    training = jobs_tab.render(ctx, tuned_job.id, None, "en")
    panel = eval_figures.job_view(ctx, training.watch, "en")
    assert panel.box["visible"] and "Evaluation after training" in shown(panel.note)
    assert list(panel.table.columns)[:3] == ["Figure", "base", "tuned"]

    write_status(tuned_job.job_dir, state="running", phase="evaluating")
    write_status(after_training_dir(tuned_job.job_dir), state="running", step=2, total_steps=12)
    running = jobs_tab.render(ctx, tuned_job.id, None, "en")
    assert "training done, evaluating the base and the tuned model: answer 2 / 12" in running.progress
