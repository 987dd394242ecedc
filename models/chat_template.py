"""ERNIE 4.5's chat templates, and splitting a rendered conversation into trainable segments.

Training and chat must format a conversation identically, so both go through the tokenizer's
`chat_template`: the one shipped with the checkpoint, or one of `TEMPLATES` chosen by name (the run
config's `model.template`; a job's output ships the template it was trained with).
`conversation_segments` renders the whole conversation once and finds each assistant reply in it,
which tells apart the text the model must learn to produce (assistant replies and their end marker)
from the text it only reads (system, user turns, role headers, generation prompts), for any
template, including ones that do not render a conversation incrementally. A conversation with
tools is given to a template that renders them, or folded into plain turns in the studio's layout
(models/tool_calls.py); an assistant message's calls are learned with its text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from models.tool_calls import ToolCall, fold_tools, uses_tools

# `<|begin_of_sentence|>{system}\nUser: {q}\nAssistant: {a}<|end_of_sentence|>` — the format of
# ERNIE 4.5's non-thinking chat template, used by the built-in models and as the fallback for a
# checkpoint that ships none.
ERNIE_CHAT_TEMPLATE = (
    "{%- if not add_generation_prompt is defined -%}{%- set add_generation_prompt = true -%}{%- endif -%}"
    "{{- '<|begin_of_sentence|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- message['content'] + '\n' -}}"
    "{%- elif message['role'] == 'user' -%}{{- 'User: ' + message['content'] + '\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'Assistant: ' + message['content'] + '<|end_of_sentence|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)


# ERNIE 4.5's thinking format (paddleformers' `ernie` template, used by ERNIE-4.5-21B-A3B-Thinking):
# chatml-style turns, reasoning in `<think>` and the answer in `<response>`. An assistant message
# holding `<think>...</think>` renders its reasoning; one without renders an empty one. With
# `enable_thinking=False` the generation prompt closes an empty reasoning block itself.
ERNIE_THINKING_CHAT_TEMPLATE = (
    "{%- if not add_generation_prompt is defined -%}{%- set add_generation_prompt = true -%}{%- endif -%}"
    "{%- if enable_thinking is not defined -%}{%- set enable_thinking = true -%}{%- endif -%}"
    "{{- '<|im_start|>system\n' -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- '<system_setting>\n' + messages[0]['content'] + '\n</system_setting>\n\n' -}}"
    "{%- endif -%}"
    "{{- '<global_setting>\nthink_mode=True\n</global_setting><|im_end|>\n\n' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '<|im_start|>user\n' + message['content'] + '<|im_end|>\n\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}{%- set reasoning = '' -%}"
    "{%- if '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\n') -%}"
    "{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>assistant\n<think>\n' + reasoning + '\n</think>\n<response>\n' + content.strip('\n')"
    " + '\n</response>\n<|im_end|>\n\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}"
    "{%- if not enable_thinking -%}{{- '<think>\n\n</think>\n' -}}{%- endif -%}"
    "{%- endif -%}"
)

# `model.template` names (ERNIEKit's); "auto" keeps the checkpoint's own.
TEMPLATES = {"ernie": ERNIE_THINKING_CHAT_TEMPLATE, "ernie_nothink": ERNIE_CHAT_TEMPLATE}
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_MARKER = re.compile(r"<\|[A-Za-z_]+\|>|</s>")


def use_template(tokenizer, name: str) -> None:
    """Give `tokenizer` the named chat template ("auto": keep the checkpoint's own)."""
    if name != "auto":
        tokenizer.chat_template = TEMPLATES[name]


def ship_template(tokenizer_config: Path, name: str) -> None:
    """Write the named template into a checkpoint's tokenizer_config.json, so the checkpoint chats
    the way it was trained."""
    config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    config["chat_template"] = TEMPLATES[name]
    tokenizer_config.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")


def supports_thinking(tokenizer) -> bool:
    return THINK_OPEN in (tokenizer.chat_template or "")


def end_of_turn_markers(tokenizer) -> list[str]:
    """The special markers the template writes after an assistant reply (`<|end_of_sentence|>`,
    `<|im_end|>`...): generation stops at any of them even where they are not single tokens."""
    sentinel = "\x00reply\x00"
    rendered = render(tokenizer, [{"role": "user", "content": "q"}, {"role": "assistant", "content": sentinel}],
                      add_generation_prompt=False)
    return sorted(set(_MARKER.findall(rendered.split(sentinel, 1)[1])))


class TemplateError(ValueError):
    """The chat template renders a conversation in a way that cannot be split into turns."""


def render(tokenizer, messages: list[dict], add_generation_prompt: bool, tools: list | None = None,
           **template_kwargs) -> str:
    """The template's text of a conversation. Tools (`tools`, assistant `tool_calls`, `tool`
    messages) go to a template that renders them; for one that does not, they are folded into
    plain turns in the studio's layout (models/tool_calls.py)."""
    if uses_tools(messages, tools):
        if renders_tools(tokenizer):
            template_kwargs["tools"] = tools or None
        else:
            messages = fold_tools(messages, tools)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **template_kwargs)


_PROBE_NAME, _PROBE_RESULT = "studio_probe_function", "studio probe result"
_renders_tools: dict[str, bool] = {}


