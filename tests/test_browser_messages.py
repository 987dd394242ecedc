"""What the trainer says about bad input, on a Chinese page (Playwright driving Debian's chromium
against `python app.py`): a dataset with bad rows shows its report, its errors table and its
preview's problems in Chinese, and a refused Start marks its fields in Chinese, with no English
left in what the Data and Train tabs show (the schema's keys and file names aside). Screenshots go
to tests/artifacts/messages-zh-*.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser_helpers import chromium, english_words, new_page, shot, studio_running

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_browser_first_run import visible_text  # noqa: E402  (after the skips)
from tests.test_webui_browser import drop_file, go, set_number, table_rows, wait_loaded, wait_text  # noqa: E402

TURNS = [{"role": "user", "content": "二加二等于几？"}, {"role": "assistant", "content": "四"}]
BAD_ROWS = "\n".join([
    json.dumps({"messages": TURNS}, ensure_ascii=False),
    json.dumps({"messages": [TURNS[0], {"role": "assistant", "content": ""}]}, ensure_ascii=False),
    "不是 JSON",
    json.dumps({"messages": TURNS, "label": [1, 1]}, ensure_ascii=False),
]) + "\n"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("messages-zh")) as studio, chromium() as browser:
        pg = new_page(browser, locale="zh-CN")
        pg.goto(studio.url)
        wait_loaded(pg)
        pg.get_by_text("中文", exact=True).click()
        pg.get_by_role("tab", name="数据").wait_for()
        yield pg
        pg.context.close()


def test_a_bad_dataset_is_reported_in_chinese(page):
    drop_file(page, "#data-upload button", "bad.jsonl", BAD_ROWS.encode())
    summary = wait_text(page, "#data-summary", "bad.jsonl")
    assert "共 4 行：1 行有效，3 行无效" in summary
    page.locator("#data-errors").wait_for(state="visible")
    assert table_rows(page, "#data-errors") == [
        ["bad.jsonl", "2", "messages[1].content", "助手轮次为空"],
        ["bad.jsonl", "3", "", "JSON 格式错误（第 1 列）：缺少值"],
        ["bad.jsonl", "4", "label", "有 2 个值，但只有 1 个助手轮次；每个助手轮次给一个 0/1"]]
    problems = [row[4] for row in table_rows(page, "#data-preview") if row[1] == "✗"]
    assert problems == ["messages[1].content: 助手轮次为空", "JSON 格式错误（第 1 列）：缺少值",
                        "label: 有 2 个值，但只有 1 个助手轮次；每个助手轮次给一个 0/1"]
    shot(page, "messages-zh-data")
    left = english_words(visible_text(page), {"label"})  # the name of a field in the file
    assert not left, left


def test_a_refused_start_marks_its_fields_in_chinese(page):
    go(page, "训练")
    set_number(page, "cfg-optim-max_steps", 0)
    page.click("#train-start")
    mark = page.locator("#cfg-optim-max_steps-error")
    mark.wait_for(state="visible")
    assert mark.inner_text().strip() == "⚠ optim.max_steps：必须为 -1（按训练轮数）或 >= 1，实际为 0"
    wait_text(page, "#cfg-data-train-error", "至少需要一个文件")
    assert "未启动任务" in page.locator("#train-problems").inner_text()
    shot(page, "messages-zh-train")
    left = english_words(visible_text(page))
    assert not left, left
