"""Tool calls through `python -m models.serve` and the official `openai` client: `tools` and
`tool_choice` accepted or refused by name, calls parsed into `message.tool_calls` and streamed as
`delta.tool_calls`, tool results in the history. The calls are the tiny MoE's after SFT-LoRA on the
fixed-call set (the `tool_job` fixture): questions it was trained on, whose calls never change their
arguments; the base model calls nothing. Arguments copied from a new question are beyond the tiny
model in test time (docs/function_calling.md), so the issue's 80% on held-out questions is not
asserted here."""

from __future__ import annotations

import json
import random

import openai
import pytest

from models.server_process import ModelServer
from models.tool_calls import ToolCall, parse_tool_calls
from models.tool_stream import ToolCallSplitter
from trainer.data.tool_set import FIXED_CALLS, FIXED_TOOLS, TOOLS

WEATHER = TOOLS[0]
ASK = {"role": "user", "content": "What is the weather in Oslo?"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"degrees": 12, "sky": "rainy"}'}


def serve(model: str, name: str, logs) -> ModelServer:
    server = ModelServer(model, name=name, log_path=logs / f"{name}.log")
    server.start()
    return server


@pytest.fixture(scope="module")
def base(tiny_moe_dir, tmp_path_factory):
    server = serve(str(tiny_moe_dir), "tiny-base", tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tuned(tool_job, tmp_path_factory):
    server = serve(str(tool_job / "output"), "tiny-tools", tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


def client(server: ModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(server: ModelServer, messages: list[dict], **kwargs):
    return client(server).chat.completions.create(model=server.name, messages=messages,
                                                  tools=list(FIXED_TOOLS), temperature=0, max_tokens=64, **kwargs)


def test_the_splitter_holds_back_markup_and_reads_the_calls_a_whole_reply_has():
    replies = ['Checking.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\nDone <b>',
               'A\n<tool_call>{"name":"b","arguments":{}}</tool_call>\n<tool_call>{"name":"c","arguments":{}}'
               '</tool_call>\nB\n', "no call <tool_ nor <tool_call>this cut", "<tool_call>not json</tool_call> x"]
    rng = random.Random(0)
    for text in replies:
        for _ in range(40):
            cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, 12)))
            splitter, out = ToolCallSplitter(), []
            for start, end in zip([0, *cuts], [*cuts, len(text)]):
                out += splitter.feed(text[start:end])
            out += splitter.end()
            content, calls = parse_tool_calls(text)
            assert "".join(piece for piece in out if isinstance(piece, str)) == content
            streamed = [piece for piece in out if isinstance(piece, ToolCall)]
            assert [(c.name, c.arguments) for c in streamed] == [(c.name, c.arguments) for c in calls]
            assert all(c.id.startswith("call_") and len(c.id) > 10 for c in streamed)


BAD = [
    pytest.param(dict(tools=[{"type": "function", "function": {"description": "no name"}}]),
                 "tools[0].function.name", "tools[0].function.name is required", id="tool-without-name"),
    pytest.param(dict(tools=[WEATHER, WEATHER]), "tools[1].function.name", "'get_weather' is declared twice",
                 id="tool-twice"),
    pytest.param(dict(tools=[{"type": "function", "function": {"name": "get weather"}}]), "tools[0].function.name",
                 "must be 1 to 64 letters, digits, underscores or dashes", id="tool-name-spaces"),
    pytest.param(dict(tools=[{"type": "retrieval", "function": {"name": "f"}}]), "tools[0].type",
                 "must be 'function', got 'retrieval'", id="tool-type"),
    pytest.param(dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_time"}}),
                 "tool_choice.function.name", "names function 'get_time', which 'tools' does not declare "
                 "(declared: get_weather)", id="choice-unknown-function"),
    pytest.param(dict(tools=[WEATHER], tool_choice="required"), "tool_choice",
                 "tool_choice 'required' cannot be honoured", id="choice-required"),
    pytest.param(dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
                 "tool_choice", "naming function 'get_weather' cannot be honoured", id="choice-named"),
    pytest.param(dict(tools=[WEATHER], tool_choice="sometimes"), "tool_choice",
                 "'tool_choice' must be one of auto, none, required", id="choice-unknown"),
    pytest.param(dict(tool_choice="auto"), "tool_choice", "needs 'tools'", id="choice-without-tools"),
    pytest.param(dict(messages=[ASK, CALL, {"role": "tool", "content": "rainy"}]), "messages[2].tool_call_id",
                 "messages[2].tool_call_id is required", id="tool-message-without-id"),
    pytest.param(dict(messages=[ASK, CALL, {**RESULT, "tool_call_id": "call_9"}]), "messages[2].tool_call_id",
                 "no call has id 'call_9' (the calls awaiting results: 'call_1')", id="tool-message-other-id"),
    pytest.param(dict(messages=[ASK, {**CALL, "tool_calls": [{**CALL["tool_calls"][0], "function": {
        "name": "get_weather", "arguments": "{city: Oslo}"}}]}, RESULT]),
        "messages[1].tool_calls[0].function.arguments", "is not valid JSON", id="call-arguments-not-json"),
    pytest.param(dict(messages=[{**ASK, "tool_calls": CALL["tool_calls"]}]), "messages[0].tool_calls",
                 "only an assistant message calls tools", id="user-calls"),
    pytest.param(dict(messages=[ASK, CALL]), "messages[1].role", "the last message must come from the user (or be "
                 "a tool result)", id="ends-with-the-call"),
]


