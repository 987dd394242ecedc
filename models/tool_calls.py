"""Tool calls as text: the studio's default layout for templates without tools, and the parser that
turns a generated reply back into OpenAI `tool_calls` (no paddle).

The markers are ERNIE 4.5's own, as ERNIE-4.5-21B-A3B-Thinking's released chat template writes them
(`../shared/real_ernie/ERNIE-4.5-21B-A3B-Thinking/hf_model_info.json`): the tool list in
`<tool_list>`, each call as `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, each
result in `<tool_output>`. A template that renders tools itself is given them as they are; for one
that does not, `fold_tools` writes them into plain system, assistant and user turns in that layout
(docs/function_calling.md), so one parser reads both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TOOL_LIST_OPEN, TOOL_LIST_CLOSE = "<tool_list>", "</tool_list>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_OUTPUT_OPEN, TOOL_OUTPUT_CLOSE = "<tool_output>", "</tool_output>"

_CALL_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(TOOL_CALL_CLOSE), re.S)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call: its name, its arguments as the JSON text of an object (compact, as
    `arguments_text` writes it), and the id results refer to (None where a format gives none)."""

    name: str
    arguments: str
    id: str | None = None

    def to_openai(self) -> dict:
        call = {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return {"id": self.id, **call} if self.id is not None else call

    def text(self) -> str:
        """The call as ERNIE's template writes it (the arguments' text verbatim)."""
        return f'{TOOL_CALL_OPEN}\n{{"name": {json.dumps(self.name, ensure_ascii=False)}, ' \
               f'"arguments": {self.arguments}}}\n{TOOL_CALL_CLOSE}'


def arguments_text(arguments: dict) -> str:
    """One spelling of an arguments object, so a call is trained and compared the same way
    whatever whitespace the dataset used (the separators of a chat template's `tojson`)."""
    return json.dumps(arguments, ensure_ascii=False)


def uses_tools(messages: list[dict], tools: list | None) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def _call_text(call: dict) -> str:
    function = call.get("function", call)
    arguments = function["arguments"]
    return ToolCall(function["name"], arguments if isinstance(arguments, str) else arguments_text(arguments)).text()


def _type(schema: object) -> str:
    """An argument's type as a signature writes it: its JSON type, its choices, or (where its schema
    says more: a description, items, properties) the schema's JSON."""
    if isinstance(schema, dict) and set(schema) == {"type"} and isinstance(schema["type"], str):
        return schema["type"]
    if isinstance(schema, dict) and set(schema) <= {"type", "enum"} and isinstance(schema.get("enum"), list):
        return " | ".join(json.dumps(choice, ensure_ascii=False) for choice in schema["enum"])
    return json.dumps(schema, ensure_ascii=False)


def signature(function: dict) -> str:
    """One function as the studio's layout lists it: `name(arg: type, optional?: type) - description`,
    a line far shorter than its JSON schema (a small model's tokenizer spells JSON nearly a character
    a token), which drops nothing an argument's schema says."""
    parameters = function.get("parameters") or {}
    required = parameters.get("required")
    arguments = ", ".join(f"{name}{'?' if isinstance(required, list) and name not in required else ''}: {_type(schema)}"
                          for name, schema in (parameters.get("properties") or {}).items())
    description = function.get("description")
    return f"{function['name']}({arguments})" + (f" - {description}" if description else "")


def fold_tools(messages: list[dict], tools: list | None) -> list[dict]:
    """The conversation in plain system/user/assistant turns, for a template that knows no tools:
    the tool list (each function's `signature` on a line of its own) appended to the system turn
    (one is added when there is none), an assistant's
    calls after its text, one per line, and each run of tool results as one user turn of
    `<tool_output>` blocks."""
    folded: list[dict] = []
    if tools:
        functions = "\n".join(signature(tool.get("function", tool)) for tool in tools)
        listing = f"{TOOL_LIST_OPEN}\n{functions}\n{TOOL_LIST_CLOSE}"
        if messages and messages[0]["role"] == "system":
            system = messages[0]["content"]
            messages = messages[1:]
            listing = f"{system}\n\n{listing}" if system.strip() else listing
        folded.append({"role": "system", "content": listing})
    after_tool = False
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            parts = ([message["content"]] if message.get("content") else []) + \
                [_call_text(call) for call in message["tool_calls"]]
            folded.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            block = f"{TOOL_OUTPUT_OPEN}{message['content']}{TOOL_OUTPUT_CLOSE}"
            if after_tool:
                folded[-1]["content"] += "\n" + block
            else:
                folded.append({"role": "user", "content": block})
        else:
            folded.append({"role": role, "content": message["content"]})
        after_tool = role == "tool"
    return folded


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """A generated reply's text apart from its calls, and the calls: each `<tool_call>` block
    holding a JSON object with a string `name` and an object `arguments` (or the JSON text of one),
    arguments re-spelt by `arguments_text`. A block that is not such a call (cut off, not JSON, no
    name) stays in the text, so nothing the model wrote is lost."""
    calls: list[ToolCall] = []

    def take(match: re.Match) -> str:
        call = _as_call(match.group(1))
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _CALL_BLOCK.sub(take, text)
    return (rest.strip() if calls else text), calls


def _as_call(body: str) -> ToolCall | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(value["name"], arguments_text(arguments))
