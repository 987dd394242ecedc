"""Function calling in a row: its `tools` (the functions the assistant may call), an assistant's
calls and the tool results that answer them, each problem a `DataIssue` naming the row's field.

Tools are OpenAI's `{"type": "function", "function": {"name", "description", "parameters"}}` or the
bare function object (LLaMA-Factory's glaive set), a list or the JSON text of one; they are kept in
OpenAI's shape. A call is OpenAI's `{"id", "type": "function", "function": {"name", "arguments"}}`
(or the bare `{"name", "arguments"}` a sharegpt `function_call` turn holds), its arguments a JSON
object or the JSON text of one; it must name a declared function. Results are matched with calls by
`tool_call_id` where the calls have ids, else in order.
"""

from __future__ import annotations

import json

from models.tool_calls import ToolCall, arguments_text

from ..messages import Message, json_error
from .rows import Row, describe

TOOL_SHAPE = '{"type": "function", "function": {"name", "description", "parameters"}}'
CALL_SHAPE = '{"id", "type": "function", "function": {"name", "arguments"}}'
CALL_FUNCTION_SHAPE = '{"name", "arguments"}'


def _json_text(r: Row, text: str, field: str, what: Message) -> tuple[bool, object]:
    """(parsed, value) of a field that holds JSON text; an issue naming `what` was expected when not."""
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as e:
        r.issue(field, Message("tool-not-json", what=what, error=json_error(e.msg), position=e.pos + 1))
        return False, None


def tool_list(r: Row) -> tuple[tuple[dict, ...], frozenset[str]] | None:
    """The row's tools in OpenAI's shape and the names they declare; None when they are invalid."""
    value = r.get("tools", required=False)
    if value is None:
        return (), frozenset()
    if isinstance(value, str):
        parsed, value = _json_text(r, value, "tools", Message("tool-what-tools", shape=TOOL_SHAPE))
        if not parsed:
            return None
    if not isinstance(value, list):
        r.issue("tools", Message("tool-list-not-list", shape=TOOL_SHAPE, value=describe(value)))
        return None
    tools, names, before = [], set(), len(r.issues)
    for i, entry in enumerate(value):
        field = f"tools[{i}]"
        if not isinstance(entry, dict):
            r.issue(field, Message("format-turn-not-object", shape=TOOL_SHAPE, value=describe(entry)))
            continue
        found = _function_of(r, entry, field)
        if found is None:
            continue
        function, at = found
        name = _name(r, function, at)
        if name is not None and name in names:
            r.issue(f"{at}.name", Message("tool-declared-twice", name=repr(name)))
        elif name is not None:
            names.add(name)
        description = function.get("description")
        if description is not None:
            r.string(description, f"{at}.description")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            r.issue(f"{at}.parameters", Message("tool-parameters", value=describe(parameters)))
        tools.append({"type": "function", "function": function})
    if len(r.issues) > before:
        return None
    return tuple(tools), frozenset(names)


def _function_of(r: Row, entry: dict, field: str) -> tuple[dict, str] | None:
    """The function object of a tools entry or a call, and its field: OpenAI's wrapper
    (`{"type": "function", "function": {...}}`) or the bare object, which may say its type too
    (glaive's rows, OpenAI's Responses API)."""
    kind = entry.get("type")
    if kind is not None and kind != "function":
        r.issue(f"{field}.type", Message("tool-type", function="'function'", value=describe(kind)))
        return None
    if "function" not in entry:
        return {key: value for key, value in entry.items() if key not in ("type", "id")}, field
    function = entry["function"]
    if function is None:
        r.issue(f"{field}.function", Message("row-missing"))
        return None
    if not isinstance(function, dict):
        r.issue(f"{field}.function", Message("format-turn-not-object", shape='{"name", ...}', value=describe(function)))
        return None
    return function, f"{field}.function"


def _name(r: Row, function: dict, field: str) -> str | None:
    name = function.get("name")
    if name is None:
        r.issue(f"{field}.name", Message("row-missing"))
        return None
    name = r.string(name, f"{field}.name")
    if name is not None and not name.strip():
        r.issue(f"{field}.name", Message("tool-name-empty"))
        return None
    return name


def _call(r: Row, function: dict, field: str, declared: frozenset[str] | None, call_id: str | None = None
          ) -> ToolCall | None:
    """One call's function name (one of `declared`, the names the row's tools declare; None when
    those are invalid, so the call is not held against them) and arguments (a JSON object)."""
    name = _name(r, function, field)
    if name is not None and declared is not None and name not in declared:
        listed = ", ".join(sorted(declared)) if declared else Message("value-none")
        r.issue(f"{field}.name", Message("tool-call-undeclared", name=repr(name), tools="tools", declared=listed))
        name = None
    if "arguments" not in function:
        r.issue(f"{field}.arguments", Message("row-missing"))
        return None
    arguments = function["arguments"]
    if isinstance(arguments, str):
        parsed, arguments = _json_text(r, arguments, f"{field}.arguments", Message("tool-what-arguments"))
        if not parsed:
            return None
    if not isinstance(arguments, dict):
        r.issue(f"{field}.arguments", Message("tool-arguments-object", value=describe(arguments)))
        return None
    return ToolCall(name, arguments_text(arguments), call_id) if name is not None else None


