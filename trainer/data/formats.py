"""Dataset formats: detection, per-row validation, and conversion to the canonical `Example`.

Every supported format (see `FORMATS`) converts to one shape:
- SFT: `Example.messages` is an optional leading system turn, then user/assistant turns that
  alternate and end with an assistant turn; `Turn.train` is False for assistant turns that carry
  no loss (ERNIEKit `label` 0).
- Preference: `Example.messages` is the prompt (optional system, alternating turns, ending with
  a user turn or tool results: a multi-turn row's history is in it) and `chosen`/`rejected` are the
  two candidate replies to it.

Validation reports every problem of a row as a `DataIssue` naming file, line, field and what was
expected; content is kept verbatim (including `<think>...</think>` reasoning). Rows with images
(trainer/data/vl_formats.py) give `Example.images`, checked files inside the dataset's folder, one
per `<image>` placeholder of the text.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Iterator

from ..messages import Message, plural
from .dialogue import MESSAGES, SHAREGPT, Dialect, dialogue
from .images import ImageContext
from .preference_rows import conversation_pair, dialogue_pair, pair_example, replies
from .readers import BadRecord, DataError, DataIssue, ReadError, Record, iter_records
from .rows import Example, Row, Turn, check_labels, describe, system_turn
from .tool_rows import tool_list
from .vl_formats import attach_images, convert_erniekit_vl

__all__ = [
    "FORMATS", "DETECT_ROWS", "FormatSpec", "Turn", "Example", "DataIssue", "DataError", "ReadError",
    "UnknownFormatError", "detect_format", "convert", "try_convert", "open_records", "iter_examples",
]

DETECT_ROWS = 100


@dataclass(frozen=True)
class FormatSpec:
    name: str
    kind: str  # 'sft' | 'preference'
    required: tuple[str, ...]
    optional: tuple[str, ...]
    description: str


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("erniekit", "sft", ("src", "tgt"), ("system", "label", "is_system"),
                   "ERNIEKit SFT: src/tgt are a prompt and its reply, or lists of them for a multi-turn "
                   "dialogue; label (one 0/1 per turn) switches training on a reply off."),
        FormatSpec("erniekit_dpo", "preference", ("src", "response", "sort"), ("system", "tgt", "is_system"),
                   "ERNIEKit DPO: src lists the prompts, tgt the replies between them (one fewer), "
                   "response the two candidate final replies and sort their ranks (larger is preferred)."),
        FormatSpec("alpaca", "sft", ("instruction", "output"), ("input", "system", "history"),
                   "Alpaca: instruction (plus optional input, joined with a newline) and output; "
                   "history holds earlier [question, answer] pairs."),
        FormatSpec("alpaca_dpo", "preference", ("instruction", "chosen", "rejected"),
                   ("input", "system", "history"),
                   "Alpaca preference: instruction (plus optional input) with a chosen and a rejected reply."),
        FormatSpec("messages", "sft", ("messages",), ("system", "label", "images", "tools"),
                   "OpenAI messages: a list of {role: system|user|assistant|tool, content}, alternating "
                   "user/assistant and ending with the assistant; content may be a list of text and "
                   "image_url parts, or images lists the files of the text's <image> placeholders; an "
                   "assistant may call the functions tools declares (tool_calls), each call answered by a "
                   "tool message (tool_call_id)."),
        FormatSpec("messages_dpo", "preference", ("messages", "chosen", "rejected"), ("system", "tools"),
                   "OpenAI messages preference: messages is the conversation before the reply being "
                   "compared (earlier turns included; it ends with a user turn or tool results); chosen "
                   "and rejected are that reply, as strings or {role: assistant, content}."),
        FormatSpec("chatml_dpo", "preference", ("messages", "chosen_response", "rejected_response"),
                   ("system", "tools"),
                   "paddleformers' and ERNIEKit's messages (chatml) preference: messages is the conversation "
                   "before the reply being compared (earlier turns included; it ends with a user turn or "
                   "tool results); chosen_response and rejected_response each list that one reply as "
                   "{role: assistant, content}."),
        FormatSpec("trl_dpo", "preference", ("chosen", "rejected"), ("prompt", "system", "tools"),
                   "Conversational preference (TRL; Hugging Face sets such as UltraFeedback): chosen and "
                   "rejected are whole conversations of {role, content} turns sharing every turn but the "
                   "last, the reply compared; or prompt (text or a list of turns) with chosen and "
                   "rejected replies."),
        FormatSpec("sharegpt", "sft", ("conversations",), ("system", "images", "tools"),
                   "ShareGPT: conversations is a list of {from: human|gpt|system, value}, alternating "
                   "human/gpt and ending with gpt; images lists the files of the <image> placeholders; a "
                   "function_call turn (JSON {name, arguments}) calls a function tools declares, and "
                   "observation turns give the results."),
        FormatSpec("sharegpt_dpo", "preference", ("conversations", "chosen", "rejected"), ("system", "tools"),
                   "ShareGPT preference (LLaMA-Factory): conversations is the conversation before the reply "
                   "being compared (earlier turns included), ending with human or an observation; chosen "
                   "and rejected are {from: gpt, value} replies."),
        FormatSpec("erniekit_vl", "sft", ("text_info",), ("image_info", "system"),
                   "ERNIEKit vision-language: text_info lists {text, tag} items, tag mask for the prompt "
                   "and no_mask for the reply; image_info lists {image_url, matched_text_index}, each "
                   "image going before the text its index names."),
    )
}


class UnknownFormatError(DataError):
    """Auto-detection found no supported format, or an unsupported format name was given."""


def _erniekit_system(r: Row, src: list[str], tgt: list[str], labels: list | None) -> list[Turn] | None:
    """ERNIEKit's `is_system: 1` takes src[0] as the system prompt and drops the first pair."""
    if r.row.get("is_system") != 1:
        return system_turn(r)
    if len(src) < 2:
        r.issue("src", Message("format-is-system"))
        return None
    system = src.pop(0)
    for rest in (tgt, labels):
        if rest:
            rest.pop(0)
    return [Turn("system", system)] if system.strip() else []


