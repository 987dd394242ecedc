"""Chat in the browser: two checkpoints stream a 128-token reply side by side in the Chat tab,
against the same two requests sent straight to their model servers.

One `python app.py` on a temporary workdir and one headless Chromium page. The page loads the two
built-in tiny models (base MoE and dense, two model servers), sets temperature 0 and 128 new
tokens, and sends one prompt on which both babble through all 128 tokens (greedy, so the page and
the direct requests get the same tokens). Measured:
    direct: both requests streamed at once with httpx from this process, to the last token;
    page:   from the click on Send to both whole replies shown in the page (polled every 50 ms);
    longest long task: the longest stretch the page's main thread was busy meanwhile (a
            PerformanceObserver of 'longtask' entries; none means none over 50 ms);
    updates a second: how often each reply's shown text changed while it streamed (a
            MutationObserver), the larger of the two; the Chat tab coalesces tokens to about 8.

Run: .venv/bin/python bench/chat_ui.py [--repeat N]
The last line printed is one JSON object with the figures (of the slowest of N rounds).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser_helpers import Studio, launch_browser  # noqa: E402

CHECKPOINTS = ("ernie-4.5-tiny-moe", "ernie-4.5-tiny-dense")
# Both tiny base models answer it with 128 tokens of letters that markdown shows as they are.
PROMPT = "What is the capital of France?"
MAX_TOKENS = 128
# The page's sampling settings, as the Chat tab sends them (top-p does not change a greedy reply).
PARAMS = {"temperature": 0, "top_p": 0.9, "max_tokens": MAX_TOKENS, "repetition_penalty": 1.0}
# What the issue asks: no main-thread stall a person notices, little time added to the servers', and
# tokens coalesced to about 8 redraws a second per reply (10 leaves room for the last flush).
TARGET = {"longtask_ms": 200, "ratio": 2.0, "updates_per_s": 10}

OBSERVE_LONG_TASKS = """() => {
    window.__longTasks = [];
    new PerformanceObserver(list => window.__longTasks.push(...list.getEntries().map(e => e.duration)))
        .observe({type: 'longtask'});
    document.querySelector('#chat-send').addEventListener('click', () => { window.__sentAt = performance.now(); },
                                                          {capture: true, once: true});
    (window.__replyWatchers ?? []).forEach(watcher => watcher.disconnect());
    window.__updates = {a: [], b: []};
    window.__replyWatchers = ['a', 'b'].map(side => {
        const bot = document.querySelector(`#chat-bot-${side}`);
        let shown = -1;
        const watcher = new MutationObserver(() => {
            const length = ([...bot.querySelectorAll('.bot .message-content')].pop()?.textContent ?? '').length;
            if (length !== shown) { shown = length; window.__updates[side].push(performance.now()); }
        });
        watcher.observe(bot, {subtree: true, childList: true, characterData: true});
        return watcher;
    });
}"""
# Letters and digits only: what markdown rendering leaves of a text either way.
REPLIES_SHOWN = """(expected) => {
    const norm = t => t.replace(/[^\\p{L}\\p{N}]/gu, '');
    const last = id => [...document.querySelectorAll(`#${id} .bot .message-content`)].map(e => e.textContent).pop();
    const done = ['chat-bot-a', 'chat-bot-b'].every((id, i) => norm(last(id) ?? '') === norm(expected[i]));
    return done && performance.now() - window.__sentAt;
}"""


def choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()


def set_slider(page, slider_id: str, value) -> None:
    """Set a slider's number box until the slider shows `value` at two looks in a row: one drawn a
    moment ago (its accordion just opened) can still take its initial value over one set at once."""
    box, slider = page.locator(f"#{slider_id} input[type=number]"), page.locator(f"#{slider_id} input[type=range]")
    looks = []
    deadline = time.monotonic() + 60
    while looks[-2:] != [True, True]:
        assert time.monotonic() < deadline, f"{slider_id} does not keep {value}"
        looks.append(slider.input_value() == str(value))
        if not looks[-1]:
            box.fill(str(value))
            box.press("Enter")
        time.sleep(0.3)


def open_chat(page, url: str, max_tokens: int = MAX_TOKENS) -> None:
    """The Chat tab with both checkpoints loaded, greedy, `max_tokens` new tokens."""
    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    for side, checkpoint in zip("ab", CHECKPOINTS):
        choose(page, f"chat-model-{side}", checkpoint)
        page.click(f"#chat-load-{side}")
    for side in "ab":  # a model server is a process that imports paddle before it loads the model
        page.wait_for_function("(id) => document.querySelector(id)?.textContent.includes('Loaded')",
                               arg=f"#chat-status-{side}", timeout=300_000)
    page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
    set_slider(page, "chat-temperature", 0)
    set_slider(page, "chat-max-tokens", max_tokens)


def server_urls(studio: Studio) -> list[str]:
    """The base URLs of the model servers the studio started for CHECKPOINTS, in that order."""
    import psutil

    ports = {}
    for child in psutil.Process(studio.proc.pid).children():
        cmdline = child.cmdline()
        if "models.serve" in cmdline:
            listening = [c.laddr.port for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
            ports[cmdline[cmdline.index("--model") + 1]] = listening[0]
    return [f"http://127.0.0.1:{ports[checkpoint]}" for checkpoint in CHECKPOINTS]


def stream_reply(url: str, prompt: str, **params) -> tuple[str, int]:
    """One streamed chat completion, straight from the server's OpenAI API: its text and token count."""
    import httpx

    body = {"messages": [{"role": "user", "content": prompt}], "stream": True,
            "stream_options": {"include_usage": True}, **params}
    text, tokens = "", 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if event["choices"]:
                text += event["choices"][0]["delta"].get("content") or ""
            else:
                tokens = event["usage"]["completion_tokens"]
    return text, tokens


