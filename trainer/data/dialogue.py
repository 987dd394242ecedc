"""Rows that list their turns (OpenAI `messages`, sharegpt `conversations`): roles, content and the
order of the turns, function calling included (trainer/data/tool_rows.py).

The order: an optional system turn, then user turns each answered by the assistant; an assistant
turn may call tools instead (`tool_calls`, or a sharegpt `function_call` turn), and then one tool
result (`tool`, sharegpt `observation`) per call follows, before the assistant speaks again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message
from .rows import Row, Turn, describe, system_turn
from .tool_rows import PendingCalls, openai_calls, sharegpt_calls
from .vl_formats import content_parts


@dataclass(frozen=True)
class Dialect:
    """How a list-of-turns format spells its turns."""

    key: str
    role_key: str
    content_key: str
    roles: dict[str, str]  # spelling -> canonical role
    expected: Message  # the role spellings it accepts
    user_name: str
    assistant_name: str
    call_role: str | None  # the spelling of a turn whose content is a call (sharegpt's function_call)

    @property
    def shape(self) -> str:
        return f"{{{self.role_key}, {self.content_key}}}"


MESSAGES = Dialect("messages", "role", "content",
                   {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"},
                   Message("format-roles-messages", system="system", user="user", assistant="assistant", tool="tool"),
                   "user", "assistant", None)
SHAREGPT = Dialect("conversations", "from", "value",
                   {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                    "function_call": "assistant", "observation": "tool"},
                   Message("format-roles-sharegpt", human="human", gpt="gpt", system="system", user="user",
                           assistant="assistant", function_call="function_call", observation="observation"),
                   "human", "gpt", "function_call")


def article(word: str) -> Message:
    """A role's name with its English article (Chinese has none)."""
    return Message("word-an" if word[:1] in ("a", "e", "o") else "word-a", word=word)


def _content(r: Row, d: Dialect, item: dict, role: str | None, name: str, optional: bool) -> str | None:
    """A turn's text; `optional` for an assistant turn that calls tools (no text is fine)."""
    content = item.get(d.content_key)
    field = f"{name}.{d.content_key}"
    if content is None:
        if optional:
            return ""
        r.issue(field, Message("row-missing"))
    elif isinstance(content, list) and d is MESSAGES and role != "tool":
        content = content_parts(r, content, field)
        if role and content is not None:
            r.content(content, role, field)
    else:
        content = r.string(content, field)
        if role and role != "tool" and not optional:
            r.content(content, role, field)
    return content


def _turn(r: Row, d: Dialect, item: dict, role: str | None, name: str, declared) -> Turn:
    """One item as a Turn (its issues recorded); what is invalid stays empty."""
    if d.call_role is not None and item.get(d.role_key) == d.call_role:
        value = item.get(d.content_key)
        if value is None:
            r.issue(f"{name}.{d.content_key}", Message("row-missing"))
            return Turn("assistant", "")
        calls = sharegpt_calls(r, value, f"{name}.{d.content_key}", declared)
        return Turn("assistant", "", tool_calls=calls or ())
    calls, call_id = (), None
    calling = d is MESSAGES and item.get("tool_calls") not in (None, [])
    if calling and role == "assistant":
        calls = openai_calls(r, item["tool_calls"], f"{name}.tool_calls", declared) or ()
    elif calling and role is not None:
        r.issue(f"{name}.tool_calls", Message("tool-calls-role", role=repr(item[d.role_key])))
    if role == "tool" and d is MESSAGES and item.get("tool_call_id") is not None:
        call_id = r.string(item["tool_call_id"], f"{name}.tool_call_id")
    content = _content(r, d, item, role, name, optional=calling and role == "assistant")
    return Turn(role or "user", content if isinstance(content, str) else "", tool_calls=calls, call_id=call_id)