def renders_tools(tokenizer) -> bool:
    """Whether the chat template writes a tool list, an assistant's tool calls and tool results
    itself (ERNIE-4.5-21B-A3B-Thinking's does): told by rendering a probe conversation, once per
    template."""
    template = str(tokenizer.chat_template or "")
    if template not in _renders_tools:
        call = ToolCall(_PROBE_NAME, "{}", "probe-call")
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call.to_openai()]},
                 {"role": "tool", "tool_call_id": "probe-call", "content": _PROBE_RESULT}]
        listed = [{"type": "function", "function": {"name": _PROBE_NAME + "listed"}}]
        try:
            text = tokenizer.apply_chat_template(probe, tools=listed, tokenize=False, add_generation_prompt=False)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError):
            text = ""  # a template that trips over a tool message or a call knows no tools
        _renders_tools[template] = all(part in text for part in (_PROBE_NAME + "listed", _PROBE_NAME, _PROBE_RESULT))
    return _renders_tools[template]


# Stands in for one assistant reply, to find where the template writes that reply. It keeps a
# reply's `<think>` block when the reply has one, because templates render reasoning differently.
_SENTINEL = "\x00reply\x00"


def _stand_in(content: str) -> str:
    return f"{THINK_OPEN}\n{_SENTINEL}\n{THINK_CLOSE}\n{_SENTINEL}" if THINK_CLOSE in content else _SENTINEL


def _swapped(message: dict) -> dict:
    """The assistant message with a stand-in for all it says: its text and its tool calls."""
    return {"role": "assistant", "content": _stand_in(message.get("content") or "")}


def _common_prefix(a: str, b: str) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _end_marker(tokenizer, **template_kwargs) -> str | None:
    """The first special marker the template writes after an assistant reply: where a reply ends."""
    rendered = render(tokenizer, [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}],
                      add_generation_prompt=False, **template_kwargs)
    found = _MARKER.search(rendered.split(_SENTINEL, 1)[-1])
    return found.group() if found else None


def _reply_span(tokenizer, messages: list[dict], i: int, full: str, generation: bool, after: int,
                marker: str | None, **template_kwargs) -> tuple[int, int]:
    """Where assistant message i's learned text lies in `full`, the rendering of all `messages`.

    The reply is found by rendering the conversation again with a stand-in for it: the text that
    differs is the reply. Where the template renders incrementally, the span starts right after
    the generation prompt (so a thinking template's `<think>` opening stays in the prompt and what
    follows it is learned); it ends with the template's end-of-turn marker, and anything the
    template appends after that (a generation prompt some templates always write) is not learned.
    """
    swapped = [_swapped(m) if j == i else m for j, m in enumerate(messages)]
    other = render(tokenizer, swapped, add_generation_prompt=generation, **template_kwargs)
    begin = _common_prefix(full, other)
    common_tail = _common_prefix(full[begin:][::-1], other[begin:][::-1])
    differs_to = len(full) - common_tail
    if full == other or begin < after:
        raise TemplateError(f"the chat template does not write assistant turn {i}'s reply where the conversation "
                            "shows it; cannot tell which tokens the model must learn")
    prompt = render(tokenizer, messages[:i], add_generation_prompt=True, **template_kwargs)
    start = len(prompt) if full.startswith(prompt) and after <= len(prompt) <= begin else begin
    end = differs_to
    if marker is not None:
        at = full.find(marker, max(start, differs_to - len(marker) + 1))
        if at >= 0:
            end = at + len(marker)
    return start, max(end, start)


def conversation_segments(tokenizer, messages: list[dict], trainable: list[bool] | None = None,
                          **template_kwargs):
    """Split the conversation, as its chat template renders it whole, into `(text, is_trained)` pieces.

    The pieces joined are exactly the template's rendering (with the generation prompt when the
    conversation ends with a user turn), so a prompt is what the checkpoint's own template gives,
    even for templates that render earlier turns differently once a later one exists (ERNIE's
    thinking template keeps reasoning only after the last question). `messages` are `{"role",
    "content"}` dicts; `trainable[i]` says whether assistant message i is learned (ERNIEKit's
    per-turn `label`); by default every assistant turn is. `template_kwargs` reach the template
    (`enable_thinking`, `tools`).
    """
    generation = bool(messages) and messages[-1]["role"] != "assistant"
    full = render(tokenizer, messages, add_generation_prompt=generation, **template_kwargs)
    marker = _end_marker(tokenizer, **template_kwargs)
    segments: list[tuple[str, bool]] = []
    done = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start, end = _reply_span(tokenizer, messages, i, full, generation, done, marker, **template_kwargs)
        segments.append((full[done:start], False))
        segments.append((full[start:end], True if trainable is None else trainable[i]))
        done = end
    segments.append((full[done:], False))
    return [(text, trained) for text, trained in segments if text]


def encode_conversation(tokenizer, messages: list[dict], trainable: list[bool] | None = None,
                        **template_kwargs):
    """Token ids of a conversation and, per token, whether it is learned.

    Each segment is tokenised on its own, so a prompt (a conversation ending with a user turn) is
    encoded exactly as the same prefix was during training.
    """
    ids: list[int] = []
    learned: list[bool] = []
    for text, trained in conversation_segments(tokenizer, messages, trainable, **template_kwargs):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        learned.extend([trained] * len(piece))
    return ids, learned