def openai_calls(r: Row, value: object, field: str, declared: frozenset[str] | None) -> tuple[ToolCall, ...] | None:
    """An assistant message's `tool_calls`; None when any is invalid."""
    if not isinstance(value, list):
        r.issue(field, Message("format-turns-not-list", shape=CALL_SHAPE, value=describe(value)))
        return None
    calls, before = [], len(r.issues)
    for j, item in enumerate(value):
        at = f"{field}[{j}]"
        if not isinstance(item, dict):
            r.issue(at, Message("format-turn-not-object", shape=CALL_SHAPE, value=describe(item)))
            continue
        call_id = item.get("id")
        if call_id is not None:
            call_id = r.string(call_id, f"{at}.id")
        found = _function_of(r, item, at)
        if found is None:
            continue
        call = _call(r, *found, declared, call_id)
        if call is not None:
            calls.append(call)
    return tuple(calls) if len(r.issues) == before else None


def sharegpt_calls(r: Row, value: object, field: str, declared: frozenset[str] | None
                   ) -> tuple[ToolCall, ...] | None:
    """A sharegpt `function_call` turn's value: the JSON text of `{"name", "arguments"}` or of a list
    of them (several calls at once); None when invalid."""
    if isinstance(value, str):
        parsed, value = _json_text(r, value, field, Message("tool-what-call", shape=CALL_FUNCTION_SHAPE))
        if not parsed:
            return None
    items = value if isinstance(value, list) else [value]
    if not items:
        r.issue(field, Message("tool-calls-empty"))
        return None
    calls, before = [], len(r.issues)
    for j, item in enumerate(items):
        at = f"{field}[{j}]" if isinstance(value, list) else field
        if not isinstance(item, dict):
            r.issue(at, Message("format-turn-not-object", shape=CALL_FUNCTION_SHAPE, value=describe(item)))
            continue
        call = _call(r, item, at, declared)
        if call is not None:
            calls.append(call)
    return tuple(calls) if len(r.issues) == before else None


class PendingCalls:
    """The calls of the last assistant turn that still await their results, and every call id
    seen so far (an id names one call)."""

    def __init__(self, r: Row):
        self.r = r
        self.calls: list[tuple[str, ToolCall]] = []  # (the call's field, the call)
        self.ids: set[str] = set()

    def open(self, calls: tuple[ToolCall, ...], field: str) -> bool:
        for j, call in enumerate(calls):
            if call.id is not None and call.id in self.ids:
                self.r.issue(f"{field}[{j}].id", Message("tool-call-id-twice", id=repr(call.id)))
                return False
            if call.id is not None:
                self.ids.add(call.id)
        self.calls = [(f"{field}[{j}]", call) for j, call in enumerate(calls)]
        return True

    def unanswered(self, field: str) -> bool:
        """Whether calls still await results where a turn other than a tool result comes (an issue)."""
        if not self.calls:
            return False
        at, call = self.calls[0]
        self.r.issue(field, Message("tool-call-unanswered", name=repr(call.name), call=at))
        return True

    def answer(self, call_id: str | None, name: object, field: str, id_field: str) -> bool:
        """Match one tool result with the call it answers (by id where the calls have ids, else the
        first waiting call); False, with an issue, when it answers none."""
        if not self.calls:
            self.r.issue(field, Message("tool-result-no-call"))
            return False
        if call_id is not None:
            found = next((k for k, (_, call) in enumerate(self.calls) if call.id == call_id), None)
            if found is None:
                waiting = ", ".join(repr(call.id) for _, call in self.calls if call.id is not None)
                self.r.issue(id_field, Message("tool-result-unknown-id", id=repr(call_id),
                                               ids=waiting or Message("value-none")))
                return False
        elif any(call.id is not None for _, call in self.calls):
            waiting = ", ".join(repr(call.id) for _, call in self.calls if call.id is not None)
            self.r.issue(id_field, Message("tool-result-no-id", ids=waiting))
            return False
        else:
            found = 0
        expected = self.calls[found][1].name
        if isinstance(name, str) and name != expected:
            self.r.issue(f"{field}.name", Message("tool-result-name", name=repr(name), call=repr(expected)))
            return False
        self.calls.pop(found)
        return True