def _item_name(r: Row, key: str, i: int) -> str:
    return f"{key}[{i}]" if isinstance(r.row[key], list) else key


def _ernie_lists(r: Row, tgt_required: bool) -> tuple[list[str] | None, list[str] | None]:
    """src and tgt as lists (a single string is a one-item list), with their turns checked."""
    src = r.get("src")
    src = r.strings(src, "src") if src is not None else None
    tgt = r.get("tgt", required=tgt_required)
    tgt = r.strings(tgt, "tgt") if tgt is not None else ([] if not tgt_required else None)
    if src is not None:
        if not src:
            r.issue("src", Message("format-src-empty"))
        for i, text in enumerate(src):
            r.content(text, "user", _item_name(r, "src", i))
    for i, text in enumerate(tgt or []):
        r.content(text, "assistant", _item_name(r, "tgt", i))
    return (list(src) if src is not None else None), (list(tgt) if tgt is not None else None)


def _convert_erniekit(r: Row) -> Example | None:
    src, tgt = _ernie_lists(r, tgt_required=True)
    if src is None or tgt is None:
        return None
    if len(src) != len(tgt):
        r.issue("tgt", plural(len(tgt), "format-tgt-count-one", "format-tgt-count", n=len(tgt), src="'src'",
                              m=len(src)))
    labels = None
    if r.get("label", required=False) is not None:
        labels = check_labels(r, r.row["label"], len(src), "label", "turn")
    system = _erniekit_system(r, src, tgt, labels)
    if r.issues or system is None:
        return None
    turns = list(system)
    for i, (q, a) in enumerate(zip(src, tgt)):
        turns += [Turn("user", q), Turn("assistant", a, labels[i] if labels else True)]
    return Example(turns)


