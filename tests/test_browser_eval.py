"""The Evaluate tab in a real browser: a tiny SFT-LoRA job (five steps on the sample set, stored in
the dataset store; it need not learn, the figures themselves are tested at the command line in
test_eval.py) trained by the studio's own queue, then evaluated against the base on the sample set
with 8 new tokens: the metrics table with a column each, the disagreements coloured, a filter, the
CSV download, the Jobs tab's figures for the evaluation job, and the tab's texts in Chinese."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from models.registry import DEFAULT_MODEL
from tests.browser_helpers import (chromium, english_words, new_page, shot, studio_running, train_in_studio,
                                   wait_until)
from tests.conftest import SAMPLE_SFT
from trainer.eval_jobs import read_predictions
from trainer.jobfiles import COMPLETED
from trainer.jobs import JobStore
from webui.dataset_store import DatasetStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_webui_browser import choose, go, set_number, table_rows, wait_loaded, wait_text  # noqa: E402

JOB = "eval-tuned"
LIMIT_S = 300  # only catches a hang: evaluating takes seconds


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("eval-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def tuned(studio):
    """JOB, trained by the studio's queue on the sample set as the dataset store keeps it."""
    stored = DatasetStore(studio.workdir, 2**30).add(SAMPLE_SFT, SAMPLE_SFT.name)
    return train_in_studio(studio.workdir, {JOB: {"optim.max_steps": 5}}, stored.path)[0]


@pytest.fixture(scope="module")
def page(studio, tuned):
    with chromium() as browser:
        pg = new_page(browser)
        pg.goto(studio.url)
        wait_loaded(pg)
        yield pg


def headers(pg, selector: str) -> list[str]:
    """A table's column names (a Dataframe's header cell holds its menu too; its title is the name)."""
    return pg.evaluate("(sel) => [...document.querySelectorAll(sel + ' thead th')]"
                       ".map(e => e.getAttribute('title') || e.textContent.trim())", selector)


def shown_rows(pg) -> int:
    return int(pg.locator("#eval-examples table").get_attribute("data-rows") or -1)


def panel_text(pg, tab: str) -> str:
    """What the tab's panel shows, the answers and the questions (the data's own text) aside."""
    return pg.evaluate("""(tab) => {
        const button = [...document.querySelectorAll('[role=tab]')].find(b => b.textContent.trim() === tab);
        const panel = document.getElementById(button.getAttribute('aria-controls'));
        let text = panel.innerText;
        for (const e of panel.querySelectorAll('#eval-examples tbody')) text = text.replace(e.innerText, '');
        return text;
    }""", tab)


def test_evaluate_the_base_against_the_tuned_job(page, studio, tuned, tmp_path):
    go(page, "Evaluate")
    wait_text(page, "#eval-status", "No evaluation yet")
    choose(page, "eval-models", f"{DEFAULT_MODEL} (base)")
    choose(page, "eval-models", f"{JOB} · {tuned.id}: output")
    page.keyboard.press("Escape")
    choose(page, "eval-data", SAMPLE_SFT.name)
    set_number(page, "eval-max_new_tokens", 8)
    page.click("#eval-start")
    wait_text(page, "#eval-start_status", "Queued evaluation")
    wait_until(lambda: page.locator("#eval-progress .studio-progress[data-state=completed]").count(), LIMIT_S,
               "the evaluation to complete")
    store = JobStore(studio.workdir)
    evaluation = next(job for job in store.list_jobs() if job.name.startswith("eval: "))
    assert evaluation.state == COMPLETED, evaluation.error
    wait_text(page, "#eval-progress", "answer 120 / 120")

    wait_until(lambda: headers(page, "#eval-metrics")[1:] == [DEFAULT_MODEL, JOB], 60, "a column per checkpoint")
    figures = {row[0]: row[1:] for row in table_rows(page, "#eval-metrics")}
    assert figures["answered"] == ["60 / 60", "60 / 60"]
    assert all(value.endswith("%") for value in figures["exact match"]), figures
    assert all(float(value) > 1 for value in figures["perplexity"]), figures
    wait_until(lambda: shown_rows(page) == 60, 30, "every row side by side")
    assert headers(page, "#eval-examples")[1:] == ["Prompt", "Reference", DEFAULT_MODEL, JOB]
    coloured = page.locator("#eval-examples td.eval-differs").first
    colour = coloured.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    shot(page, "eval-01-results")

    by_row: dict[int, dict[str, str]] = {}
    for line in read_predictions(evaluation.job_dir):
        by_row.setdefault(line["index"], {})[line["model"]] = line["answer"].strip()
    output = str(tuned.paths.output)
    differ = sum(answers[output] != answers[DEFAULT_MODEL] for answers in by_row.values())
    page.locator("#eval-filter").get_by_text("where A and B differ").click()
    if differ:
        wait_until(lambda: shown_rows(page) == differ, 30, f"the {differ} rows where the two answers differ")
    else:
        wait_text(page, "#eval-examples", "No row matches")
    shot(page, "eval-02-filtered")

    with page.expect_download() as download:
        page.click("#eval-csv")
    saved = tmp_path / "answers.csv"
    download.value.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert rows[0] == ["index", "line", "prompt", "reference", f"answer: {DEFAULT_MODEL}",
                       f"exact_match: {DEFAULT_MODEL}", f"answer: {JOB}", f"exact_match: {JOB}"]
    assert len(rows) == 61 and rows[1][2] == "What is your name?" and rows[1][3] == "I am ERNIE Studio's tiny model."

    go(page, "Jobs")
    choose(page, "jobs-select", evaluation.id)
    wait_text(page, "#jobs-eval_note", "The figures of this evaluation")
    assert headers(page, "#jobs-eval_table")[1:] == [DEFAULT_MODEL, JOB]
    assert not page.locator("#jobs-loss").is_visible()
    shot(page, "eval-03-jobs-tab")
    page.click("#jobs-clone")  # an evaluation is started again from the Evaluate tab, its settings filled in
    wait_text(page, "#eval-start_status", f"The form holds the settings of evaluation {evaluation.id}")
    assert page.locator("#eval-max_new_tokens input").input_value() == "8"
    assert f"{JOB} · {tuned.id}: output" in page.locator("#eval-models").text_content()

    page.get_by_text("中文", exact=True).click()
    page.get_by_role("tab", name="评估").wait_for()
    wait_text(page, "#eval-progress", "回答 120 / 120")
    wait_until(lambda: headers(page, "#eval-examples")[1:3] == ["提示", "参考答案"], 30, "the answers table in Chinese")
    # the names of things: the tuned job, the evaluation job (named by the studio in English)
    names = {*JOB.split("-"), *re.findall(r"[A-Za-z]+", evaluation.name)}

    def english_left() -> list[str]:
        return english_words(panel_text(page, "评估"), names)

    try:  # the tab's tables are redrawn on its next tick: English may show for a moment
        wait_until(lambda: not english_left(), 30, "no English in the Evaluate tab")
    except AssertionError:
        assert not english_left(), "English left in the Chinese Evaluate tab"
    shot(page, "eval-04-zh")
    page.get_by_text("English", exact=True).click()
    wait_text(page, "#eval-progress", "answer 120 / 120")
