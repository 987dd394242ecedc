"""Preference rows: the two replies compared after a conversation, in each shape they come in.

The replies are text: `chosen`/`rejected` (or paddleformers' `chosen_response`/`rejected_response`)
as strings, turn objects or one-item lists of them; the conversation before them is a prompt that
ends with a user turn or tool results (trainer/data/dialogue.py). `conversation_pair` reads the
conversational shape TRL and the Hugging Face preference sets use: `chosen` and `rejected` as whole
conversations that share every turn but their last, or a `prompt` (text or turns) with one reply
each.
"""

from __future__ import annotations

from dataclasses import replace

from ..messages import Message
from .dialogue import MESSAGES, Dialect, dialogue
from .rows import Example, Row, Turn, describe, system_turn
from .tool_rows import tool_list


def pair_example(r: Row, prompt: list[Turn], chosen: str | None, rejected: str | None,
                 field_name: str = "rejected") -> Example | None:
    """The example of a prompt and its two replies, or None with the row's issues."""
    if chosen is not None and rejected is not None and chosen == rejected:
        r.issue(field_name, Message("format-identical"))
    if r.issues or chosen is None or rejected is None:
        return None
    return Example(prompt, chosen, rejected)


def replies(r: Row, chosen: str = "chosen", rejected: str = "rejected") -> tuple[str | None, str | None]:
    """The two replies of a preference row, in the fields named `chosen` and `rejected`."""
    return _reply(r, chosen, (chosen, rejected)), _reply(r, rejected, (chosen, rejected))


def _reply(r: Row, name: str, pair: tuple[str, str]) -> str | None:
    """A preference reply in field `name`, one of the `pair` of reply fields: a string, a turn
    object ({role, content} or {from, value}), or a list holding one turn object."""
    value = r.row.get(name)
    if value is None:
        other = pair[1] if name == pair[0] else pair[0]
        r.issue(name, Message("format-reply-missing", chosen=repr(pair[0]), rejected=repr(pair[1]))
                if r.row.get(other) is not None else Message("row-missing"))
        return None
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if len(value) != 1:
            r.issue(name, Message("format-response-multi", n=len(value)))
            return None
        value, name = value[0], f"{name}[0]"
    if isinstance(value, dict):
        role_key, content_key = ("from", "value") if "from" in value or "value" in value else ("role", "content")
        role = value.get(role_key)
        if role is not None and role not in ("assistant", "gpt"):
            r.issue(f"{name}.{role_key}", Message("format-reply-role", assistant="'assistant'", gpt="'gpt'",
                                                  value=describe(role)))
        if value.get("tool_calls"):
            r.issue(f"{name}.tool_calls", Message("format-reply-calls"))
            return None
        if content_key not in value:
            r.issue(f"{name}.{content_key}", Message("row-missing"))
            return None
        value, name = value[content_key], f"{name}.{content_key}"
    elif not isinstance(value, str):
        r.issue(name, Message("format-reply-type", shape="{role, content}", value=describe(value)))
        return None
    text = r.string(value, name)
    r.content(text, "assistant", name)
    return text


def dialogue_pair(d: Dialect, chosen: str = "chosen", rejected: str = "rejected"):
    """A preference row of a list-of-turns format: the conversation before the compared reply (its
    history and `tools` included) and the two replies, in fields `chosen` and `rejected`."""
    def convert(r: Row) -> Example | None:
        listed = tool_list(r)
        prompt = dialogue(r, d, preference=True, declared=listed[1] if listed is not None else None,
                          replies=(chosen, rejected))
        chosen_text, rejected_text = replies(r, chosen, rejected)
        if prompt is None or listed is None:
            return None
        example = pair_example(r, prompt, chosen_text, rejected_text, rejected)
        return example if example is None else replace(example, tools=listed[0])
    return convert


def conversation_pair(r: Row) -> Example | None:
    """A TRL-style row: `chosen` and `rejected` as whole conversations sharing all but their last
    turn (a `prompt` beside them, as Hugging Face sets keep one, is not read), or a `prompt` (text,
    or a list of turns) with one reply each."""
    listed = tool_list(r)
    declared = listed[1] if listed is not None else None
    chosen = r.row.get("chosen")
    whole = r.row.get("prompt") is None or (isinstance(chosen, list) and len(chosen) > 1)
    example = _shared_prompt(r, declared) if whole else _given_prompt(r, declared)
    return None if example is None or listed is None else replace(example, tools=listed[0])


def _shared_prompt(r: Row, declared: frozenset[str] | None) -> Example | None:
    chosen, rejected = (dialogue(r, replace(MESSAGES, key=key), preference=False, declared=declared)
                        for key in ("chosen", "rejected"))
    if chosen is None or rejected is None:
        return None
    system = len(system_turn(r))  # a top-level system turn heads both, not their lists
    if len(chosen) != len(rejected):
        r.issue("rejected", Message("format-pair-lengths", n=len(rejected) - system, chosen="'chosen'",
                                    m=len(chosen) - system))
        return None
    if chosen[:-1] != rejected[:-1]:
        differ = next(i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b)
        r.issue(f"rejected[{differ - system}]",
                Message("format-pair-differ", chosen="'chosen'", turn=differ - system))
        return None
    for key, reply in (("chosen", chosen[-1]), ("rejected", rejected[-1])):
        if reply.tool_calls:
            r.issue(f"{key}[{len(chosen) - 1 - system}].tool_calls", Message("format-reply-calls"))
    return pair_example(r, chosen[:-1], chosen[-1].content, rejected[-1].content)


def _given_prompt(r: Row, declared: frozenset[str] | None) -> Example | None:
    value = r.row.get("prompt")
    if isinstance(value, str):
        text = r.string(value, "prompt")
        r.content(text, "user", "prompt")
        prompt = None if text is None else system_turn(r) + [Turn("user", text)]
    else:
        prompt = dialogue(r, replace(MESSAGES, key="prompt"), preference=True, declared=declared)
    chosen, rejected = replies(r)
    return None if prompt is None else pair_example(r, prompt, chosen, rejected)