def _convert_erniekit_dpo(r: Row) -> Example | None:
    src, tgt = _ernie_lists(r, tgt_required=False)
    chosen, rejected = _erniekit_responses(r)
    if src is None or tgt is None:
        return None
    if src and len(tgt) != len(src) - 1:
        r.issue("tgt", plural(len(tgt), "format-dpo-tgt-count-one", "format-dpo-tgt-count", n=len(tgt),
                              src="'src'", m=len(src) - 1))
    system = _erniekit_system(r, src, tgt, None)
    if r.issues or system is None or chosen is None:
        return None
    turns = list(system)
    for i, q in enumerate(src):
        turns.append(Turn("user", q))
        if i < len(tgt):
            turns.append(Turn("assistant", tgt[i]))
    return pair_example(r, turns, chosen, rejected, "response")


def _erniekit_responses(r: Row) -> tuple[str | None, str | None]:
    response = r.get("response")
    sort = r.get("sort")
    replies: list[str | None] = []
    if response is not None:
        if not isinstance(response, list):
            r.issue("response", Message("format-response-not-list", value=describe(response)))
        elif len(response) != 2:
            r.issue("response", Message("format-response-count", n=len(response)))
        else:
            for i, item in enumerate(response):
                name = f"response[{i}]"
                if isinstance(item, list):
                    if len(item) != 1:
                        r.issue(name, Message("format-response-multi", n=len(item)))
                        replies.append(None)
                        continue
                    item, name = item[0], f"{name}[0]"
                text = r.string(item, name)
                r.content(text, "assistant", name)
                replies.append(text)
    if sort is not None:
        if not isinstance(sort, list):
            r.issue("sort", Message("format-sort-not-list", value=describe(sort)))
            sort = None
        elif isinstance(response, list) and len(sort) != len(response):
            r.issue("sort", Message("format-sort-mismatch", n=len(sort), response="'response'", m=len(response)))
            sort = None
        elif len(sort) != 2:
            r.issue("sort", Message("format-sort-count", n=len(sort)))
            sort = None
        else:
            bad = [i for i, rank in enumerate(sort) if isinstance(rank, bool) or not isinstance(rank, (int, float))]
            for i in bad:
                r.issue(f"sort[{i}]", Message("format-expected-number", value=describe(sort[i])))
            if bad:
                sort = None
            elif sort[0] == sort[1]:
                r.issue("sort", Message("format-sort-same", sort=str(sort)))
                sort = None
    if sort is None or len(replies) != 2 or None in replies:
        return None, None
    return (replies[0], replies[1]) if sort[0] > sort[1] else (replies[1], replies[0])


def _alpaca_prompt(r: Row) -> list[Turn] | None:
    turns = system_turn(r)
    history = r.get("history", required=False)
    if history is not None:
        if not isinstance(history, list):
            r.issue("history", Message("format-history-not-list", value=describe(history)))
        else:
            for i, pair in enumerate(history):
                if not (isinstance(pair, list) and len(pair) == 2):
                    r.issue(f"history[{i}]", Message("format-history-pair", value=describe(pair)))
                    continue
                q = r.string(pair[0], f"history[{i}][0]")
                a = r.string(pair[1], f"history[{i}][1]")
                r.content(q, "user", f"history[{i}][0]")
                r.content(a, "assistant", f"history[{i}][1]")
                turns += [Turn("user", q or ""), Turn("assistant", a or "")]
    instruction = r.get("instruction")
    instruction = r.string(instruction, "instruction") if instruction is not None else None
    extra = r.get("input", required=False)
    extra = r.string(extra, "input") if extra is not None else ""
    if instruction is None or extra is None:
        return None
    query = f"{instruction}\n{extra}" if extra else instruction
    r.content(query, "user", "instruction")
    return turns + [Turn("user", query)]


def _convert_alpaca(r: Row) -> Example | None:
    prompt = _alpaca_prompt(r)
    output = r.get("output")
    output = r.string(output, "output") if output is not None else None
    r.content(output, "assistant", "output")
    if r.issues or prompt is None or output is None:
        return None
    return Example(prompt + [Turn("assistant", output)])


def _convert_alpaca_dpo(r: Row) -> Example | None:
    prompt = _alpaca_prompt(r)
    chosen, rejected = replies(r)
    if prompt is None:
        return None
    return pair_example(r, prompt, chosen, rejected)


