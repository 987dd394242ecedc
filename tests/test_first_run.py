"""The studio as a newcomer meets it, without a browser: the sample datasets on offer while the
store is empty, the first-steps line until a job has completed, and a completed job's output panel
(where, how big, what it is, Chat with it). The browser walk is test_browser_first_run.py."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from tests.conftest import shown
from trainer.jobfiles import write_status


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio")


def completed_lora_job(ctx, name="first"):
    """A job whose output is a LoRA adapter of the tiny model, written by hand (nothing trained)."""
    job = ctx.store.create_job({"method": "sft", "model": {"name_or_path": "ernie-4.5-tiny-moe"}}, name=name)
    out = job.paths.output
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"model_type": "ernie4_5_moe"}))
    (out / "model.safetensors").write_bytes(b"\0" * 2048)
    (out / "tokenizer.model").write_bytes(b"spm")
    info = {"base_model": "/nowhere", "base_model_name": "ernie-4.5-tiny-moe", "method": "sft"}
    (out / "adapter_info.json").write_text(json.dumps(info))
    write_status(job.job_dir, state="completed")
    return ctx.store.refresh(job.id)


def test_an_empty_store_offers_the_samples_and_one_click_stores_one(ctx):
    from webui import data_tab

    listing = data_tab.refresh_list(ctx, None, "en")
    assert listing.samples["visible"] and listing.first_steps["visible"]
    stored = data_tab.store_sample(ctx, "dpo", "en")
    assert "Stored **sample_dpo.jsonl**" in stored.status and "Add to training data" in stored.status
    assert stored.samples["visible"] is False
    dataset = ctx.datasets.find(stored.select["value"])
    assert dataset.format == "messages_dpo" and dataset.rows_valid == 60
    assert data_tab.refresh_list(ctx, None, "en").samples["visible"] is False
    # the second sample is still one click away from the Data tab's chooser: storing it again keeps one copy
    assert data_tab.store_sample(ctx, "dpo", "zh").select["value"] == dataset.id
    assert "下一步" in data_tab.store_sample(ctx, "sft", "zh").status
    assert len(ctx.datasets.list()) == 2
    for d in ctx.datasets.list():
        deleted = data_tab.do_delete(ctx, d.id, "en")
    assert deleted.samples["visible"] is True


def test_the_first_steps_line_hides_once_a_job_has_completed(ctx):
    from webui import data_tab

    ctx.store.create_job({"method": "sft"}, name="queued")
    assert data_tab.refresh_list(ctx, None, "en").first_steps["visible"] is True
    completed_lora_job(ctx)
    assert data_tab.refresh_list(ctx, None, "en").first_steps["visible"] is False


def test_a_completed_jobs_output_panel_says_where_how_big_and_what(ctx):
    from webui import job_output, jobs_tab

    def tick(job_id, watch, lang="en"):
        watch = jobs_tab.render(ctx, job_id, watch, lang).watch
        return job_output.view(ctx, watch, lang), watch

    job = completed_lora_job(ctx)
    view, watch = tick(job.id, None)
    assert view.box["visible"] is True
    assert "LoRA adapter of ernie-4.5-tiny-moe" in view.info and str(job.paths.output) in view.info
    assert "KB" in view.info and view.download["visible"] is False
    # unchanged on the next tick: nothing is sent, nothing is read
    assert all(value == gr.skip() for value in tick(job.id, watch)[0])
    assert "基于 ernie-4.5-tiny-moe 的 LoRA 适配器" in tick(job.id, watch, "zh")[0].info
    # a job is shown while it waits, and its panel appears once it has completed
    other = ctx.store.create_job({"method": "sft"}, name="waiting")
    view, watch = tick(other.id, None)
    assert view.box["visible"] is False
    other.paths.output.mkdir()
    (other.paths.output / "config.json").write_text("{}")
    (other.paths.output / "tokenizer.model").write_bytes(b"spm")
    write_status(other.job_dir, state="completed")
    view, watch = tick(other.id, watch)
    assert view.box["visible"] is True and "full model" in view.info
    assert tick(None, None)[0].box["visible"] is False


def test_chat_with_it_chooses_the_jobs_output_in_the_chat_tab(ctx):
    from webui import job_output

    job = completed_lora_job(ctx)
    tabs, model, note = job_output.chat_with(ctx, job.id, "en")
    assert tabs.selected == "chat" and model["value"] == str(job.paths.output) and note == ""
    assert str(job.paths.output) in [value for _, value in model["choices"]]
    (job.paths.output / "config.json").unlink()
    _, _, note = job_output.chat_with(ctx, job.id, "en")
    assert "does not offer" in note
    _, _, note = job_output.chat_with(ctx, "19990101-000000-0000", "en")
    assert shown(note).startswith("Cannot do that: ")


def test_the_zip_is_built_step_by_step_and_offered(ctx, tmp_path, monkeypatch):
    from webui import job_output

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "spool"))
    job = completed_lora_job(ctx)
    steps = list(job_output.make_zip(ctx, job.id))
    assert shown(steps[0].note).startswith("Building the zip") and steps[0].download["visible"] is False
    assert f"first-{job.id}-adapter.zip" in steps[-1].note and steps[-1].download["visible"] is True
    assert steps[-1].download["value"].startswith(str(tmp_path / "spool" / "downloads"))
    failed = list(job_output.make_zip(ctx, ctx.store.create_job({"method": "sft"}).id))
    assert shown(failed[-1].note).startswith("✗ Cannot build the zip: ") and "not completed" in failed[-1].note


def test_a_finished_export_is_offered_as_a_zip(ctx, tmp_path, monkeypatch):
    from plumbing.files import atomic_write_json
    from webui import export_tab

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "spool"))
    job = completed_lora_job(ctx)
    assert export_tab.download_view(ctx, job.id).zip["visible"] is False  # not exported yet
    assert shown(list(export_tab.make_zip(ctx, job.id))[-1].zip_note).endswith("has no finished export")
    export = job.paths.export
    export.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        (export / name).write_bytes((job.paths.output / name).read_bytes())
    atomic_write_json(job.paths.export_state, {"out_dir": str(export), "pid": 1, "exit_code": 0})
    offer = export_tab.download_view(ctx, job.id)
    assert offer.zip["visible"] is True and offer.download["visible"] is False
    steps = list(export_tab.make_zip(ctx, job.id))
    assert f"first-{job.id}-export.zip" in steps[-1].zip_note and steps[-1].download["visible"] is True
    assert export_tab.download_view(ctx, job.id).download["value"] == steps[-1].download["value"]
