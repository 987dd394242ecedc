"""A newcomer's first tuned model, in a real browser (Playwright driving Debian's chromium) against
`python app.py` on an empty workspace: the Data tab offers the sample sets and the way to go, one
click stores the SFT sample, it goes into the training form, a short LoRA job trains, the finished
job's output panel says where the adapter is and how big, Export it leads to the Export tab with
the job chosen (the merged export downloads as a zip), Chat with it to the Chat tab with the tuned
checkpoint chosen, which answers, and the adapter downloads as a zip holding the weights,
adapter_info.json, the LoRA config, config.yaml and the tokenizer. Then a Chinese
browser switches the page to 中文 with a job done and a model loaded, and no English is left in
what any tab shows. Screenshots go to tests/artifacts/first-run-*.png.
"""

from __future__ import annotations

import re

import zipfile
from pathlib import Path

import pytest

from plumbing.files import tail_text
from tests.browser_helpers import chromium, english_words, new_page, shot, studio_running, wait_until
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_webui_browser import go, set_number, wait_loaded, wait_text  # noqa: E402  (after the skips)

JOB_NAME = "first-tune"
STEPS = 20
TRAINING_LIMIT_S = 600


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("first-run")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_page(browser, studio, **options):
    pg = new_page(browser, **options)
    pg.goto(studio.url)
    wait_loaded(pg)
    return pg


@pytest.fixture(scope="module")
def page(browser, studio):
    pg = open_page(browser, studio, accept_downloads=True)
    yield pg
    pg.context.close()


def download(pg, button: str, folder: Path) -> Path:
    """Click a download button once it shows and keep what the browser downloads."""
    pg.locator(button).wait_for(state="visible")
    with pg.expect_download() as started:
        pg.click(button)
    saved = folder / started.value.suggested_filename
    started.value.save_as(saved)
    return saved


def zip_files(path: Path) -> set[str]:
    """The names of the files in a zip, without the folder they are in; the zip must be whole."""
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {Path(name).name for name in zf.namelist()}


def chat_replies(pg) -> list[str]:
    return pg.evaluate("[...document.querySelectorAll('#chat-bot-a .bot .message-content')]"
                       ".map(e => e.textContent.trim())")


@pytest.mark.timeout(3 * TRAINING_LIMIT_S)
def test_from_an_empty_workspace_to_a_tuned_model_to_chat_with_and_download(page, studio, tmp_path):
    # an empty workspace: the samples are on offer and one line says the way
    page.locator("#data-samples").wait_for(state="visible")
    assert "First steps" in page.locator("#data-first_steps").text_content()
    assert "No dataset yet" in page.locator("#data-status").text_content()
    shot(page, "first-run-01-data-empty")
    page.click("#data-sample_sft")
    summary = wait_text(page, "#data-summary", "sample_sft.jsonl")
    assert "60 rows: 60 valid, 0 invalid" in summary
    assert "Add to training data" in wait_text(page, "#data-status", "Stored")
    page.locator("#data-samples").wait_for(state="hidden")
    wait_text(page, "#data-preview", "What is your name?")
    page.click("#data-add_train")
    wait_text(page, "#data-status", "Added sample_sft.jsonl")

    go(page, "Train")
    page.click("#train-apply_preset")
    wait_text(page, "#train-io_status", "Applied preset")
    set_number(page, "cfg-optim-max_steps", STEPS)
    page.locator("#train-job_name input, #train-job_name textarea").first.fill(JOB_NAME)
    wait_text(page, "#train-config_yaml", f"max_steps: {STEPS}")
    page.click("#train-start")

    wait_text(page, "#jobs-header", JOB_NAME)
    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'completed'", timeout=TRAINING_LIMIT_S * 1000)
    job = next(j for j in JobStore(studio.workdir).list_jobs() if j.name == JOB_NAME)
    assert job.state == COMPLETED, tail_text(job.paths.log, max_lines=40)

    # the finished job says where its output is, how big and what it is
    info = wait_text(page, "#jobs-output_info", str(job.paths.output))
    assert "LoRA adapter of ernie-4.5-tiny-moe" in info
    assert any(unit in info for unit in (" KB", " MB")), info
    shot(page, "first-run-02-job-output")

    # Export it: the Export tab with this job chosen; the finished export downloads as a zip too
    page.click("#jobs-export_it")
    page.locator("#export-job").wait_for(state="visible")
    wait_until(lambda: JOB_NAME in page.locator("#export-job input").input_value(), 60, "the job in the Export tab")
    page.click("#export-start")
    wait_text(page, "#export-status", "Exported to", timeout_s=600)
    page.click("#export-zip")
    wait_text(page, "#export-zip_note", "is ready", timeout_s=300)
    export_zip = download(page, "#export-download", tmp_path)
    assert export_zip.name == f"{JOB_NAME}-{job.id}-export.zip"
    files = zip_files(export_zip)
    assert {"config.json", "config.yaml", "tokenizer.model"} <= files and "adapter_info.json" not in files, files
    assert any(name.endswith(".safetensors") for name in files), files

    # Chat with it: the Chat tab with the tuned checkpoint chosen in the first column
    go(page, "Jobs")
    page.click("#jobs-chat_with")
    page.locator("#chat-model-a").wait_for(state="visible")
    wait_until(lambda: page.locator("#chat-model-a input").input_value().startswith(JOB_NAME), 60,
               "the tuned checkpoint to be chosen")
    assert page.locator("#chat-model-a input").input_value().endswith("output (LoRA adapter)")
    page.click("#chat-load-a")
    wait_text(page, "#chat-status-a", "Loaded", timeout_s=300)
    page.locator("#chat-input textarea").fill("What is your name?")
    page.click("#chat-send")
    # 20 steps teach the model little: its reply may be a few characters, or none before it stops
    wait_until(lambda: chat_replies(page) and page.locator("#chat-send").is_visible(), 180,
               "the tuned model's reply")
    shot(page, "first-run-03-chat")
    page.click("#chat-unload-a")
    wait_text(page, "#chat-status-a", "Not loaded")

    # download the adapter as a zip
    go(page, "Jobs")
    page.click("#jobs-zip")
    note = wait_text(page, "#jobs-output_note", "is ready", timeout_s=300)
    assert f"{JOB_NAME}-{job.id}-adapter.zip" in note
    saved = download(page, "#jobs-download", tmp_path)
    assert saved.name == f"{JOB_NAME}-{job.id}-adapter.zip"
    shot(page, "first-run-04-download")
    files = zip_files(saved)
    assert {"adapter_info.json", "lora_config.json", "config.yaml", "tokenizer.model",
            "tokenizer_config.json"} <= files, files
    assert any(name.endswith(".safetensors") for name in files), files
    output_files = {p.name for p in job.paths.output.iterdir() if p.is_file()}
    assert output_files <= files

    # with a job completed, the first-steps line has done its work
    go(page, "Data")
    page.locator("#data-first_steps").wait_for(state="hidden")


