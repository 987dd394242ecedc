"""Canonical SFT examples (text and images) as features for an ERNIE 4.5 VL model.

Each example is encoded by `models.vl_inputs.encode_vl_conversation`; a text-only row is encoded
the same way and simply has no image. Features are shifted as for the text models (`labels[t]` is
the token after `input_ids[t]`); `token_type_ids` keeps one entry more than `input_ids`, the type of
each label too, which is how paddleformers' VL model takes them.

Truncation: an image is never cut. A row over `max_seq_len` loses its oldest exchanges (and their
images) under `drop_oldest_turns`; whatever is still too long, and `truncate_end`, is cut at the end
only where the cut falls after the row's last image, and skipped otherwise; `skip_row` skips it.
"""

from __future__ import annotations

import numpy as np

from models.chat_template import TemplateError
from models.image_facts import IMAGE_PLACEHOLDER
from models.vl_inputs import ImageCountError, encode_vl_conversation
from trainer.data.tokenize import (IGNORE_INDEX, TRUNCATION_POLICIES, conversation_of, drop_oldest_exchange,
                                   encode_sft_examples)


def _encode(tokenizer, processor, messages, trainable, images):
    return encode_vl_conversation(tokenizer, processor, messages, images, trainable)


def _dropping_oldest(tokenizer, processor, messages, trainable, images, limit):
    """The encoding after dropping the oldest exchanges (and the images they hold) while it is over
    `limit` and an exchange can go."""
    encoded = _encode(tokenizer, processor, messages, trainable, images)
    while len(encoded.input_ids) > limit:
        shorter = drop_oldest_exchange(messages, trainable)
        if shorter is None:
            break
        dropped = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages) - \
            sum(m["content"].count(IMAGE_PLACEHOLDER) for m in shorter[0])
        (messages, trainable), images = shorter, images[dropped:]
        encoded = _encode(tokenizer, processor, messages, trainable, images)
    return encoded


def encode_vl_sft(tokenizer, processor, example, max_seq_len: int, truncation: str = "drop_oldest_turns"):
    """(features, truncated) of one example; features None when the row is skipped."""
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"data.truncation: expected one of {', '.join(TRUNCATION_POLICIES)}; got {truncation!r}")
    messages, trainable = conversation_of(example)
    images = list(example.images)
    if truncation == "drop_oldest_turns":
        encoded = _dropping_oldest(tokenizer, processor, messages, trainable, images, max_seq_len + 1)
    else:
        encoded = _encode(tokenizer, processor, messages, trainable, images)
    n = len(encoded.input_ids)
    truncated = n > max_seq_len + 1 or len(encoded.pixels) < len(example.images)
    if n > max_seq_len + 1:
        last_image_token = max((i for i, t in enumerate(encoded.token_type_ids) if t), default=-1)
        if truncation == "skip_row" or last_image_token >= max_seq_len:
            return None, truncated
        n = max_seq_len + 1
    ids, learned = encoded.input_ids[:n], encoded.learned[:n]
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids[1:], learned[1:])]
    if all(label == IGNORE_INDEX for label in labels):
        return None, truncated
    return {
        "input_ids": ids[:-1],
        "labels": labels,
        "token_type_ids": encoded.token_type_ids[:n],
        "position_ids": encoded.position_ids[: n - 1],
        "images": np.concatenate(encoded.pixels) if encoded.pixels else None,
        "grid_thw": list(encoded.grids),
    }, truncated


def encode_vl_sft_examples(tokenizer, processor, examples, max_seq_len: int, truncation: str,
                           what: str = "data.train"):
    """Encode every example with its images; raises TokenizationError when none is usable."""
    return encode_sft_examples(
        tokenizer, examples, max_seq_len, truncation, what,
        encode=lambda tok, example, limit, policy: encode_vl_sft(tok, processor, example, limit, policy),
        length=vl_token_length(tokenizer, processor.min_pixels, processor.max_pixels),
        errors=(TemplateError, ImageCountError, OSError),
        hint=" (an image is never cut) or lower vl.max_pixels")


def vl_token_length(tokenizer, min_pixels: int, max_pixels: int):
    """A callable Example -> number of tokens a VL model sees (text, image markers and each
    image's patch tokens), for dataset statistics; image sizes are read from the files' headers."""
    from PIL import Image

    from models.chat_template import encode_conversation
    from models.image_facts import image_tokens
    from models.vl_inputs import with_image_markers

    def length(example) -> int:
        messages, trainable = conversation_of(example)
        text = encode_conversation(tokenizer, with_image_markers(messages, len(example.images)), trainable)[0]
        patches = 0
        for path in example.images:
            with Image.open(path) as image:
                patches += image_tokens(image.width, image.height, min_pixels, max_pixels)
        return len(text) + patches

    return length
