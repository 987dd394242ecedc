"""Tool calls in the Chat tab in a real browser: the session's tool-tuned job (the `tool_job`
fixture, SFT-LoRA on the fixed-call set) is chatted with, its functions are defined in the tools
box, the model's call shows as a call, the result typed in the message box is sent as the tool's
result, and the model answers with the answer it learnt for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.chat_ui import choose, set_slider
from tests.browser_helpers import shot, studio_running, wait_until
from trainer.data.tool_set import FIXED_TOOLS
from trainer.jobs import JobStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = pytest.mark.timeout(600)  # the tool_job fixture may train first
TUNED_NAME = "tool-caller"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tool_job):
    from tests.test_browser_vl import enter_finished_job

    workdir = tmp_path_factory.mktemp("tools-studio")
    enter_finished_job(JobStore(workdir), tool_job, TUNED_NAME)
    with studio_running(workdir) as server:
        yield server


def bubbles(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#chat-bot-a .message-content, #chat-bot-a .title')]"
                         ".map(e => e.textContent)")


def shown_soon(page, text: str, timeout_s: float, what: str) -> None:
    """Wait for a bubble holding `text`; on a timeout, the bubbles there are (and a screenshot)."""
    try:
        wait_until(lambda: any(text in b for b in bubbles(page)), timeout_s, what)
    except AssertionError as exc:
        shot(page, "tools-failed")
        raise AssertionError(f"{exc}; the bubbles: {bubbles(page)}") from None


def test_a_tool_call_is_shown_answered_and_followed(studio):
    with playwright_api.sync_playwright() as p:
        from tests.browser_helpers import launch_browser

        browser = launch_browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(studio.url)
        page.get_by_role("tab", name="Chat").click()
        choose(page, "chat-model-a", TUNED_NAME)
        page.click("#chat-load-a")
        page.wait_for_function("() => document.querySelector('#chat-status-a')?.textContent.includes('Loaded')",
                               timeout=300_000)
        page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
        set_slider(page, "chat-temperature", 0)
        set_slider(page, "chat-max-tokens", 64)
        page.locator("#chat-tools-box").get_by_text("Tools").first.click()
        page.locator("#chat-tools textarea").fill("[not json")
        page.locator("#chat-input textarea").fill("What is the weather in Paris?")
        page.click("#chat-send")
        shown_soon(page, "the tools box is not valid JSON", 60, "the refusal")

        page.click("#chat-clear")
        page.locator("#chat-tools textarea").fill(json.dumps(list(FIXED_TOOLS)))
        page.locator("#chat-input textarea").fill("What is the weather in Paris?")
        page.click("#chat-send")
        shown_soon(page, "→ get_weather", 120, "the call")
        page.locator("#chat-send").wait_for(state="visible")
        assert any('{"city": "Paris"}' in b for b in bubbles(page)), bubbles(page)
        shot(page, "tools-call")

        page.locator("#chat-input textarea").fill('{"degrees": 12, "sky": "rainy"}')
        page.click("#chat-send")
        shown_soon(page, "12 degrees, rainy.", 120, "the answer")
        page.locator("#chat-send").wait_for(state="visible")
        assert any("↩ get_weather" in b for b in bubbles(page)), bubbles(page)
        shot(page, "tools-answered")
        browser.close()