def _with_tools(d: Dialect, preference: bool):
    """A messages/sharegpt row and its `tools`: a conversation to learn, or a prompt to answer."""
    def convert(r: Row) -> Example | None:
        listed = tool_list(r)
        turns = dialogue(r, d, preference, listed[1] if listed is not None else None)
        if turns is None or listed is None:
            return None
        return Example(turns, tools=listed[0])
    return convert


def _convert_messages(r: Row) -> Example | None:
    example = _with_tools(MESSAGES, preference=False)(r)
    label = r.get("label", required=False)
    if example is None:
        return None
    if label is not None:
        turns = example.messages
        assistants = [i for i, t in enumerate(turns) if t.role == "assistant"]
        flags = check_labels(r, label, len(assistants), "label", "assistant-turn")
        if flags is None:
            return None
        for i, flag in zip(assistants, flags):
            turns[i] = replace(turns[i], train=flag)
    return example


def _erniekit_prompt(r: Row) -> Example | None:
    """An ERNIEKit row whose last src has no reply yet (tgt one shorter than src)."""
    src, tgt = _ernie_lists(r, tgt_required=False)
    # any other count is the SFT row's problem, which the caller reports
    if src is None or tgt is None or len(tgt) != len(src) - 1:
        return None
    system = _erniekit_system(r, src, tgt, None)
    if r.issues or system is None:
        return None
    turns = list(system)
    for q, a in zip(src, tgt):
        turns += [Turn("user", q), Turn("assistant", a)]
    return Example(turns + [Turn("user", src[-1])])


# A prompt-only row of an SFT format (what an evaluation predicts for without a reference): the
# conversation ends with the user's turn; preference formats already hold a prompt and a reply.
_PROMPT_CONVERTERS = {
    "erniekit": _erniekit_prompt,
    "alpaca": lambda r: None if (turns := _alpaca_prompt(r)) is None else Example(turns),
    "messages": _with_tools(MESSAGES, preference=True),
    "sharegpt": _with_tools(SHAREGPT, preference=True),
}

_CONVERTERS = {
    "erniekit": _convert_erniekit,
    "erniekit_dpo": _convert_erniekit_dpo,
    "alpaca": _convert_alpaca,
    "alpaca_dpo": _convert_alpaca_dpo,
    "messages": _convert_messages,
    "messages_dpo": dialogue_pair(MESSAGES),
    "chatml_dpo": dialogue_pair(MESSAGES, "chosen_response", "rejected_response"),
    "trl_dpo": conversation_pair,
    "sharegpt": _with_tools(SHAREGPT, preference=False),
    "sharegpt_dpo": dialogue_pair(SHAREGPT),
    "erniekit_vl": convert_erniekit_vl,
}


def _check_format_name(format: str) -> None:
    if format not in FORMATS:
        raise UnknownFormatError([DataIssue("", 0, "", Message("format-unknown-name", format=repr(format),
                                                               formats=", ".join(FORMATS)))])


def try_convert(row: object, format: str, file: str = "", line: int = 0, images: ImageContext | None = None,
                prompt_only: bool = False) -> tuple[Example | None, list[DataIssue]]:
    """Check one row against `format`: (Example, []) when valid, else (None, its issues). Its
    images are checked against `images` (by default: inside the file's folder, any area).
    `prompt_only`: the row is a prompt without its reply (formats without such rows: None)."""
    _check_format_name(format)
    if prompt_only and format not in _PROMPT_CONVERTERS:
        return None, [DataIssue(file, line, "", Message("format-invalid-row"))]
    if isinstance(row, BadRecord):
        return None, [DataIssue(file, line, "", row.message)]
    if not isinstance(row, dict):
        kind = describe(row)
        return None, [DataIssue(file, line, "", Message("format-not-object", format=repr(format), value=kind))]
    spec = FORMATS[format]
    r = Row(row, file, line, images or ImageContext.for_file(file))
    example = (_PROMPT_CONVERTERS if prompt_only else _CONVERTERS)[format](r)
    if example is not None and not r.issues:
        attach_images(r, example, spec)
    if r.issues or example is None:
        return None, r.issues or [DataIssue(file, line, "", Message("format-invalid-row"))]
    example.line = line
    example.source = file
    return example, []