TABS_ZH = ("数据", "训练", "任务", "评估", "对比", "导出", "对话")


# What the page shows as it is, in no language of the studio's: the run config and command in the
# code boxes (the schema's own words), the user's rows in the preview and the programs' logs.
AS_IS = ".cm-content, #data-preview, .studio-log"


# Gradio's notice for an event waiting in its queue: its frontend has this text in English only
# (status.queue_position has no Chinese), whatever the page's language; a busy machine shows it.
GRADIO_QUEUE_NOTICE = re.compile(r"In queue: \d+ of \d+")


def visible_text(pg) -> str:
    """What the page shows now: hidden elements, closed accordions, other tabs' panels, AS_IS and
    Gradio's queue notice aside."""
    return GRADIO_QUEUE_NOTICE.sub("", pg.evaluate("""(asIs) => {
        let text = document.querySelector('.gradio-container').innerText;
        for (const e of document.querySelectorAll(asIs)) text = text.replace(e.innerText, '');
        return text;
    }""", AS_IS))


def test_a_chinese_page_shows_no_english_after_a_job_and_a_loaded_model(browser, studio):
    """Gradio's own widgets follow the browser's language, the studio's follow its switch: a
    browser set to Chinese, the switch moved to English and back, with the base model loaded and
    whatever job the test before left (its completed job, its export, its download)."""
    pg = open_page(browser, studio, locale="zh-CN")
    try:
        pg.get_by_text("English", exact=True).click()
        pg.get_by_role("tab", name="Chat").wait_for()
        go(pg, "Chat")
        pg.locator("#chat-model-a input").click()
        pg.get_by_role("option", name="ernie-4.5-tiny-moe (base)").click()
        pg.click("#chat-load-a")
        wait_text(pg, "#chat-status-a", "Loaded", timeout_s=300)

        pg.get_by_text("中文", exact=True).click()
        wait_until(lambda: "已加载" in visible_text(pg), 120, "the chat status in Chinese")
        leftovers = {}
        names = set(JOB_NAME.split("-"))  # the user's own name for the job
        for tab in TABS_ZH:
            go(pg, tab)
            # the Jobs and Export tabs redraw on their next tick: English may show for a moment
            try:
                wait_until(lambda: not english_words(visible_text(pg), names), 20, f"no English in tab {tab}")
            except AssertionError:
                leftovers[tab] = sorted(set(english_words(visible_text(pg), names)))
            shot(pg, f"first-run-zh-{TABS_ZH.index(tab)}")
        go(pg, "对话")
        pg.click("#chat-unload-a")
    finally:
        pg.context.close()
    assert not leftovers, "English left on the Chinese page: " + repr(leftovers)
