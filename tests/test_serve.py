"""`python -m models.serve` driven by the official `openai` client: plain and streamed replies,
usage, errors, concurrency, thinking, tuned against base, restarts and bad start-ups."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import psutil
import pytest

from models.chat_client import ChatClient, ChatError, side_by_side
from models.server_process import ModelServer
from tests.browser_helpers import free_port
from tests.conftest import ROOT, answer_budget, example_config, run_trainer, sample_conversations

THOUGHT = "I remember this from training."
# Two full batches: 30 epochs are 60 steps, and the model recalls 13 of the 16 answers behind the
# reasoning (20 rows took 90 steps for 19 of 20; 20 epochs of them only 8).
THINKING_ROWS = 16


@pytest.fixture(scope="module")
def base_server(tiny_moe_dir, tmp_path_factory):
    server = ModelServer(str(tiny_moe_dir), name="tiny-base", log_path=tmp_path_factory.mktemp("logs") / "base.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tuned_server(lora_job, tmp_path_factory):
    server = ModelServer(str(lora_job / "output"), name="tiny-tuned",
                         log_path=tmp_path_factory.mktemp("logs") / "tuned.log")
    server.start()
    yield server
    server.stop()


def client_for(server: ModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(server: ModelServer, messages, **kwargs):
    return client_for(server).chat.completions.create(model=server.name, messages=messages, **kwargs)


HELLO = [{"role": "user", "content": "Hello, who are you?"}]


def test_models_and_health(base_server):
    models = client_for(base_server).models.list().data
    assert [m.id for m in models] == ["tiny-base"]
    assert models[0].model_extra["max_model_len"] == 2048 and models[0].model_extra["thinking"] is False
    assert models[0].model_extra["quantization"] is None  # full precision (tests/test_quant_serve.py: quantized)
    assert httpx.get(f"{base_server.base_url}/health").json() == {"status": "ready", "model": "tiny-base"}


def test_the_api_is_documented_and_unknown_endpoints_get_openai_errors(base_server):
    assert httpx.get(f"{base_server.base_url}/docs").status_code == 200
    spec = httpx.get(f"{base_server.base_url}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/health"} <= set(spec["paths"])
    assert "messages" in spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    response = httpx.get(f"{base_server.base_url}/v1/nothing")
    assert response.status_code == 404 and response.json()["error"] == {
        "message": "no such endpoint: GET /v1/nothing", "type": "not_found_error", "param": None, "code": None}


def test_plain_reply_with_usage(base_server, tiny_tokenizer):
    from models.chat_template import encode_conversation

    reply = ask(base_server, HELLO, temperature=0, max_tokens=9, extra_body={"ignore_eos": True})
    assert reply.object == "chat.completion" and reply.model == "tiny-base"
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.message.role == "assistant" and choice.message.content
    prompt_ids, _ = encode_conversation(tiny_tokenizer, HELLO)
    assert reply.usage.prompt_tokens == len(prompt_ids)
    assert reply.usage.completion_tokens == 9 and reply.usage.total_tokens == len(prompt_ids) + 9


def test_streamed_reply_matches_the_plain_one(base_server):
    kwargs = dict(temperature=0, max_tokens=12, extra_body={"ignore_eos": True})
    plain = ask(base_server, HELLO, **kwargs).choices[0].message.content
    chunks = list(ask(base_server, HELLO, stream=True, stream_options={"include_usage": True}, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == plain and sum(bool(p) for p in pieces) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_the_stream_ends_with_done(base_server):
    body = {"messages": HELLO, "max_tokens": 3, "stream": True}
    text = httpx.post(f"{base_server.base_url}/v1/chat/completions", json=body, timeout=60).text
    events = [line for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and all(json.loads(e[6:]) for e in events[:-1])


def test_a_client_that_disconnects_cancels_its_generation(base_server):
    body = {"messages": HELLO, "max_tokens": 1500, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{base_server.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break
    deadline = time.monotonic() + 60
    while "generation cancelled by the client" not in base_server.last_words(20):
        assert time.monotonic() < deadline, base_server.last_words(20)
        time.sleep(0.2)
    cancelled_after = int(base_server.last_words(20).split("cancelled by the client after ")[1].split()[0])
    assert cancelled_after < 1500
    assert client_for(base_server).chat.completions.create(model=base_server.name, messages=HELLO, max_tokens=2)


@pytest.mark.parametrize("kwargs,words", [
    (dict(messages=[]), "'messages' must be a non-empty list"),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), "unknown role 'wizard'"),
    (dict(messages=HELLO, max_tokens=0), "'max_tokens' must be at least 1"),
    (dict(messages=HELLO, max_tokens=-3), "'max_tokens' must be at least 1"),
    (dict(messages=HELLO, temperature=2.5), "'temperature' must be at least 0 and at most 2"),
    (dict(messages=[{"role": "user", "content": "word " * 2100}]), "maximum context length is 2048 tokens"),
    (dict(messages=HELLO, max_tokens=2048), "max_tokens asks for 2048 more"),
    (dict(messages=HELLO, extra_body={"chat_template_kwargs": {"enable_thinking": True}}), "no thinking mode"),
])
def test_bad_requests_get_400_with_a_specific_message(base_server, kwargs, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(base_server).chat.completions.create(model=base_server.name, **kwargs)
    assert caught.value.status_code == 400 and words in caught.value.message


def test_malformed_json_and_unknown_model(base_server):
    url = f"{base_server.base_url}/v1/chat/completions"
    response = httpx.post(url, content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("malformed JSON body")
    with pytest.raises(openai.NotFoundError, match="'tiny-base'"):
        client_for(base_server).chat.completions.create(model="gpt-4", messages=HELLO)


def test_concurrent_requests_are_answered_whole(base_server):
    prompts = [[{"role": "user", "content": f"Question number {i}: what do you know?"}] for i in range(4)]
    kwargs = dict(temperature=0, max_tokens=16, extra_body={"ignore_eos": True})
    expected = [ask(base_server, p, **kwargs).choices[0].message.content for p in prompts]
    results = [None] * len(prompts)

    def stream(i):
        chunks = ask(base_server, prompts[i], stream=True, **kwargs)
        results[i] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == expected and len(set(expected)) > 1


def test_tuned_server_gives_trained_answers_and_base_does_not(base_server, tuned_server, tiny_tokenizer):
    conversations = sample_conversations()
    hits = {"tuned": 0, "base": 0}
    for conversation in conversations:
        budget = answer_budget(tiny_tokenizer, conversation)
        for label, server in (("tuned", tuned_server), ("base", base_server)):
            answer = ask(server, conversation[:-1], temperature=0, max_tokens=budget).choices[0].message.content
            hits[label] += answer.strip() == conversation[-1]["content"].strip()
    assert hits["tuned"] >= 0.8 * len(conversations) and hits["base"] <= 0.05 * len(conversations)


def test_side_by_side_streams_both_answers(base_server, tuned_server):
    conversation = sample_conversations()[0]
    params = {"temperature": 0, "max_tokens": 40}
    requests = [(ChatClient(server.base_url), conversation[:-1], params) for server in (base_server, tuned_server)]
    texts, finished = ["", ""], [None, None]
    for index, delta in side_by_side(requests):
        assert not isinstance(delta, ChatError)
        texts[index] += delta.content
        finished[index] = delta.finish_reason or finished[index]
    assert texts[1].strip() == conversation[-1]["content"].strip() and texts[0] != texts[1]
    assert finished == ["stop", "stop"] or "length" in finished


def test_side_by_side_reports_a_failing_side_and_finishes_the_other(base_server):
    dead = ChatClient(f"http://127.0.0.1:{free_port()}")
    params = {"max_tokens": 4, "temperature": 0}
    results = list(side_by_side([(ChatClient(base_server.base_url), HELLO, params), (dead, HELLO, params)]))
    assert any(i == 0 and getattr(d, "finish_reason", None) for i, d in results)
    assert [type(d) for i, d in results if i == 1] == [ChatError]


@pytest.fixture(scope="module")
def thinking_job(workdir, tiny_moe_dir, tmp_path_factory):
    """Full SFT with ERNIE's thinking template on part of the sample data, every answer preceded by
    the same reasoning."""
    data = tmp_path_factory.mktemp("thinking") / "thinking.jsonl"
    with data.open("w", encoding="utf-8") as out:
        for conversation in sample_conversations()[:THINKING_ROWS]:
            answer = conversation[-1]["content"]
            conversation[-1] = {"role": "assistant", "content": f"<think>\n{THOUGHT}\n</think>\n\n{answer}"}
            out.write(json.dumps({"messages": conversation}, ensure_ascii=False) + "\n")
    config = example_config("tiny_sft_full.yaml", **{"model.template": "ernie", "data.max_seq_len": 320,
                                                      "optim.num_train_epochs": 30})
    config["data"]["train"] = [{"path": str(data), "format": "messages"}]
    job_dir = workdir / "jobs" / "thinking"
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


def test_thinking_reply_comes_back_as_reasoning_content(thinking_job, tmp_path):
    server = ModelServer(str(thinking_job / "output"), name="tiny-thinking", log_path=tmp_path / "serve.log")
    server.start()
    try:
        card = client_for(server).models.list().data[0]
        assert card.model_extra["thinking"] is True
        conversations = sample_conversations()[:THINKING_ROWS]
        answers = [ask(server, c[:-1], temperature=0, max_tokens=100).choices[0].message for c in conversations]
        assert all(a.model_extra["reasoning_content"] == THOUGHT for a in answers)
        assert all(a.content and not set("<>") & set(a.content) for a in answers)
        # The tiny model recalls fewer answers behind a reasoning block than without one.
        exact = sum(a.content == c[-1]["content"].strip() for a, c in zip(answers, conversations))
        assert exact >= 0.5 * len(conversations)
        chunks = list(ask(server, conversations[0][:-1], temperature=0, max_tokens=100, stream=True))
        reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks)
        content = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert reasoning == THOUGHT and content == conversations[0][-1]["content"].strip()
        off = ask(server, conversations[0][:-1], temperature=0, max_tokens=100,
                  extra_body={"chat_template_kwargs": {"enable_thinking": False}}).choices[0].message
        assert "reasoning_content" not in off.model_extra and off.content and "<think>" not in off.content
    finally:
        server.stop()


def test_killed_server_restarts_on_the_same_port_and_frees_its_memory(tiny_moe_dir, tmp_path):
    port = free_port()
    first = ModelServer(str(tiny_moe_dir), name="restart", log_path=tmp_path / "first.log")
    first.start(port=port)
    pid = first.process.pid
    assert psutil.Process(pid).memory_info().rss > 50 << 20
    first.process.kill()
    first.process.wait(10)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    second = ModelServer(str(tiny_moe_dir), name="restart", log_path=tmp_path / "second.log")
    client = second.start(port=port)
    try:
        assert second.port == port and client.health() == "ready"
        assert client.complete(HELLO, max_tokens=3).usage["completion_tokens"] >= 1
    finally:
        second.stop()
    assert not second.alive()


@pytest.mark.parametrize("args,words", [
    (["--model", "/no/such/model"], "model directory not found: /no/such/model"),
    (["--model", str(ROOT / "assets")], "config.json is missing"),
    (["--model", "ernie-4.5-tiny-moe", "--adapter", str(ROOT / "assets")], "not a LoRA adapter directory"),
    (["--model", "ernie-4.5-tiny-moe", "--host", "0.0.0.0"], "pass --allow-remote"),
])
def test_bad_start_up_exits_non_zero_before_loading(args, words):
    result = subprocess.run([sys.executable, "-m", "models.serve", *args, "--port", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and words in result.stderr


def test_a_model_that_fails_to_load_ends_the_server(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "ernie4_5", "hidden_size": 8}))
    server = ModelServer(str(broken), log_path=tmp_path / "serve.log")
    with pytest.raises(ChatError, match="exited"):
        server.start(timeout=60)
    assert server.process.returncode == 1
