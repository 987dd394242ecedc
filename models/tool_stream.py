"""A streamed reply split into its text and its tool calls as it arrives (no paddle).

`ToolCallSplitter.feed(text)` takes each piece of a reply's content and returns what can be told
already: text to show and whole calls (`models.tool_calls.ToolCall`, each given an id
`call_<random>`). Text that may be the start of `<tool_call>` is held back until the next pieces
say whether it is, so no markup reaches a client's content; a `<tool_call>` block is read whole,
with the same parser as a whole reply (`parse_tool_calls`), and a block that is not a call is
given back as text, as that parser leaves it. Whitespace around calls is dropped as
`parse_tool_calls` strips it, so the text streamed equals the content of the same reply answered
whole, except leading whitespace ahead of text that precedes the first call.
"""

from __future__ import annotations

import dataclasses
import uuid

from models.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ToolCall, parse_tool_calls


def call_id() -> str:
    """OpenAI's shape of a call id: results name their call by it."""
    return f"call_{uuid.uuid4().hex[:24]}"


def with_ids(calls: list[ToolCall]) -> list[ToolCall]:
    return [dataclasses.replace(call, id=call_id()) for call in calls]


def _held_prefix(text: str) -> int:
    """The length of the longest end of `text` that starts `<tool_call>`."""
    for size in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-size:]):
            return size
    return 0


class ToolCallSplitter:
    def __init__(self):
        self.pending = ""  # text not yet told apart: a possible or open <tool_call> block
        self.space = ""  # whitespace held until text follows it (dropped before the end if calls were made)
        self.spoken = False  # whether any text has been given out
        self.calls = 0

    def _text(self, text: str) -> list:
        if not text.strip():
            self.space += text
            return []
        core = text.rstrip()
        said = self.space + core
        if self.calls and not self.spoken:
            said = said.lstrip()  # the text after a reply's calls, as parse_tool_calls strips it
        self.spoken, self.space = True, text[len(core):]
        return [said]

    def feed(self, text: str) -> list:
        """Text pieces (str) and calls (ToolCall) that `text`, after what came before, makes certain."""
        self.pending += text
        out: list = []
        while self.pending:
            start = self.pending.find(TOOL_CALL_OPEN)
            if start < 0:
                keep = _held_prefix(self.pending)
                out += self._text(self.pending[:len(self.pending) - keep])
                self.pending = self.pending[len(self.pending) - keep:]
                break
            end = self.pending.find(TOOL_CALL_CLOSE, start)
            if end < 0:
                out += self._text(self.pending[:start])
                self.pending = self.pending[start:]
                break
            end += len(TOOL_CALL_CLOSE)
            out += self._text(self.pending[:start])
            block, self.pending = self.pending[start:end], self.pending[end:]
            _, calls = parse_tool_calls(block)
            if calls:
                self.calls += len(calls)
                out += with_ids(calls)
            else:
                out += self._text(block)
        return out

    def end(self) -> list:
        """What is left once the reply has ended: an unfinished block stays text."""
        out = self._text(self.pending)
        self.pending = ""
        if not self.calls and self.space:
            out.append(self.space)
        self.space = ""
        return out