def convert(row: object, format: str, file: str = "", line: int = 0,
            images: ImageContext | None = None) -> Example:
    """Convert one row, raising `DataError` with all of the row's issues when it is invalid."""
    example, issues = try_convert(row, format, file, line, images)
    if example is None:
        raise DataError(issues)
    return example


def _detect_row(row: object) -> str | None:
    if not isinstance(row, dict):
        return None
    keys = row.keys()
    preference = "chosen" in keys or "rejected" in keys
    if "text_info" in keys or "image_info" in keys or "video_info" in keys:
        return "erniekit_vl"
    chosen = row.get("chosen")
    if (isinstance(chosen, list) and len(chosen) > 1) or \
            ("prompt" in keys and preference and not keys & {"src", "instruction", "conversations", "messages"}):
        return "trl_dpo"
    if "src" in keys:
        return "erniekit_dpo" if "response" in keys or "sort" in keys else "erniekit"
    if "instruction" in keys:
        return "alpaca_dpo" if preference else "alpaca"
    if "conversations" in keys:
        return "sharegpt_dpo" if preference else "sharegpt"
    if "messages" in keys:
        if "chosen_response" in keys or "rejected_response" in keys:
            return "chatml_dpo"
        return "messages_dpo" if preference else "messages"
    return None


def _supported_lines() -> list[Message]:
    return [Message("format-line", name=spec.name, kind=Message(f"kind-{spec.kind}"), required=", ".join(spec.required),
                    optional=Message("format-optional", fields=", ".join(spec.optional)) if spec.optional else "")
            for spec in FORMATS.values()]


def detect_format(rows, file: str = "", line: int = 0) -> str:
    """The format of a file from its first rows (up to DETECT_ROWS): the one most rows match;
    rows that are not objects are not counted. Raises `UnknownFormatError` when none matches."""
    votes: Counter = Counter()
    first = first_any = None
    for row in islice(rows, DETECT_ROWS):
        first_any = row if first_any is None else first_any
        if first is None and isinstance(row, dict):
            first = row
        name = _detect_row(row)
        if name:
            votes[name] += 1
    if votes:
        order = list(FORMATS)
        return max(votes, key=lambda name: (votes[name], -order.index(name)))
    if first is None:
        seen = Message("format-detect-no-object", value=describe(first_any))
    else:
        seen = Message("format-detect-fields", fields=", ".join(map(str, first)) or Message("value-none"))
    message = Message("format-unknown", seen=seen, formats=_supported_lines())
    raise UnknownFormatError([DataIssue(file, line, "", message)])


def open_records(path: str | os.PathLike, format: str = "auto") -> tuple[str, Iterator[Record]]:
    """The file's format (detected when "auto") and an iterator over all its records."""
    path = os.fspath(path)
    records = iter_records(path)
    if format != "auto":
        _check_format_name(format)
        return format, records
    head = list(islice(records, DETECT_ROWS))
    try:
        name = detect_format((record.row for record in head), file=path, line=head[0].line if head else 0)
    except UnknownFormatError:
        unreadable = [DataIssue(path, line, "", row.message) for line, row in head if isinstance(row, BadRecord)]
        if unreadable and not any(isinstance(row, dict) for _, row in head):
            raise UnknownFormatError(unreadable, Message("format-cannot-detect", path=path)) from None
        raise
    return name, chain(head, records)


def iter_examples(path: str | os.PathLike, format: str = "auto", skip_invalid: bool = False,
                  images: ImageContext | None = None) -> Iterator[Example]:
    """Every valid row of the file as an `Example`. An invalid row raises `DataError` naming its
    issues, unless `skip_invalid`, which skips it silently (see validate.py for counts)."""
    path = os.fspath(path)
    name, records = open_records(path, format)
    images = images or ImageContext.for_file(path)
    for line, row in records:
        example, issues = try_convert(row, name, path, line, images)
        if example is not None:
            yield example
        elif not skip_invalid:
            raise DataError(issues)
