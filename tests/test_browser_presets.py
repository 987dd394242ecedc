"""The Train tab as a newcomer meets it, in a real browser: the preset a fresh page shows is what
Start trains, the preset follows the model and the method and says when the form differs from it,
the line beside Start says what will train, and the data tables name stored datasets by name.

Jobs started here are stopped as soon as their config.yaml has been read: only the config matters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.registry import DEFAULT_MODEL, MODELS
from tests.browser_helpers import chromium, new_page, shot, studio_running, wait_until
from tests.conftest import SAMPLE_SFT
from trainer.config import from_dict, get
from trainer.jobs import JobStore
from webui.dataset_store import DatasetStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_webui_browser import choose, go, set_number, table_rows, wait_loaded, wait_text  # noqa: E402


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("presets-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def page(studio):
    with chromium() as browser:
        pg = new_page(browser)
        pg.goto(studio.url)
        wait_loaded(pg)
        yield pg


def preset_shown(pg) -> str:
    return pg.locator("#train-preset input").input_value()


def field(pg, key: str) -> str:
    return pg.locator(f"#cfg-{key.replace('.', '-')} input").first.input_value()


def summary(pg) -> dict:
    """The line beside Start, by part: model, method, tuning, lr, length, rows."""
    text = pg.locator("#train-summary [data-testid=markdown]").text_content().strip()
    assert text.startswith("Will train"), text
    model, method, tuning, lr, length, rows = text.removeprefix("Will train").strip().split(" · ")
    return {"model": model, "method": method, "tuning": tuning, "lr": lr, "length": length, "rows": rows}


def preview_config(pg) -> dict:
    """The config the preview shows, as YAML (the notes of an invalid one are comments)."""
    lines = pg.evaluate("[...document.querySelectorAll('#train-config_yaml .cm-line')].map(e => e.textContent)")
    return yaml.safe_load("\n".join(lines))


def assert_summary_matches_preview(pg) -> None:
    line, config = summary(pg), preview_config(pg)
    assert line["model"] == config["model"]["name_or_path"] and line["method"] == config["method"]
    if config["finetuning"]["type"] == "lora":
        assert line["tuning"] == f"LoRA rank {config['finetuning']['lora']['rank']}"
    else:
        assert line["tuning"] == "full fine-tuning"
    assert float(line["lr"].removeprefix("lr ")) == float(config["optim"]["learning_rate"])
    if config["optim"]["max_steps"] > 0:
        assert line["length"] == f"steps {config['optim']['max_steps']}"
    else:
        assert float(line["length"].removeprefix("epochs ")) == float(config["optim"]["num_train_epochs"])


def test_a_fresh_page_trains_the_preset_it_shows(page, studio):
    go(page, "Train")
    assert preset_shown(page) == "sft-lora"
    wait_text(page, "#train-preset_status", "The form holds preset sft-lora")
    preset = MODELS[DEFAULT_MODEL].presets["sft-lora"]
    assert float(field(page, "optim.learning_rate")) == preset["optim.learning_rate"]
    wait_text(page, "#train-summary", "no training data yet")

    go(page, "Data")
    with page.expect_file_chooser() as chooser:
        page.locator("#data-upload").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(SAMPLE_SFT))
    wait_text(page, "#data-summary", "sample_sft.jsonl")
    page.click("#data-add_train")
    wait_text(page, "#data-status", "Added sample_sft.jsonl")

    go(page, "Train")
    stored = next(d for d in DatasetStore(studio.workdir, 2**30).list() if d.name == "sample_sft.jsonl")
    wait_until(lambda: table_rows(page, "#cfg-data-train"), 60, "the training data table to fill")
    assert table_rows(page, "#cfg-data-train")[0][:2] == ["sample_sft.jsonl", "messages"]
    assert str(stored.path) not in page.locator("#cfg-data-train").text_content()
    files = wait_text(page, "#files-cfg-data-train", str(stored.path))
    assert "sample_sft.jsonl · 60 rows" in files
    wait_text(page, "#train-summary", "60 rows")
    assert_summary_matches_preview(page)
    assert preset_shown(page) == "sft-lora", "adding data does not change the preset"
    page.locator("#train-summary").scroll_into_view_if_needed()
    shot(page, "presets-01-train-tab")

    page.locator("#train-job_name input, #train-job_name textarea").first.fill("as-shown")
    page.click("#train-start")
    wait_text(page, "#jobs-header", "as-shown")
    store = JobStore(studio.workdir)
    job = next(j for j in store.list_jobs() if j.name == "as-shown")
    config = yaml.safe_load(job.paths.config.read_text())
    store.stop_job(job.id, grace_s=5)  # the config is what this test is about
    for key, value in preset.items():
        assert get(from_dict(config), key) == value, key
    assert config["model"]["name_or_path"] == DEFAULT_MODEL
    assert config["data"]["train"] == [{"path": str(stored.path), "format": "messages", "probability": 1.0}]


def test_the_preset_follows_the_model_and_method_and_an_edit_marks_it_modified(page):
    go(page, "Train")
    choose(page, "cfg-model-name_or_path", "ERNIE-4.5-0.3B")
    real = MODELS["ERNIE-4.5-0.3B"].presets
    wait_until(lambda: field(page, "finetuning.lora.rank") == str(real["sft-lora"]["finetuning.lora.rank"]), 60,
               "the 0.3B model's sft-lora preset to be applied")
    assert preset_shown(page) == "sft-lora"
    wait_text(page, "#train-preset_status", "The form holds preset sft-lora")
    assert float(field(page, "optim.learning_rate")) == real["sft-lora"]["optim.learning_rate"]

    choose(page, "cfg-method", "dpo")
    wait_until(lambda: preset_shown(page) == "dpo-lora", 60, "the dpo-lora preset to be shown")
    wait_until(lambda: float(field(page, "optim.learning_rate")) == real["dpo-lora"]["optim.learning_rate"], 60,
               "the dpo-lora preset to be applied")
    wait_text(page, "#train-preset_status", "The form holds preset dpo-lora")
    assert_summary_matches_preview(page)

    set_number(page, "cfg-optim-learning_rate", "0.0007")
    status = wait_text(page, "#train-preset_status", "dpo-lora (modified)")
    assert "Learning rate" in status
    wait_text(page, "#train-summary", "lr 0.0007")
    assert_summary_matches_preview(page)
    shot(page, "presets-02-modified")

    choose(page, "cfg-model-name_or_path", "ernie-4.5-tiny-dense")
    tiny = MODELS["ernie-4.5-tiny-dense"].presets["dpo-lora"]
    wait_until(lambda: float(field(page, "optim.learning_rate")) == tiny["optim.learning_rate"], 60,
               "the tiny model's dpo-lora preset to be applied")
    wait_text(page, "#train-preset_status", "The form holds preset dpo-lora")
    assert preset_shown(page) == "dpo-lora"
    assert "sample_sft.jsonl" in page.locator("#cfg-data-train").text_content(), "a preset keeps the data"
    assert_summary_matches_preview(page)

    choose(page, "train-preset", "sft-full")
    wait_until(lambda: field(page, "finetuning.type") == "full", 60, "choosing a preset to apply it")
    wait_text(page, "#train-preset_status", "The form holds preset sft-full")
    wait_text(page, "#train-summary", "full fine-tuning")
    # app.py turns Gradio's run history off: it would keep each of these events' whole form in
    # localStorage and write all of it again on every event, seconds a change once it has filled
    assert not [key for key in page.evaluate("Object.keys(localStorage)") if key.startswith("gradio:run-history")]


def test_a_loaded_config_is_kept_and_shown_against_its_preset(page, studio, tmp_path):
    stored = next(d for d in DatasetStore(studio.workdir, 2**30).list() if d.name == "sample_sft.jsonl")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"model": {"name_or_path": "ernie-4.5-tiny-moe"}, "method": "sft",
                                    "finetuning": {"type": "lora", "lora": {"rank": 4}},
                                    "optim": {"learning_rate": 5e-4, "max_steps": 12},
                                    "data": {"train": [{"path": str(stored.path)}]}}))
    go(page, "Train")
    with page.expect_file_chooser() as chooser:
        page.click("#train-load")
    chooser.value.set_files(str(path))
    wait_text(page, "#train-io_status", "Loaded mine.yaml")
    # the model changed with the load: that applies no preset over what was loaded. The widgets' own
    # change events redraw the status on the way to the loaded form, so wait for the form as loaded.
    status = page.locator("#train-preset_status")
    wait_until(lambda: all(part in status.text_content() for part in
                           ("sft-lora (modified)", "Learning rate", "LoRA rank", "Max steps")),
               60, "the preset status naming the loaded learning rate, rank and max steps")
    # the fields are drawn with the load's own event, and a moment may pass before each shows its value
    wait_until(lambda: field(page, "optim.learning_rate") == "0.0005" and field(page, "finetuning.lora.rank") == "4",
               30, "the loaded learning rate and rank in the form")
    assert table_rows(page, "#cfg-data-train")[0][0] == "sample_sft.jsonl"
    line = wait_text(page, "#train-summary", "steps 12")
    assert "LoRA rank 4" in line and "60 rows" in line
    assert_summary_matches_preview(page)
