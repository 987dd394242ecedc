"""The chat engine in-process: incremental text, stop strings, thinking split, request checks,
sampling, the KV cache, and fitting a conversation into the context."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.chat_request import RequestError, SamplingParams, parse_chat_request
from models.text_stream import IncrementalDetokenizer, ReasoningSplitter, StopScanner

MIXED_TEXT = "训练好的模型回答：你好，世界！こんにちは 😀 naïve café — done."


@pytest.fixture(scope="module")
def engine(tiny_moe_dir):
    from models.chat_engine import ChatEngine

    return ChatEngine.load(str(tiny_moe_dir))


def test_incremental_detokenizer_never_splits_a_character(tiny_tokenizer):
    ids = tiny_tokenizer(MIXED_TEXT, add_special_tokens=False)["input_ids"]
    # The tiny vocabulary spells rare characters in byte-fallback pieces: the case that matters.
    assert len(ids) > len(MIXED_TEXT) // 2
    detokenizer = IncrementalDetokenizer(tiny_tokenizer)
    pieces = [detokenizer.add(token) for token in ids] + [detokenizer.flush()]
    assert "".join(pieces) == tiny_tokenizer.decode(ids) == MIXED_TEXT
    assert not any("\ufffd" in piece for piece in pieces)
    assert sum(piece == "" for piece in pieces) > 0


def _chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:])]


def _split_whole(text: str, enabled: bool, opened: bool = False) -> tuple[str, str]:
    return ReasoningSplitter(enabled, opened).feed(text, final=True)


REPLIES = [
    "<think>\nThe user greets me.\n</think>\n<response>\nHello there!\n</response>\n",
    "<think>\nstep one\nstep two\n</think>\n\nPlain answer without response tags",
    "no thinking at all, just <b>text</b> and a < sign",
    "<think>\nunfinished reasoning",
    "  <response>\n答案：北京\n</response>",
]


@pytest.mark.parametrize("text", REPLIES)
def test_reasoning_split_of_whole_replies(text):
    reasoning, answer = _split_whole(text, enabled=True)
    if text.lstrip().startswith("<think>"):
        assert reasoning and "<think>" not in reasoning and "</think>" not in reasoning
    else:
        assert reasoning == ""
    assert "<response>" not in answer and "</response>" not in answer
    assert _split_whole("<think>\nabc\n</think>\n<response>\nHi\n</response>\n", True) == ("abc", "Hi")
    assert _split_whole("<think>\nabc\n</think>\nHi", False) == ("", "<think>\nabc\n</think>\nHi")
    assert _split_whole("abc\n</think>\nHi", True, opened=True) == ("abc", "Hi")


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(REPLIES) - 1), cuts=st.lists(st.integers(0, 200), max_size=12))
def test_streamed_reasoning_split_equals_whole_split(index, cuts):
    text = REPLIES[index]
    splitter = ReasoningSplitter(enabled=True)
    chunks = _chunked(text, cuts)
    parts = [splitter.feed(chunk) for chunk in chunks[:-1]] + [splitter.feed(chunks[-1], final=True)]
    assert ("".join(p[0] for p in parts), "".join(p[1] for p in parts)) == _split_whole(text, True)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, 80), max_size=10))
def test_stop_strings_cut_at_the_first_match_however_the_text_arrives(cuts):
    text = "The answer is 42.<|end_of_sentence|> and then more<|end_of_sentence|>"
    scanner = StopScanner(["<|end_of_sentence|>", "STOP"])
    out = "".join(scanner.feed(chunk) for chunk in _chunked(text, cuts))
    assert scanner.stopped and out == "The answer is 42."
    held = StopScanner(["<|end"])
    assert held.feed("abc<|e") == "abc" and held.feed("x", final=True) == "<|ex"


BAD_REQUESTS = [
    ({}, "messages", "'messages' is required"),
    ({"messages": []}, "messages", "non-empty list"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "unknown role 'robot'"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "content is required"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, "messages[1].role",
     "may only come first"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url", "must be an object whose 'url' is"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "messages[0].role", "last message must come from the user"),
    ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}, "max_tokens", "at least 1"),
    ({"messages": [{"role": "user", "content": "a"}], "max_tokens": -5}, "max_tokens", "at least 1"),
    ({"messages": [{"role": "user", "content": "a"}], "max_tokens": "10"}, "max_tokens", "must be an integer"),
    ({"messages": [{"role": "user", "content": "a"}], "temperature": 2.5}, "temperature", "at most 2"),
    ({"messages": [{"role": "user", "content": "a"}], "temperature": -0.1}, "temperature", "at least 0"),
    ({"messages": [{"role": "user", "content": "a"}], "top_p": 0}, "top_p", "greater than 0"),
    ({"messages": [{"role": "user", "content": "a"}], "top_k": -1}, "top_k", "at least 0"),
    ({"messages": [{"role": "user", "content": "a"}], "n": 2}, "n", "one choice per request"),
    ({"messages": [{"role": "user", "content": "a"}], "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"messages": [{"role": "user", "content": "a"}], "stream": "yes"}, "stream", "true or false"),
    ({"messages": [{"role": "user", "content": "a"}], "truncation": "middle"}, "truncation", "auto"),
    ({"messages": [{"role": "user", "content": "a"}], "chat_template_kwargs": {"enable_thinking": "on"}},
     "chat_template_kwargs.enable_thinking", "true or false"),
]


@pytest.mark.parametrize("body,param,words", BAD_REQUESTS)
def test_bad_requests_name_the_parameter(body, param, words):
    with pytest.raises(RequestError) as caught:
        parse_chat_request(body)
    assert caught.value.param == param and words in caught.value.message and caught.value.status == 400


def test_a_full_request_is_understood():
    request = parse_chat_request({
        "model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0, "max_completion_tokens": 7, "stop": "END", "seed": 3, "stream": True,
        "stream_options": {"include_usage": True}, "chat_template_kwargs": {"enable_thinking": False},
        "truncation": "auto", "top_k": 5, "repetition_penalty": 1.1})
    assert request.messages[1] == {"role": "user", "content": "Hi"}
    assert request.sampling.greedy and request.sampling.max_tokens == 7 and request.sampling.stop == ["END"]
    assert request.stream and request.include_usage and request.thinking is False and request.truncation == "auto"


def test_sampling_rules():
    from models.chat_engine import pick_token

    logits = np.array([1.0, 3.0, 2.0, -1.0])
    rng = np.random.default_rng(0)
    empty = np.array([], dtype=np.int64)
    assert pick_token(logits, SamplingParams(temperature=0), rng, empty) == 1
    assert {pick_token(logits, SamplingParams(temperature=1.0, top_k=1), rng, empty) for _ in range(20)} == {1}
    assert {pick_token(logits, SamplingParams(temperature=1.0, top_p=0.01), rng, empty) for _ in range(20)} == {1}
    # A penalty on the favourite (positive logit divided) hands greedy decoding to the runner-up.
    assert pick_token(logits, SamplingParams(temperature=0, repetition_penalty=2.0), rng, np.array([1])) == 2
    draws = {pick_token(logits, SamplingParams(temperature=1.0), rng, empty) for _ in range(200)}
    assert draws >= {0, 1, 2}


def test_kv_cache_gives_the_same_tokens_as_full_recomputation(engine):
    prompt = engine.prepare([{"role": "user", "content": "What is the capital of France?"}], max_tokens=24)
    params = SamplingParams(temperature=0, max_tokens=24)
    cached = list(engine.generate_ids(prompt.ids, params, 24, use_cache=True))
    recomputed = list(engine.generate_ids(prompt.ids, params, 24, use_cache=False))
    assert cached == recomputed and len(cached) == 24


def test_seeded_sampling_repeats_and_differs_by_seed(engine):
    messages = [{"role": "user", "content": "Tell me something."}]
    sample = lambda seed: engine.reply(messages, SamplingParams(temperature=1.0, top_p=0.95, seed=seed,
                                                                max_tokens=16, ignore_eos=True))
    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_stream_reports_counts_and_honours_stop_strings(engine):
    messages = [{"role": "user", "content": "Say something."}]
    prompt = engine.prepare(messages, max_tokens=12)
    chunks = list(engine.stream(prompt, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)))
    text = "".join(c.content for c in chunks)
    last = chunks[-1]
    assert last.finish_reason == "length" and last.completion_tokens == 12 and last.prompt_tokens == len(prompt.ids)
    stop = text.strip()[2:4]
    stopped = list(engine.stream(prompt, SamplingParams(temperature=0, max_tokens=12, stop=[stop], ignore_eos=True)))
    assert stopped[-1].finish_reason == "stop"
    assert "".join(c.content for c in stopped) == text[:text.index(stop)].strip()


def test_a_prompt_over_the_context_is_refused_or_truncated_on_request(engine):
    from models.chat_engine import ContextLengthError

    long_turn = "word " * 900
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(3):
        history += [{"role": "user", "content": f"{i} {long_turn}"}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": "And now?"})
    with pytest.raises(ContextLengthError, match=r"maximum context length is 2048 tokens.*truncation='auto'"):
        engine.prepare(history, max_tokens=50)
    prompt = engine.prepare(history, max_tokens=50, truncation="auto")
    assert len(prompt.ids) + 50 <= engine.context_length and prompt.dropped_messages >= 2
    assert prompt.text.startswith("<|begin_of_sentence|>Be brief.\n") and prompt.text.endswith("And now?\nAssistant: ")
    with pytest.raises(ContextLengthError, match="shorten the last message"):
        engine.prepare([{"role": "user", "content": long_turn * 3}], truncation="auto")


def test_thinking_is_refused_for_a_template_without_it(engine):
    with pytest.raises(RequestError, match="no thinking mode"):
        engine.prepare([{"role": "user", "content": "hi"}], thinking=True)
