"""The Chat tab's tools: the tools box's JSON read into OpenAI function definitions, a model's tool
call shown as a call (a bubble titled with the function's name, its arguments as JSON), and the
user's next message sent as that call's result (a `tool` message), after which the model goes on.

A call and a result are chatbot messages with metadata whose `id` says what they are
(`call:<call id>`, `result:<call id>`); `api_turn` turns them back into the API's assistant
`tool_calls` and `tool` messages, so the conversation lives in the chatbot like any other.
"""

from __future__ import annotations

import json

from webui.chat_attachments import api_content

CALL_PREFIX, RESULT_PREFIX = "call:", "result:"
CALL_TITLE, RESULT_TITLE = "→ ", "↩ "  # drawn by any font: an emoji needs one the machine may lack


class ToolsRefused(ValueError):
    """The tools box does not hold function definitions; `key` and `fields` say why in a language."""

    def __init__(self, key: str, **fields):
        super().__init__(key)
        self.key, self.fields = key, fields


def parse_tools(text: str) -> list[dict] | None:
    """The tools box's definitions as OpenAI `tools` (a bare function object is wrapped), None when
    the box is empty; raises ToolsRefused naming the entry that is wrong."""
    if not (text or "").strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ToolsRefused("msg-chat-tools-json", error=str(exc)) from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ToolsRefused("msg-chat-tools-list")
    tools, names = [], set()
    for i, entry in enumerate(value):
        function = entry.get("function", entry) if isinstance(entry, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ToolsRefused("msg-chat-tools-name", index=i + 1)
        if name in names:
            raise ToolsRefused("msg-chat-tools-twice", name=name)
        names.add(name)
        tools.append({"type": "function", "function": function})
    return tools


def call_message(call_id: str, name: str, arguments: str) -> dict:
    return {"role": "assistant", "content": shown_arguments(arguments),
            "metadata": {"title": CALL_TITLE + name, "id": CALL_PREFIX + call_id}}


def shown_arguments(arguments: str) -> str:
    return f"```json\n{arguments}\n```"


def result_message(call: dict, text: str) -> dict:
    """The user's answer to `call` (a call message) as the result the tool gave."""
    call_id = call["metadata"]["id"][len(CALL_PREFIX):]
    name = call["metadata"]["title"][len(CALL_TITLE):]
    return {"role": "user", "content": text, "metadata": {"title": RESULT_TITLE + name, "id": RESULT_PREFIX + call_id}}


def _kind(message: dict) -> str | None:
    marked = str((message.get("metadata") or {}).get("id") or "")
    return "call" if marked.startswith(CALL_PREFIX) else "result" if marked.startswith(RESULT_PREFIX) else None


def awaiting_result(history: list[dict]) -> dict | None:
    """The first call of the model's last turn that no result answers yet (None: none waits). The
    turn's bubbles are its calls, their results and the studio's own (thinking, errors), after the
    last plain message."""
    tail = []
    for message in reversed(history):
        if not message.get("metadata"):
            break
        tail.insert(0, message)
    answered = {m["metadata"]["id"][len(RESULT_PREFIX):] for m in tail if _kind(m) == "result"}
    return next((m for m in tail if _kind(m) == "call" and m["metadata"]["id"][len(CALL_PREFIX):] not in answered),
                None)


def add_turn(messages: list[dict], turn: dict) -> None:
    """Append an API message; calls join the assistant message right before them (its text or
    its other calls), as one turn of the model."""
    last = messages[-1] if messages else None
    if turn.get("tool_calls") and last is not None and last["role"] == "assistant":
        last["tool_calls"] = [*(last.get("tool_calls") or []), *turn["tool_calls"]]
    else:
        messages.append(turn)


def _text(message: dict) -> str:
    """A bubble's text: the chatbot gives back what it showed as a list of parts."""
    return api_content(message["content"], images=False)


def api_turn(message: dict) -> dict | None:
    """A call or result bubble as the API's message (a call as an assistant message with one tool
    call; calls of one turn are joined by `api_messages`); None for any other bubble."""
    kind = _kind(message)
    if kind == "call":
        arguments = _text(message).removeprefix("```json\n").removesuffix("\n```")
        call = {"id": message["metadata"]["id"][len(CALL_PREFIX):], "type": "function",
                "function": {"name": message["metadata"]["title"][len(CALL_TITLE):], "arguments": arguments}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "result":
        return {"role": "tool", "tool_call_id": message["metadata"]["id"][len(RESULT_PREFIX):],
                "content": _text(message)}
    return None
