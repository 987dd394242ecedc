"""Tokenisation with the chat template: assistant-only loss, per-turn labels, truncation policies."""

from __future__ import annotations

import pytest

from trainer.data.formats import Example, Turn
from trainer.data.tokenize import IGNORE_INDEX, TokenizationError, encode_sft, encode_sft_examples


def example(*turns, line=1):
    return Example(messages=[Turn(role, content, train) for role, content, train in turns], line=line, source="t.jsonl")


def learned_text(tokenizer, features):
    return tokenizer.decode([t for t in features["labels"] if t != IGNORE_INDEX])


def test_loss_only_on_assistant_tokens(tiny_tokenizer):
    ex = example(("system", "Be brief.", True), ("user", "What color is the sky?", True),
                 ("assistant", "Blue.", True))
    features, truncated = encode_sft(tiny_tokenizer, ex, max_seq_len=256)
    assert not truncated
    assert len(features["input_ids"]) == len(features["labels"])
    assert learned_text(tiny_tokenizer, features) == "Blue.<|end_of_sentence|>"
    # labels are shifted: labels[t] is the token after input_ids[t]
    first = next(i for i, t in enumerate(features["labels"]) if t != IGNORE_INDEX)
    assert tiny_tokenizer.decode(features["input_ids"][: first + 1]).endswith("Assistant: ")


def test_multi_turn_and_erniekit_label_zero(tiny_tokenizer):
    ex = example(("user", "Hi", True), ("assistant", "Hello.", False), ("user", "Sky?", True),
                 ("assistant", "Blue.", True))
    features, _ = encode_sft(tiny_tokenizer, ex, max_seq_len=256)
    assert learned_text(tiny_tokenizer, features) == "Blue.<|end_of_sentence|>"
    both = example(("user", "Hi", True), ("assistant", "Hello.", True), ("user", "Sky?", True),
                   ("assistant", "Blue.", True))
    features, _ = encode_sft(tiny_tokenizer, both, max_seq_len=256)
    assert learned_text(tiny_tokenizer, features) == "Hello.<|end_of_sentence|>Blue.<|end_of_sentence|>"


def test_drop_oldest_turns_keeps_system_and_last_exchange(tiny_tokenizer):
    long_turn = "word " * 40
    ex = example(("system", "Sys.", True), ("user", long_turn, True), ("assistant", long_turn, True),
                 ("user", "Sky?", True), ("assistant", "Blue.", True))
    features, truncated = encode_sft(tiny_tokenizer, ex, max_seq_len=40, truncation="drop_oldest_turns")
    assert truncated
    text = tiny_tokenizer.decode(features["input_ids"])
    assert text.startswith("<|begin_of_sentence|>Sys.\nUser: Sky?") and "word" not in text
    assert learned_text(tiny_tokenizer, features) == "Blue.<|end_of_sentence|>"


def test_truncate_end_and_skip_row(tiny_tokenizer):
    ex = example(("user", "Tell me.", True), ("assistant", "word " * 60, True))
    cut, truncated = encode_sft(tiny_tokenizer, ex, max_seq_len=30, truncation="truncate_end")
    assert truncated and len(cut["input_ids"]) == 29
    skipped, _ = encode_sft(tiny_tokenizer, ex, max_seq_len=30, truncation="skip_row")
    assert skipped is None


def test_max_seq_len_too_small_for_every_row_is_a_specific_error(tiny_tokenizer):
    rows = [example(("user", f"Question number {i}?", True), ("assistant", "An answer.", True), line=i + 1)
            for i in range(3)]
    with pytest.raises(TokenizationError, match=r"data.max_seq_len=8 is too small for every one of the 3 rows"):
        encode_sft_examples(tiny_tokenizer, rows, max_seq_len=8, truncation="truncate_end")
