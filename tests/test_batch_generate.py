"""Batched decoding (models/batch_generate.py) against one-at-a-time decoding, token for token, on
the tiny MoE and dense models and a LoRA adapter; rows that end early or join late; and the model
server's batches (an in-process `ModelHost` on the loaded engine) under concurrent clients."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest

from models.chat_request import SamplingParams
from tests.conftest import sample_conversations

GREEDY = SamplingParams(temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def engines(tiny_moe_dir, tiny_dense_dir, lora_job):
    from models.chat_engine import ChatEngine

    return {"moe": ChatEngine.load(str(tiny_moe_dir)), "dense": ChatEngine.load(str(tiny_dense_dir)),
            "lora": ChatEngine.load(str(lora_job / "output"))}


def _prompts(engine) -> list[list[int]]:
    """Prompts of very different lengths: 3 and 60 tokens of plain text, and two chat prompts."""
    text = " ".join(m["content"] for c in sample_conversations()[:12] for m in c)
    words = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    chats = [engine.prepare(c[:-1]).ids for c in sample_conversations()[:2]]
    prompts = [words[:3], words[:60], *chats]
    assert [len(p) for p in prompts[:2]] == [3, 60] and 3 < len(chats[0]) < 60
    return prompts


@pytest.mark.parametrize("which", ["moe", "dense", "lora"])
def test_batched_greedy_ids_equal_one_at_a_time(engines, which):
    from models.batch_generate import generate_ids_batch

    engine = engines[which]
    prompts = _prompts(engine)
    alone = [list(engine.generate_ids(p, GREEDY, 24, use_cache=True)) for p in prompts]
    # three rows at most: the fourth prompt joins when the first three have finished
    assert generate_ids_batch(engine, prompts, GREEDY, 24, max_rows=3) == alone
    assert generate_ids_batch(engine, prompts, GREEDY, 24) == alone
    assert len({tuple(a) for a in alone}) == len(alone)


def _text(chunks) -> tuple[str, str | None, int]:
    chunks = list(chunks)
    return "".join(c.content for c in chunks), chunks[-1].finish_reason, chunks[-1].completion_tokens


def test_rows_joining_a_batch_under_way_get_their_own_replies(engines):
    from models.batch_generate import BatchDecoder
    from models.chat_engine import Prompt

    engine = engines["moe"]
    prompts = [Prompt(ids=ids, text="", max_new_tokens=n, thinking=False)
               for ids, n in zip(_prompts(engine), (30, 12, 20, 16))]
    decoder = BatchDecoder(engine, max_rows=4)
    events = decoder.add(prompts[0], GREEDY, 0)
    for _ in range(5):
        events += decoder.step()
    events += decoder.add(prompts[1], GREEDY, 1)  # longer than the batch so far: the batch is padded
    events += decoder.step()
    events += decoder.add(prompts[2], GREEDY, 2)  # shorter: the new row is padded
    events += decoder.add(prompts[3], GREEDY, 3)
    while decoder.rows:
        events += decoder.step()
    for i, prompt in enumerate(prompts):
        assert _text(c for k, c in events if k == i) == _text(engine.stream(prompt, GREEDY)), i


def test_a_row_ending_early_leaves_the_others_unchanged(engines):
    from models.batch_generate import stream_batch

    engine = engines["moe"]
    prompts = [engine.prepare(c[:-1], max_tokens=20) for c in sample_conversations()[:3]]
    whole = _text(engine.stream(prompts[1], GREEDY))[0]
    stop = whole[len(whole) // 2:len(whole) // 2 + 3]
    params = [SamplingParams(temperature=0, ignore_eos=True, max_tokens=3),
              SamplingParams(temperature=0, ignore_eos=True, stop=[stop]), GREEDY]
    prompts[0].max_new_tokens = 3
    events = list(stream_batch(engine, prompts, params))
    replies = [_text(c for k, c in events if k == i) for i in range(3)]
    assert replies == [_text(engine.stream(p, s)) for p, s in zip(prompts, params)]
    assert replies[0][1:] == ("length", 3) and replies[1][1] == "stop" and stop not in replies[1][0]
    assert replies[2][1:] == ("length", 20)


def test_reply_batch_gives_the_tuned_answers_reply_gives(engines):
    from models.batch_generate import reply_batch

    engine = engines["lora"]
    conversations = [c[:-1] for c in sample_conversations()[:10]]
    params = SamplingParams(temperature=0, max_tokens=24)
    replies = reply_batch(engine, conversations, params, max_rows=4)
    assert replies == [engine.reply(c, params) for c in conversations]
    answers = [c[-1]["content"] for c in sample_conversations()[:10]]
    assert sum(answer == reply[1] for answer, reply in zip(answers, replies)) >= 8


def test_what_cannot_be_batched_is_refused(engines):
    from models.batch_generate import BatchDecoder, unbatchable
    from models.chat_engine import Prompt

    engine = engines["moe"]
    with pytest.raises(ValueError, match="one at a time"):
        BatchDecoder(engine).add(Prompt(ids=[5, 6], text="", max_new_tokens=2, thinking=False, vision=object()),
                                 GREEDY)
    config = engine.model.config
    saved = config.moe_capacity
    config.moe_capacity = [8, 2, 8]
    try:
        assert "moe_capacity [8, 2, 8] below its 8 experts" in unbatchable(engine)
        with pytest.raises(ValueError, match="capacity"):
            BatchDecoder(engine)
    finally:
        config.moe_capacity = saved
    assert unbatchable(engine) is None and unbatchable(engines["dense"]) is None


@pytest.fixture(scope="module")
def host_url(engines):
    """`models.serve`'s host and API in this process, on the loaded MoE engine."""
    import uvicorn

    from models.api import create_app
    from models.serve import ModelHost, listen

    host = ModelHost("tiny-moe", max_num_seqs=8)
    threading.Thread(target=host.run, args=(lambda: engines["moe"],), name="model", daemon=True).start()
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(host), http="h11", ws="none", lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def test_concurrent_requests_are_decoded_together_and_answered_as_alone(host_url, capsys):
    conversations = [c[:-1] for c in sample_conversations()[:7]]
    conversations.append([{"role": "user", "content": " ".join(["tell me more about the sky"] * 12)}])
    bodies = [{"messages": c, "temperature": 0, "max_tokens": 24 + 2 * i, "ignore_eos": True}
              for i, c in enumerate(conversations)]
    bodies[3].update(temperature=0.9, top_p=0.9, seed=7)
    whole = _post(host_url, bodies[5])["choices"][0]["message"]["content"]
    bodies[5]["stop"] = [whole[len(whole) // 2:len(whole) // 2 + 3]]
    alone = [_post(host_url, body) for body in bodies]
    assert "decoding together" not in capsys.readouterr().err
    together = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(i):
        start.wait()
        together[i] = _post(host_url, bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [r["choices"][0] for r in together] == [r["choices"][0] for r in alone]
    assert [r["usage"] for r in together] == [r["usage"] for r in alone]
    assert alone[5]["choices"][0]["finish_reason"] == "stop" and alone[0]["usage"]["completion_tokens"] == 24
    sizes = [int(n) for n in re.findall(r"batch: (\d+) requests decoding together", capsys.readouterr().err)]
    assert sizes and max(sizes) >= 4, sizes


def test_a_client_that_disconnects_cancels_only_its_row(host_url, capsys):
    import httpx

    long = {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0, "max_tokens": 400,
            "ignore_eos": True}
    results = {}

    def finish(name, body):
        results[name] = _post(host_url, body)

    others = [threading.Thread(target=finish, args=(n, dict(long, max_tokens=m))) for n, m in (("a", 120), ("b", 160))]
    for thread in others:
        thread.start()
    with httpx.stream("POST", f"{host_url}/v1/chat/completions", json=dict(long, stream=True), timeout=60) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break
    for thread in others:
        thread.join(120)
    assert results["a"]["usage"]["completion_tokens"] == 120 and results["b"]["usage"]["completion_tokens"] == 160
    log, deadline = "", time.monotonic() + 60
    while "cancelled by the client" not in log and time.monotonic() < deadline:
        time.sleep(0.1)
        log += capsys.readouterr().err
    assert "decoding together" in log
    cancelled = re.findall(r"cancelled by the client after (\d+) tokens", log)
    assert len(cancelled) == 1 and int(cancelled[0]) < 400, log[-2000:]


def test_a_failed_step_fails_its_batch_and_the_server_goes_on(host_url, monkeypatch):
    from models.batch_generate import BatchDecoder

    step = BatchDecoder.step
    failures = []

    def fail_once(decoder):
        # only a step holding this test's request (max_tokens 4): a row another test left decoding
        # on the shared server must not take the failure
        if not failures and any(row.max_new_tokens == 4 for row in decoder.rows):
            failures.append(len(decoder))
            raise RuntimeError("out of memory, say")
        return step(decoder)

    monkeypatch.setattr(BatchDecoder, "step", fail_once)
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    with pytest.raises(urllib.error.HTTPError) as caught:
        _post(host_url, body)
    assert caught.value.code == 500 and "generation failed: out of memory, say" in caught.value.read().decode()
    assert _post(host_url, body)["usage"]["completion_tokens"] <= 4 and len(failures) == 1
