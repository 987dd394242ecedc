"""Dataset statistics, computed in one streaming pass.

Only counters and one compact integer array of token lengths (when a `token_length` callable is
given) are kept, never the examples themselves.
"""

from __future__ import annotations

import math
from array import array
from typing import Callable, Iterable

import numpy as np

from models.chat_template import TemplateError

from ..messages import Message
from .formats import Example
from .readers import DataIssue

HISTOGRAM_BINS = 20


class StatsCollector:
    """Accumulates statistics example by example; `result()` gives the same dict as compute_stats."""

    def __init__(self, token_length: Callable[[Example], int] | None = None, max_seq_len: int | None = None):
        self.token_length = token_length
        self.max_seq_len = max_seq_len
        self.rows = 0
        self.turns_total = 0
        self.turns_max = 0
        self.turns_min = 0
        self.multi_turn = 0
        self.with_system = 0
        self.with_think = 0
        self.untrained_turns = 0
        self.chars_total = 0
        self.chars_max = 0
        self.lengths = array("q")

    def add(self, example: Example) -> list[DataIssue]:
        """Count the example; a row whose tokens cannot be counted is returned as a problem instead."""
        length = None
        if self.token_length is not None:
            try:
                length = int(self.token_length(example))
            except TemplateError as exc:
                return [DataIssue(example.source, example.line, "messages", Message("row-template", error=str(exc)))]
        replies = [t.content for t in example.messages if t.role == "assistant"]
        turns = sum(1 for t in example.messages if t.role != "system")
        chars = sum(len(t.content) for t in example.messages)
        if example.chosen is not None:
            pair = [example.chosen, example.rejected or ""]
            replies += pair
            turns += 1
            chars += sum(map(len, pair))
        self.turns_min = turns if self.rows == 0 else min(self.turns_min, turns)
        self.rows += 1
        self.turns_total += turns
        self.turns_max = max(self.turns_max, turns)
        self.multi_turn += turns > 2
        self.with_system += example.system is not None
        self.with_think += any("<think>" in text for text in replies)
        self.untrained_turns += sum(1 for t in example.messages if t.role == "assistant" and not t.train)
        self.chars_total += chars
        self.chars_max = max(self.chars_max, chars)
        if length is not None:
            self.lengths.append(length)
        return []

    def result(self) -> dict:
        rows = self.rows
        return {
            "rows": rows,
            "turns": {"mean": _mean(self.turns_total, rows), "min": self.turns_min, "max": self.turns_max},
            "multi_turn_rows": self.multi_turn,
            "with_system": self.with_system,
            "with_think": self.with_think,
            "untrained_turns": self.untrained_turns,
            "characters": {"total": self.chars_total, "mean": _mean(self.chars_total, rows), "max": self.chars_max},
            "tokens": self._tokens() if self.token_length is not None else None,
        }

    def _tokens(self) -> dict:
        result: dict = {"min": None, "mean": None, "p50": None, "p95": None, "max": None,
                        "histogram": {"edges": [], "counts": []},
                        "max_seq_len": self.max_seq_len, "over_max_seq_len": 0}
        if not self.lengths:
            return result
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        lo, hi = int(lengths.min()), int(lengths.max())
        width = max(1, math.ceil((hi - lo + 1) / HISTOGRAM_BINS))
        bins = math.ceil((hi - lo + 1) / width)
        edges = [lo + k * width for k in range(bins + 1)]
        counts, _ = np.histogram(lengths, bins=edges)
        result.update(
            min=lo,
            mean=round(float(lengths.mean()), 2),
            p50=round(float(np.percentile(lengths, 50)), 1),
            p95=round(float(np.percentile(lengths, 95)), 1),
            max=hi,
            histogram={"edges": edges, "counts": [int(c) for c in counts]},
        )
        if self.max_seq_len is not None:
            result["over_max_seq_len"] = int((lengths > self.max_seq_len).sum())
        return result


def _mean(total: int, count: int) -> float:
    return round(total / count, 2) if count else 0.0


def compute_stats(examples: Iterable[Example], token_length: Callable[[Example], int] | None = None,
                  max_seq_len: int | None = None) -> dict:
    """Statistics of the examples: rows; user+assistant turns per row (a preference row counts its
    final reply as one turn); rows with a system prompt, with <think> reasoning, untrained turns;
    characters; and, given `token_length`, token length min/mean/p50/p95/max, a histogram (bin k
    holds lengths in [edges[k], edges[k+1])) and how many rows exceed `max_seq_len`."""
    collector = StatsCollector(token_length, max_seq_len)
    for example in examples:
        collector.add(example)
    return collector.result()
