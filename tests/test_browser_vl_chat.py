"""The Chat tab with images in a real browser (Playwright driving Debian's chromium) against
`python app.py`: the tiny VL model on both sides, an image attached to a message shows in both
conversations and both answer it; a file that is not an image is refused before anything is sent,
and a text model's side says it cannot take images."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chat_ui import choose, set_slider
from tests.browser_helpers import Studio, launch_browser, shot, wait_until
from trainer.data.shapes import questions, write_shapes_dataset

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = pytest.mark.timeout(600)
VL = "ernie-4.5-tiny-vl"
TEXT = "ernie-4.5-tiny-moe"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    server = Studio(tmp_path_factory.mktemp("vl-chat-studio")).start()
    yield server
    server.stop()  # its model servers end with it (--parent-pid)


@pytest.fixture(scope="module")
def page(studio):
    with playwright_api.sync_playwright() as p:
        browser = launch_browser(p)
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        pg.set_default_timeout(120_000)
        pg.goto(studio.url)
        pg.get_by_role("tab", name="Chat").click()
        yield pg
        browser.close()


def load(page, side: str, checkpoint: str) -> None:
    choose(page, f"chat-model-{side}", checkpoint)
    page.click(f"#chat-load-{side}")
    page.wait_for_function("(id) => document.querySelector(id)?.textContent.includes('Loaded')",
                           arg=f"#chat-status-{side}", timeout=300_000)


def attach(page, path: Path) -> None:
    page.locator("#chat-input input[type=file]").set_input_files(str(path))
    page.locator("#chat-input .thumbnail-item").first.wait_for()  # uploaded


def bubbles(page, side: str, kind: str) -> list[str]:
    return page.evaluate("([id, kind]) => [...document.querySelectorAll(`#${id} .${kind} .message-content`)]"
                         ".map(e => e.textContent)", [f"chat-bot-{side}", kind])


def images_shown(page, side: str) -> int:
    """The user's images the conversation shows, loaded by the browser."""
    return page.evaluate("(id) => [...document.querySelectorAll(`#${id} .user img`)]"
                         ".filter(img => img.complete && img.naturalWidth > 0).length", f"chat-bot-{side}")


def send(page, text: str) -> None:
    page.locator("#chat-input textarea").fill(text)
    page.click("#chat-send")


def test_an_image_goes_to_both_sides_and_both_answer(page, studio, tmp_path):
    for side in "ab":
        load(page, side, VL)
    assert "takes images" in page.locator("#chat-status-a").text_content()
    page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
    set_slider(page, "chat-temperature", 0)
    set_slider(page, "chat-max-tokens", 8)
    image, question, *_ = questions(write_shapes_dataset(tmp_path, rows=1, seed=5))[0]
    attach(page, Path(image))
    send(page, question)
    wait_until(lambda: all(bubbles(page, side, "bot") for side in "ab"), 120, "a reply on both sides")
    page.locator("#chat-send").wait_for(state="visible")  # the replies are whole
    for side in "ab":
        assert images_shown(page, side) == 1, f"side {side} shows no image"
        assert question in "".join(bubbles(page, side, "user"))
        assert not page.locator(f"#chat-bot-{side} .bot").filter(has_text="⚠️").count(), bubbles(page, side, "bot")
    # the same server answers both sides, greedily: the same reply
    assert bubbles(page, "a", "bot") == bubbles(page, "b", "bot")
    assert page.locator("#chat-input .thumbnail-item").count() == 0, "the message box is emptied"
    # a question about the same image: the conversation, image included, goes back to the servers
    send(page, "And its colour?")
    wait_until(lambda: all(len(bubbles(page, side, "bot")) == 2 for side in "ab"), 120, "the second replies")
    page.locator("#chat-send").wait_for(state="visible")
    for side in "ab":
        assert images_shown(page, side) == 1
        assert not page.locator(f"#chat-bot-{side} .bot").filter(has_text="⚠️").count(), bubbles(page, side, "bot")
    shot(page, "vl-chat-image")


def test_a_file_that_is_not_an_image_is_refused_before_sending(page, tmp_path):
    page.click("#chat-clear")
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not pixels")
    attach(page, fake)
    send(page, "What is in it?")
    wait_until(lambda: all(bubbles(page, side, "bot") for side in "ab"), 60, "the refusal on both sides")
    for side in "ab":
        assert bubbles(page, side, "user") == []
        assert "Not sent: notes.png is a text file, not an image" in bubbles(page, side, "bot")[-1]
    assert page.locator("#chat-input .thumbnail-item").count() == 1, "the message stays in its box to fix"
    page.locator("#chat-input .thumbnail-item button").first.click()  # remove the attachment


def test_a_text_models_side_says_it_cannot_take_images(page, tmp_path):
    page.click("#chat-clear")
    load(page, "b", TEXT)
    image, question, *_ = questions(write_shapes_dataset(tmp_path, rows=1, seed=6))[0]
    attach(page, Path(image))
    send(page, question)
    wait_until(lambda: bubbles(page, "a", "bot") and bubbles(page, "b", "bot"), 120, "both sides to answer")
    page.locator("#chat-send").wait_for(state="visible")
    assert images_shown(page, "a") == images_shown(page, "b") == 1
    assert f"{TEXT} (base) is a text model and cannot take images" in bubbles(page, "b", "bot")[-1]
    assert "cannot take images" not in "".join(bubbles(page, "a", "bot"))
    shot(page, "vl-chat-text-model")
