"""Turns canonical SFT and preference examples into model features with the model's own chat template.

A conversation is rendered by `models.chat_template.conversation_segments`; only assistant replies
(and their end-of-turn marker) are learned, every other token is masked with -100, and ERNIEKit's
per-turn `label` switches single assistant turns off. Labels are already shifted: `labels[t]` is
the token after `input_ids[t]`, as paddleformers' ERNIE loss expects.

Truncation policy for a conversation longer than `max_seq_len` tokens:
- `drop_oldest_turns`: drop the oldest user/assistant exchanges (the system prompt stays) until it
  fits; if the last exchange alone is still too long, cut it at the end as `truncate_end` does;
- `truncate_end`: cut the token sequence at `max_seq_len`;
- `skip_row`: leave the row out.
A row left with no learned token is skipped and counted.

A preference example becomes one packed sequence, prompt + chosen + rejected, as paddleformers'
DPO trainer takes it (`encode_dpo`). A prompt over `max_prompt_len` is cut by the same policy
(`drop_oldest_turns` then keeps its last `max_prompt_len` tokens, as `truncate_end` does at once;
`skip_row` leaves the row out), and replies that do not fit in `max_seq_len` beside the prompt are
shortened, the longer first, unless the policy is `skip_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.chat_template import TemplateError, encode_conversation

IGNORE_INDEX = -100
TRUNCATION_POLICIES = ("drop_oldest_turns", "truncate_end", "skip_row")


class TokenizationError(ValueError):
    """No usable training row is left after tokenisation and truncation."""


@dataclass
class EncodeReport:
    rows: int = 0
    encoded: int = 0
    truncated: int = 0
    skipped: int = 0
    tokens: int = 0
    shortest: int = 0
    skipped_lines: list = field(default_factory=list)


def conversation_of(example):
    return [t.to_message() for t in example.messages], [t.train for t in example.messages]


def token_length(tokenizer):
    """A callable Example -> number of tokens, for dataset statistics."""

    def length(example) -> int:
        messages, trainable = conversation_of(example)
        return len(encode_conversation(tokenizer, messages, trainable, **example.template_kwargs)[0])

    return length


def drop_oldest_exchange(messages, trainable):
    start = 1 if messages and messages[0]["role"] == "system" else 0
    user_turns = [i for i in range(start, len(messages)) if messages[i]["role"] == "user"]
    if len(user_turns) < 2:
        return None
    cut = user_turns[1]
    return messages[:start] + messages[cut:], trainable[:start] + trainable[cut:]


def _encode_within(tokenizer, example, limit: int, truncation: str):
    """`(messages, ids, learned, truncated)` of the example's conversation, its oldest exchanges
    dropped while it is over `limit` tokens under `drop_oldest_turns` (the caller cuts whatever is
    still too long); None when `skip_row` leaves it out."""
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"data.truncation: expected one of {', '.join(TRUNCATION_POLICIES)}; got {truncation!r}")
    messages, trainable = conversation_of(example)
    ids, learned = encode_conversation(tokenizer, messages, trainable, **example.template_kwargs)
    if len(ids) <= limit:
        return messages, ids, learned, False
    if truncation == "skip_row":
        return None
    while truncation == "drop_oldest_turns" and len(ids) > limit:
        shorter = drop_oldest_exchange(messages, trainable)
        if shorter is None:
            break
        messages, trainable = shorter
        ids, learned = encode_conversation(tokenizer, messages, trainable, **example.template_kwargs)
    return messages, ids, learned, True


def encode_sft(tokenizer, example, max_seq_len: int, truncation: str = "drop_oldest_turns"):
    """Features `{"input_ids", "labels"}` for one example, plus whether it was truncated; None if skipped."""
    fitted = _encode_within(tokenizer, example, max_seq_len, truncation)
    if fitted is None:
        return None, False
    _, ids, learned, truncated = fitted
    ids, learned = ids[:max_seq_len], learned[:max_seq_len]
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids[1:], learned[1:])]
    if all(label == IGNORE_INDEX for label in labels):
        return None, truncated
    return {"input_ids": ids[:-1], "labels": labels}, truncated


def _located(encode, tokenizer, example, *args, errors: tuple = (TemplateError,)):
    """`encode(tokenizer, example, *args)`; a row it cannot encode (a template that cannot render
    it, or one of `errors`) named by its file and line."""
    try:
        return encode(tokenizer, example, *args)
    except errors as exc:
        raise TokenizationError(f"{example.source}:{example.line}: {exc}") from None


def encode_sft_examples(tokenizer, examples, max_seq_len: int, truncation: str, what: str = "data.train",
                        encode=encode_sft, length=None, errors: tuple = (TemplateError,), hint: str = ""):
    """Encode every example with `encode(tokenizer, example, max_seq_len, truncation)` (a VL model
    passes its own, with `length`, the untruncated length of a row, and the `errors` its rows may
    raise); raises TokenizationError when none is usable, `hint` added to its advice."""
    length = length or token_length(tokenizer)
    features, report = [], EncodeReport()
    for example in examples:
        report.rows += 1
        encoded, truncated = _located(encode, tokenizer, example, max_seq_len, truncation, errors=errors)
        report.truncated += int(truncated)
        if encoded is None:
            report.skipped += 1
            report.skipped_lines.append(f"{example.source}:{example.line}")
            shortest = length(example)
            report.shortest = shortest if not report.shortest else min(report.shortest, shortest)
            continue
        report.encoded += 1
        report.tokens += len(encoded["input_ids"]) + 1
        features.append(encoded)
    if report.rows and not features:
        raise TokenizationError(
            f"{what}: no usable row: data.max_seq_len={max_seq_len} is too small for every one of the "
            f"{report.rows} rows with data.truncation={truncation} (the shortest skipped row has "
            f"{report.shortest} tokens); raise data.max_seq_len{hint}"
        )
    return features, report


@dataclass
class PreferenceFeatures:
    """One packed DPO sequence: `prompt + chosen[:-1] + prompt[-1:] + rejected[:-1]`.

    The rejected reply restarts at the prompt's last position and, through the attention mask
    (`attention_mask()`), sees the prompt but not the chosen reply; `response_labels` are the
    shifted targets of both replies and -100 on the prompt.
    """

    prompt_len: int
    chosen_len: int
    rejected_len: int
    input_ids: list[int]
    position_ids: list[int]
    response_labels: list[int]

    def attention_mask(self):
        import numpy as np

        size = len(self.input_ids)
        mask = np.tri(size, size, dtype=bool)
        chosen_end = self.prompt_len + self.chosen_len - 1
        mask[chosen_end:, self.prompt_len - 1:chosen_end] = False
        return mask


def _reply_ids(tokenizer, messages: list[dict], prompt_ids: list[int], reply: str, template_kwargs: dict
               ) -> list[int]:
    """The learned tokens of `reply` after the prompt: not what a template writes after the reply's
    end marker (such as a generation prompt it always appends)."""
    ids, learned = encode_conversation(tokenizer, messages + [{"role": "assistant", "content": reply}],
                                       **template_kwargs)
    if ids[:len(prompt_ids)] != prompt_ids:
        raise TemplateError("the chat template renders a reply in a way that changes its prompt")
    end = max((i + 1 for i in range(len(prompt_ids), len(ids)) if learned[i]), default=len(prompt_ids))
    return ids[len(prompt_ids):end]


def _fit_replies(chosen: list[int], rejected: list[int], room: int) -> tuple[list[int], list[int]]:
    """Shorten the longer reply first until both fit in `room` tokens together."""
    keep_chosen, keep_rejected = len(chosen), len(rejected)
    while keep_chosen + keep_rejected > room:
        if keep_chosen >= keep_rejected:
            keep_chosen -= 1
        else:
            keep_rejected -= 1
    return chosen[:keep_chosen], rejected[:keep_rejected]


def encode_dpo(tokenizer, example, max_seq_len: int, max_prompt_len: int,
               truncation: str = "drop_oldest_turns") -> tuple[PreferenceFeatures | None, bool]:
    """The packed sequence of a preference example, and whether it was truncated; None if skipped."""
    fitted = _encode_within(tokenizer, example, max_prompt_len, truncation)
    if fitted is None:
        return None, False
    messages, prompt_ids, _, truncated = fitted
    chosen = _reply_ids(tokenizer, messages, prompt_ids, example.chosen, example.template_kwargs)
    rejected = _reply_ids(tokenizer, messages, prompt_ids, example.rejected, example.template_kwargs)
    prompt_ids = prompt_ids[-max_prompt_len:]
    room = max_seq_len + 1 - len(prompt_ids)
    if len(chosen) + len(rejected) > room:
        if truncation == "skip_row" or room < 2:
            return None, truncated
        truncated = True
        chosen, rejected = _fit_replies(chosen, rejected, room)
    if not chosen or not rejected:
        return None, truncated
    p, c, r = len(prompt_ids), len(chosen), len(rejected)
    return PreferenceFeatures(
        prompt_len=p, chosen_len=c, rejected_len=r,
        input_ids=prompt_ids + chosen[:-1] + prompt_ids[-1:] + rejected[:-1],
        position_ids=list(range(p + c - 1)) + [p - 1] + list(range(p, p + r - 1)),
        response_labels=[IGNORE_INDEX] * (p - 1) + chosen + rejected,
    ), truncated


def encode_dpo_examples(tokenizer, examples, max_seq_len: int, max_prompt_len: int, truncation: str,
                        what: str = "data.train"):
    """Encode every preference example; raises TokenizationError when none is usable."""
    features, report = [], EncodeReport()
    for example in examples:
        report.rows += 1
        encoded, truncated = _located(encode_dpo, tokenizer, example, max_seq_len, max_prompt_len, truncation)
        report.truncated += int(truncated)
        if encoded is None:
            report.skipped += 1
            report.skipped_lines.append(f"{example.source}:{example.line}")
            continue
        report.encoded += 1
        report.tokens += len(encoded.input_ids) + 1
        features.append(encoded)
    if report.rows and not features:
        raise TokenizationError(
            f"{what}: no usable preference pair: with data.max_seq_len={max_seq_len}, "
            f"data.max_prompt_len={max_prompt_len} and data.truncation={truncation} every one of the "
            f"{report.rows} rows was skipped; raise data.max_seq_len or data.max_prompt_len"
        )
    return features, report
