"""The Chat tab in a real browser (Playwright driving Debian's chromium) against `python app.py`:
two checkpoints (the built-in tiny MoE and dense bases, each its own model server) stream side by
side without blocking the page, each column headed by its checkpoint, and Stop ends both streams.

The figures come from bench/chat_ui.py, which measures the same thing: the page against the same
requests sent straight to the two model servers, in the same test, so a slow machine slows both.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from bench.chat_ui import (CHECKPOINTS, PROMPT, TARGET, measure, open_chat, server_urls, set_slider,
                           stream_reply)
from tests.browser_helpers import Studio, launch_browser, shot, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = pytest.mark.timeout(900)
# A main-thread task this long is a frozen page, on any machine CI may run on.
FREEZE_MS = 1000
# Far more than the page can stream before Stop: a stream that was not cancelled goes on for long.
LONG_REPLY = 2000


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    server = Studio(tmp_path_factory.mktemp("chat-studio")).start()
    yield server
    server.stop()  # its model servers end with it (--parent-pid)


@pytest.fixture(scope="module")
def page(studio):
    with playwright_api.sync_playwright() as p:
        browser = launch_browser(p)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)
        open_chat(pg, studio.url)
        yield pg
        browser.close()


def reply_lengths(page) -> list[int]:
    return page.evaluate("""() => ['a', 'b'].map(side => ([...document.querySelectorAll(
        `#chat-bot-${side} .bot .message-content`)].pop()?.textContent ?? '').length)""")


def test_each_column_is_headed_by_its_checkpoint(page):
    for side, checkpoint in zip("ab", CHECKPOINTS):
        label = page.locator(f"#chat-bot-{side} [data-testid=block-label]").text_content()
        assert label.strip() == f"{checkpoint} (base)"


def test_the_monitors_poll_only_while_their_tab_is_shown(page):
    """The Jobs and Export tabs' timers send an event a second each; on the Chat tab, none."""
    events = []
    page.on("request", lambda request: "/queue/join" in request.url and events.append(request.url))
    page.wait_for_timeout(3000)  # Playwright reports requests while it waits, not in time.sleep
    assert events == []
    page.get_by_role("tab", name="Jobs").click()
    page.wait_for_timeout(3000)
    assert len(events) >= 2, "the Jobs monitor does not tick"
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_timeout(1500)  # a tick sent as the tab changed
    ticks = len(events)
    page.wait_for_timeout(3000)
    assert len(events) == ticks


def test_two_replies_stream_side_by_side_without_blocking_the_page(page, studio):
    figures = measure(page, studio)
    print(figures)
    shot(page, "chat-streamed")
    # Speed is bench/chat_ui.py's to hold: its page/direct ratio (target 2) and 200 ms long-task
    # target (63 ms measured). With another test file running on the other core the browser slows
    # more than plain requests do (2.26 seen), so this test only catches a page that freezes, as the
    # chat did when every token redrew it (seconds of long tasks). How often a reply is redrawn does
    # not depend on the machine's speed: tokens are coalesced to about 8 redraws a second (6.5
    # measured; 20 when every token is sent, as fast as the page keeps up).
    assert figures["longest_task_ms"] <= FREEZE_MS, figures
    assert figures["updates_per_s"] <= TARGET["updates_per_s"], figures


def test_stop_ends_both_streams_and_frees_the_servers(page, studio):
    set_slider(page, "chat-max-tokens", LONG_REPLY)
    page.click("#chat-clear")
    page.locator("#chat-input textarea").fill(PROMPT)
    page.click("#chat-send")
    wait_until(lambda: min(reply_lengths(page)) > 20, 120, "both replies to start")
    page.click("#chat-stop")
    page.locator("#chat-send").wait_for(state="visible")
    assert page.locator("#chat-stop").is_hidden()
    stopped = reply_lengths(page)
    time.sleep(2)
    assert reply_lengths(page) == stopped, "the replies kept growing after Stop"
    shot(page, "chat-stopped")

    # Each server says it cancelled the generation, well before its end, and answers the next request.
    for checkpoint, url in zip(CHECKPOINTS, server_urls(studio)):
        log = studio.workdir / "serve_logs" / f"{checkpoint}.log"
        cancelled = wait_until(lambda: re.search(r"generation cancelled by the client after (\d+) tokens",
                                                 log.read_text()), 30, f"{checkpoint}'s server to cancel")
        assert int(cancelled.group(1)) < LONG_REPLY
        started = time.monotonic()
        assert stream_reply(url, PROMPT, temperature=0, max_tokens=8)[1] == 8
        assert time.monotonic() - started < 30
