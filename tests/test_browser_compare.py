"""The Compare tab in a real browser: two tiny SFT-LoRA jobs (ten steps on the sample set, evaluated
every five, one learning rate and LoRA rank apart) trained by the studio's own queue, then picked
together: one line per job in the loss plot, the final figures side by side, and the differing
settings, which are exactly those two, named by their labels in either language."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_helpers import chromium, new_page, shot, studio_running, train_in_studio, wait_until
from tests.conftest import SAMPLE_SFT

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_webui_browser import choose, go, table_rows, wait_loaded, wait_text  # noqa: E402

# name -> what differs from the default model's sft-lora preset
JOBS = {"cmp-fast": {"optim.learning_rate": 2e-3, "finetuning.lora.rank": 16},
        "cmp-slow": {"optim.learning_rate": 5e-4, "finetuning.lora.rank": 4}}
SHARED = {"optim.max_steps": 10, "logging.logging_steps": 2, "data.eval_split": 0.1, "logging.eval_steps": 5}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("compare-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def trained(studio):
    """The two jobs, queued in the studio's store and trained by its scheduler, both completed."""
    return train_in_studio(studio.workdir, {name: {**SHARED, **changes} for name, changes in JOBS.items()},
                           SAMPLE_SFT)


@pytest.fixture(scope="module")
def page(studio, trained):
    with chromium() as browser:
        pg = new_page(browser)
        pg.goto(studio.url)
        wait_loaded(pg)
        yield pg


def plotted_jobs(pg, plot: str) -> set[str]:
    """The jobs whose points the plot draws: it labels every point it draws (`step: …; …; job: NAME`)."""
    labels = pg.evaluate("(plot) => [...document.querySelectorAll(`#${plot} [aria-label]`)]"
                         ".map(e => e.getAttribute('aria-label'))", plot)
    return {part.split(": ", 1)[1] for label in labels for part in label.split("; ") if part.startswith("job: ")}


def test_two_trained_jobs_side_by_side(page):
    go(page, "Compare")
    wait_text(page, "#compare-status", "Pick at least two jobs")
    for name in JOBS:
        choose(page, "compare-jobs", name)
    page.keyboard.press("Escape")
    wait_until(lambda: plotted_jobs(page, "compare-loss") == set(JOBS), 60, "both jobs' loss curves")
    wait_until(lambda: plotted_jobs(page, "compare-evals") == set(JOBS), 60, "both jobs' eval-loss curves")
    figures = {row[0]: row[1:] for row in table_rows(page, "#compare-metrics")}
    assert figures["state"] == ["completed", "completed"] and figures["steps done"] == ["10/10", "10/10"]
    for row in ("final training loss", "best eval loss", "final eval loss"):
        assert all(float(value) > 0 for value in figures[row]), (row, figures[row])
    settings = {row[0]: row[1:] for row in table_rows(page, "#compare-differ")}
    assert settings == {"Learning rate": ["optim.learning_rate", "0.002", "0.0005"],
                        "LoRA rank": ["finetuning.lora.rank", "16", "4"]}
    shot(page, "compare-01-two-jobs")

    page.get_by_text("中文", exact=True).click()
    wait_text(page, "#compare-differ", "学习率")
    assert "最终训练损失" in page.locator("#compare-metrics").text_content()
    shot(page, "compare-02-zh")
    page.get_by_text("English", exact=True).click()
    wait_text(page, "#compare-differ", "Learning rate")