def direct(urls: list[str], prompt: str = PROMPT) -> tuple[float, list[tuple[str, int]]]:
    """Seconds until both servers have streamed their whole reply, the requests sent at once."""
    replies: list = [None] * len(urls)

    def ask(index: int) -> None:
        replies[index] = stream_reply(urls[index], prompt, **PARAMS)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(urls))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, replies


def in_page(page, expected: list[str], prompt: str = PROMPT) -> dict:
    """Send `prompt` from the page; seconds until both `expected` replies are shown whole, and the
    page's long tasks meanwhile."""
    page.evaluate(OBSERVE_LONG_TASKS)
    page.locator("#chat-input textarea").fill(prompt)
    page.click("#chat-send")
    elapsed_ms = page.wait_for_function(REPLIES_SHOWN, arg=expected, polling=50, timeout=300_000).json_value()
    tasks = page.evaluate("window.__longTasks")
    updates = page.evaluate("window.__updates")
    return {"page_s": elapsed_ms / 1000, "longest_task_ms": max(tasks, default=0.0),
            "long_tasks_ms": sum(tasks), "long_tasks": len(tasks),
            "updates_per_s": max(_rate(times) for times in updates.values())}


def _rate(times_ms: list[float]) -> float:
    """Redraws a second of one reply, from its first to its last (0 when it was drawn once)."""
    span_s = (times_ms[-1] - times_ms[0]) / 1000 if len(times_ms) > 1 else 0
    return (len(times_ms) - 1) / span_s if span_s else 0.0


def measure(page, studio: Studio) -> dict:
    """One round on a page with both checkpoints loaded: the direct requests, then the page's."""
    urls = server_urls(studio)
    direct(urls)  # the first reply of a fresh server is slower
    direct_s, replies = direct(urls)
    assert [tokens for _, tokens in replies] == [MAX_TOKENS] * len(urls), replies
    page.click("#chat-clear")
    figures = in_page(page, [text for text, _ in replies])
    return {"direct_s": direct_s, **figures, "ratio": figures["page_s"] / direct_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chat-ui-") as tmp:
        studio = Studio(Path(tmp)).start()
        try:
            with sync_playwright() as p:
                browser = launch_browser(p)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                open_chat(page, studio.url)
                rounds = [measure(page, studio) for _ in range(args.repeat)]
                browser.close()
        finally:
            studio.stop()
    for figures in rounds:
        print(", ".join(f"{key} {value:.3g}" for key, value in figures.items()))
    worst = max(rounds, key=lambda r: r["ratio"])
    result = {**{key: round(value, 4) for key, value in worst.items()},
              "longest_task_ms_max": max(r["longest_task_ms"] for r in rounds), "rounds": len(rounds),
              "target": TARGET, "pass": worst["ratio"] <= TARGET["ratio"]
              and all(r["longest_task_ms"] <= TARGET["longtask_ms"] for r in rounds)
              and all(r["updates_per_s"] <= TARGET["updates_per_s"] for r in rounds)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
