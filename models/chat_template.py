"""The ERNIE 4.5 chat template, and splitting a rendered conversation into trainable segments.

Training and chat must format a conversation identically, so both go through the tokenizer's own
`chat_template` (the one shipped with the checkpoint). `conversation_segments` renders growing
prefixes of a conversation with that template and cuts the text at every assistant turn, which
tells apart the text the model must learn to produce (assistant replies and their end marker) from
the text it only reads (system, user turns, role headers), for any template.
"""

from __future__ import annotations

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


class TemplateError(ValueError):
    """The chat template renders a conversation in a way that cannot be split into turns."""


def render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def conversation_segments(tokenizer, messages: list[dict], trainable: list[bool] | None = None):
    """Split the rendered conversation into `(text, is_trained)` pieces.

    `messages` are `{"role", "content"}` dicts; `trainable[i]` says whether assistant message i is
    learned (ERNIEKit's per-turn `label`); by default every assistant turn is.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prompt.startswith(done) or not through.startswith(prompt):
            raise TemplateError(
                "the chat template does not render conversations incrementally (turn "
                f"{i} changes earlier text); cannot tell assistant tokens apart"
            )
        segments.append((prompt[len(done):], False))
        segments.append((through[len(prompt):], True if trainable is None else trainable[i]))
        done = through
    if messages and messages[-1]["role"] != "assistant":
        segments.append((render(tokenizer, messages, add_generation_prompt=True)[len(done):], False))
    return [(text, trained) for text, trained in segments if text]


def encode_conversation(tokenizer, messages: list[dict], trainable: list[bool] | None = None):
    """Token ids of a conversation and, per token, whether it is learned.

    Each segment is tokenised on its own, so a prompt (a conversation ending with a user turn) is
    encoded exactly as the same prefix was during training.
    """
    ids: list[int] = []
    learned: list[bool] = []
    for text, trained in conversation_segments(tokenizer, messages, trainable):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        learned.extend([trained] * len(piece))
    return ids, learned
