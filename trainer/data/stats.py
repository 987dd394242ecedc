"""Dataset statistics, computed in one streaming pass.

Only counters and compact integer arrays (token lengths when a `token_length` callable is given;
each image's width and height, and each image row's image count and image tokens) are kept, never
the examples themselves.
"""

from __future__ import annotations

import math
from array import array
from typing import Callable, Iterable

import numpy as np

from models.chat_template import TemplateError
from models.image_facts import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, image_tokens

from ..messages import Message
from .formats import Example
from .images import ImageLimits, image_size
from .readers import DataIssue

HISTOGRAM_BINS = 20


class StatsCollector:
    """Accumulates statistics example by example; `result()` gives the same dict as compute_stats."""

    def __init__(self, token_length: Callable[[Example], int] | None = None, max_seq_len: int | None = None,
                 limits: ImageLimits | None = None):
        self.token_length = token_length
        self.max_seq_len = max_seq_len
        # image tokens are counted as the processor resizes: within the run's limits, else its defaults
        self.limits = limits or ImageLimits(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
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
        self.widths = array("q")
        self.heights = array("q")
        self.images_per_row = array("q")  # of the rows with images
        self.image_tokens = array("q")  # per row with images

    def add(self, example: Example) -> list[DataIssue]:
        """Count the example; a row whose tokens cannot be counted is returned as a problem instead."""
        length = None
        if self.token_length is not None:
            try:
                length = int(self.token_length(example))
            except TemplateError as exc:
                return [DataIssue(example.source, example.line, "messages", Message("row-template", error=str(exc)))]
        replies = [t.text for t in example.messages if t.role == "assistant"]
        turns = sum(1 for t in example.messages if t.role != "system")
        chars = sum(len(t.text) for t in example.messages)
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
        if example.images:
            self._add_images(example.images)
        return []

    def _add_images(self, paths: tuple[str, ...]) -> None:
        tokens = 0
        for path in paths:
            info = image_size(path)
            if info is None:
                continue
            self.widths.append(info.width)
            self.heights.append(info.height)
            try:
                tokens += image_tokens(info.width, info.height, self.limits.min_pixels, self.limits.max_pixels)
            except ValueError:  # an area the limits refuse; the row's check has said so
                pass
        self.images_per_row.append(len(paths))
        self.image_tokens.append(tokens)

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
            "images": self._images() if self.images_per_row else None,
        }

    def _images(self) -> dict:
        """Images per row (over all rows), each image's size (the smallest, median and largest by
        area, as [width, height]) and image tokens per row with images."""
        per_row = np.frombuffer(self.images_per_row, dtype=np.int64)
        tokens = np.frombuffer(self.image_tokens, dtype=np.int64)
        widths = np.frombuffer(self.widths, dtype=np.int64)
        heights = np.frombuffer(self.heights, dtype=np.int64)
        sizes = {}
        if len(widths):
            order = np.argsort(widths * heights, kind="stable")
            for name, k in (("min", 0), ("median", len(order) // 2), ("max", len(order) - 1)):
                sizes[name] = [int(widths[order[k]]), int(heights[order[k]])]
        return {
            "rows": len(per_row),
            "total": int(per_row.sum()),
            "per_row": {"mean": _mean(int(per_row.sum()), self.rows), "min": 0 if len(per_row) < self.rows
                        else int(per_row.min()), "max": int(per_row.max())},
            "size": sizes,
            "tokens_per_row": {"min": int(tokens.min()), "mean": round(float(tokens.mean()), 2),
                               "max": int(tokens.max())},
            "limits": [self.limits.min_pixels, self.limits.max_pixels],
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
                  max_seq_len: int | None = None, limits: ImageLimits | None = None) -> dict:
    """Statistics of the examples: rows; user+assistant turns per row (a preference row counts its
    final reply as one turn); rows with a system prompt, with <think> reasoning, untrained turns;
    characters; and, given `token_length`, token length min/mean/p50/p95/max, a histogram (bin k
    holds lengths in [edges[k], edges[k+1])) and how many rows exceed `max_seq_len`; with images,
    images per row, their sizes and image tokens per row (counted with `limits`)."""
    collector = StatsCollector(token_length, max_seq_len, limits)
    for example in examples:
        collector.add(example)
    return collector.result()