def dialogue(r: Row, d: Dialect, preference: bool, declared: frozenset[str] | None = frozenset(),
             replies: tuple[str, str] = ("chosen", "rejected")) -> list[Turn] | None:
    """The turns of a messages/conversations list, checked for roles, content and order; a prompt
    (`preference`: the prompt of a preference pair, whose replies are in the fields `replies`, or a
    row to answer) ends with a user turn or tool results. `declared`: the functions the row's
    `tools` declare (None: its tools are invalid, so calls are not checked against them)."""
    turns = system_turn(r)
    items = r.get(d.key)
    if items is None:
        return None
    if not isinstance(items, list):
        r.issue(d.key, Message("format-turns-not-list", shape=d.shape, value=describe(items)))
        return None
    if not items:
        r.issue(d.key, Message("format-turns-empty"))
        return None
    roles: list[str | None] = []
    for i, item in enumerate(items):
        name = f"{d.key}[{i}]"
        if not isinstance(item, dict):
            r.issue(name, Message("format-turn-not-object", shape=d.shape, value=describe(item)))
            roles.append(None)
            continue
        raw_role = item.get(d.role_key)
        role = d.roles.get(raw_role) if isinstance(raw_role, str) else None
        if raw_role is None:
            r.issue(f"{name}.{d.role_key}", Message("row-missing"))
        elif role is None:
            shown = repr(raw_role) if isinstance(raw_role, str) else describe(raw_role)
            r.issue(f"{name}.{d.role_key}", Message("format-unknown-role", role=shown, expected=d.expected))
        roles.append(role)
        turns.append(_turn(r, d, item, role, name, declared))
    if r.issues:
        return None
    return turns if _in_order(r, d, items, roles, turns[len(turns) - len(items):],
                              top_level_system=len(turns) > len(items), preference=preference,
                              replies=replies) else None


def _in_order(r: Row, d: Dialect, items: list[dict], roles: list[str], turns: list[Turn], top_level_system: bool,
              preference: bool, replies: tuple[str, str]) -> bool:
    """User and assistant turns alternate, starting with the user; an assistant's calls are each
    answered by one tool result before anything else comes."""
    pending = PendingCalls(r)
    last = None  # the canonical role of the last turn that is not the system's
    for i, (role, turn) in enumerate(zip(roles, turns)):
        name = f"{d.key}[{i}]"
        spelt = items[i][d.role_key]
        if role == "system":
            if top_level_system:
                r.issue(f"{name}.{d.role_key}", Message("format-system-with-top", system="'system'"))
            elif i != 0:
                r.issue(f"{name}.{d.role_key}", Message("format-system-first"))
            continue
        if role == "tool":
            if not pending.answer(turn.call_id, items[i].get("name"), name, f"{name}.tool_call_id"):
                return False
        elif pending.unanswered(f"{name}.{d.role_key}"):
            return False
        elif last == "tool" and role != "assistant":
            r.issue(f"{name}.{d.role_key}", Message("format-after-tool", assistant=article(d.assistant_name),
                                                    got=spelt))
            return False
        else:
            expected = "assistant" if last in ("user", "tool") else "user"
            if role != expected:
                shown = {"user": d.user_name, "assistant": d.assistant_name}
                r.issue(f"{name}.{d.role_key}", Message("format-alternate", expected=article(shown[expected]),
                                                        got=spelt, user=d.user_name, assistant=d.assistant_name))
                return False
            if role == "assistant" and turn.tool_calls and \
                    not pending.open(turn.tool_calls, f"{name}.tool_calls" if d is MESSAGES else
                                     f"{name}.{d.content_key}"):
                return False
        last = role
    end = items[-1][d.role_key]
    if preference and last not in ("user", "tool"):
        r.issue(d.key, Message("format-prompt-end", turn=article(d.user_name), chosen=repr(replies[0]),
                               rejected=repr(replies[1])))
    elif preference and pending.unanswered(d.key):
        return False
    elif not preference and last != "assistant":
        r.issue(d.key, Message("format-conversation-end", turn=article(d.assistant_name), last=article(end)))
    return not r.issues
