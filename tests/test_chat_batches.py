"""models.chat_client.side_by_side_batches without servers: clients whose streams tick at a set pace."""

from __future__ import annotations

import threading
import time

from models.chat_client import ChatClient, Delta, side_by_side_batches


class Ticking(ChatClient):
    """A client whose stream sends `tokens` one-character deltas `gap_s` apart, and notes being closed."""

    def __init__(self, tokens: int, gap_s: float):
        super().__init__("http://127.0.0.1:9")
        self.tokens, self.gap_s, self.sent, self.closed = tokens, gap_s, 0, threading.Event()

    def stream(self, messages, **params):
        try:
            for i in range(self.tokens):
                time.sleep(self.gap_s)
                self.sent += 1
                yield Delta(content="x", finish_reason="length" if i == self.tokens - 1 else None)
        finally:
            self.closed.set()


def test_batches_come_at_most_every_interval_and_carry_every_delta():
    clients = [Ticking(60, 0.005), Ticking(40, 0.008)]
    every_s = 0.1
    times, texts = [], ["", ""]
    for batch in side_by_side_batches([(c, [], {}) for c in clients], every_s):
        times.append(time.monotonic())
        for index, delta in batch:
            texts[index] += delta.content
    assert texts == ["x" * 60, "x" * 40]
    # the last batch comes as soon as both streams have ended
    gaps = [b - a for a, b in zip(times, times[1:-1])]
    assert len(times) >= 3 and min(gaps) >= every_s * 0.9, gaps


def test_closing_the_batches_closes_every_stream():
    clients = [Ticking(10_000, 0.002), Ticking(10_000, 0.002)]
    batches = side_by_side_batches([(c, [], {}) for c in clients], 0.05)
    next(batches)
    batches.close()
    for client in clients:
        assert client.closed.wait(5), "a stream was left running"
        assert client.sent < 10_000