@pytest.mark.parametrize("kwargs, param, words", BAD)
def test_bad_tool_requests_get_400_naming_the_parameter(base, kwargs, param, words):
    kwargs = {"messages": [ASK], **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client(base).chat.completions.create(model="tiny-base", **kwargs)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param and words in error["message"], error


# (the question, its call's function and arguments, the call's result, the learnt answer), one a function
LEARNT = [(asks[0], name, arguments, json.dumps(result), answer)
          for asks, name, arguments, result, answer in FIXED_CALLS]


def history(question: str, name: str, arguments: dict, result: str) -> list[dict]:
    """The question, the call it was answered with and the call's result."""
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_7", "type": "function", "function": {
                "name": name, "arguments": json.dumps(arguments)}}]},
            {"role": "tool", "tool_call_id": "call_7", "content": result}]


@pytest.mark.parametrize("question, name, arguments, result, answer", LEARNT)
def test_a_call_is_parsed_and_streamed_as_openai_does(tuned, question, name, arguments, result, answer):
    choice = ask(tuned, [{"role": "user", "content": question}]).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None, choice
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (name, arguments)

    chunks = list(ask(tuned, [{"role": "user", "content": question}], stream=True))
    contents = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert not any("<tool_call>" in text or "</tool_call>" in text for text in contents), contents
    assert "".join(contents).strip() == "", contents
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_") and deltas[0].type == "function"
    assert deltas[0].function.name == name and all(d.index == 0 for d in deltas)
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("question, name, arguments, result, answer", LEARNT)
def test_a_tool_result_in_the_history_is_answered(tuned, question, name, arguments, result, answer):
    reply = ask(tuned, history(question, name, arguments, result)).choices[0]
    assert reply.finish_reason == "stop" and not reply.message.tool_calls
    assert reply.message.content == answer
    streamed = list(ask(tuned, history(question, name, arguments, result), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == answer
    assert not any(c.choices[0].delta.tool_calls for c in streamed)


def test_tool_choice_none_gives_text_and_the_base_model_calls_nothing(tuned, base):
    for question, *_ in LEARNT:
        # "none": the prompt lists no tools and nothing is read as a call
        plain = ask(tuned, [{"role": "user", "content": question}], tool_choice="none").choices[0]
        assert not plain.message.tool_calls and plain.finish_reason in ("stop", "length"), plain
        assert isinstance(plain.message.content, str) and plain.message.content, plain
        untuned = ask(base, [{"role": "user", "content": question}]).choices[0]
        assert not untuned.message.tool_calls and untuned.finish_reason in ("stop", "length"), untuned


def test_the_chat_tabs_tools_box_is_checked_and_its_bubbles_become_the_apis_messages():
    import gradio as gr

    from models.chat_client import Delta
    from webui.chat_tab import add_event, api_messages
    from webui.chat_tools import ToolsRefused, awaiting_result, parse_tools, result_message

    assert parse_tools("  ") is None
    assert parse_tools(json.dumps(FIXED_TOOLS[2]["function"])) == [FIXED_TOOLS[2]]
    for text, key in [("[not json", "msg-chat-tools-json"), ("[]", "msg-chat-tools-list"),
                      ('"f"', "msg-chat-tools-list"),
                      ('[{"parameters": {}}]', "msg-chat-tools-name"),
                      (json.dumps([FIXED_TOOLS[0], FIXED_TOOLS[0]["function"]]), "msg-chat-tools-twice")]:
        with pytest.raises(ToolsRefused) as refused:
            parse_tools(text)
        assert refused.value.key == key, text
    # a streamed call (first its id and name, then its arguments in pieces) becomes one call bubble
    history = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = {"reasoning": None, "answer": None, "calls": {}}
    start = {"index": 0, "id": "call_5", "function": {"name": "get_weather", "arguments": ""}}
    for delta in [Delta(tool_calls=[start]),
                  Delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
                  Delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
                  Delta(finish_reason="tool_calls")]:
        add_event(history, reply, delta, "en")
    assert len(history) == 2 and history[1]["metadata"]["title"] == "→ get_weather"
    call = awaiting_result(history)
    assert call is history[1]
    history.append(result_message(call, '{"degrees": 12, "sky": "rainy"}'))
    assert awaiting_result(history) is None
    assert api_messages(history, "") == history_messages("call_5")
    # as the browser's chatbot gives the conversation back: each content a list of parts
    bot = gr.Chatbot()
    assert api_messages(bot.preprocess(bot.postprocess(history)), "") == history_messages("call_5")


def history_messages(call_id: str) -> list[dict]:
    messages = history("What is the weather in Paris?", "get_weather", {"city": "Paris"},
                       '{"degrees": 12, "sky": "rainy"}')
    messages[1]["tool_calls"][0]["id"] = messages[2]["tool_call_id"] = call_id
    return messages
