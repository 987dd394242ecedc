"""Function calling, data side: rows with `tools`, tool calls and tool results read and checked
(OpenAI messages and LLaMA-Factory's sharegpt `function_call`/`observation`), rendered by a template
that knows tools or in the studio's layout for one that does not, only the assistant's turns (its
calls included) learned; the parser that reads calls back out of a reply; the generated tool set;
and SFT-LoRA on the tiny MoE learning to call the right function with the question's arguments.
The glaive demo test skips without ../shared/datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.chat_template import conversation_segments, render, renders_tools
from models.tool_calls import ToolCall, arguments_text, fold_tools, parse_tool_calls, signature
from tests.conftest import example_config, run_trainer
from trainer.data.formats import Turn, convert, detect_format, try_convert
from trainer.data.tokenize import IGNORE_INDEX, conversation_of, encode_sft
from trainer.data.tool_set import (CITIES, NUMBERS, TOOLS, WEATHER_ASKS, call_accuracy, expected_calls,
                                   write_tool_set)
from trainer.data.validate import validate_file

GLAIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "glaive_toolcall_en_demo.json"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = {"role": "user", "content": "Weather in Oslo?"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "{\"sky\": \"rainy\"}"}
ANSWER = {"role": "assistant", "content": "It is rainy in Oslo."}
ROW = {"tools": [WEATHER], "messages": [ASK, CALL, RESULT, ANSWER]}
OSLO = ToolCall("get_weather", '{"city": "Oslo"}', "c1")


def issues_of(row: dict, format: str = "messages") -> list[str]:
    example, issues = try_convert(row, format, "d.jsonl", 7)
    assert example is None
    return [str(issue) for issue in issues]


def with_turn(i: int, **changes) -> dict:
    messages = [dict(m) for m in ROW["messages"]]
    messages[i].update(changes)
    return {**ROW, "messages": [{k: v for k, v in m.items() if v is not ...} for m in messages]}


# -- reading rows ------------------------------------------------------------------------------------

def test_messages_row_with_tools_calls_and_results():
    example = convert(ROW, "messages")
    assert example.tools == (WEATHER,)
    assert example.messages == [Turn("user", "Weather in Oslo?"), Turn("assistant", "", tool_calls=(OSLO,)),
                                Turn("tool", '{"sky": "rainy"}', call_id="c1"), Turn("assistant", "It is rainy in Oslo.")]
    # arguments as an object, tools as JSON text and bare function objects: the same row
    bare = {"tools": json.dumps([WEATHER["function"]]), "messages": [
        ASK, {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather",
                                                                            "arguments": {"city": "Oslo"}}}]},
        RESULT, ANSWER]}
    assert convert(bare, "messages") == example
    # OpenAI's Responses API writes a tool flat, its type beside its name
    assert convert({**ROW, "tools": [{"type": "function", **WEATHER["function"]}]}, "messages") == example
    record = example.to_record()
    assert record["tools"] == [WEATHER] and record["messages"][2] == {"role": "tool", "content": '{"sky": "rainy"}',
                                                                      "tool_call_id": "c1"}
    assert record["messages"][1]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]


def test_labels_count_calling_turns_and_keep_their_calls():
    example = convert({**ROW, "label": [1, 0]}, "messages")
    assert example.messages[1] == Turn("assistant", "", train=True, tool_calls=(OSLO,))
    assert example.messages[3].train is False


def test_sharegpt_function_call_and_observation_turns():
    row = {"tools": json.dumps([WEATHER["function"]]), "conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": '{"sky": "rainy"}'},
        {"from": "gpt", "value": "It is rainy in Oslo."}]}
    assert detect_format([row]) == "sharegpt"
    example = convert(row, "sharegpt")
    assert example.messages[1:3] == [Turn("assistant", "", tool_calls=(ToolCall("get_weather", '{"city": "Oslo"}'),)),
                                     Turn("tool", '{"sky": "rainy"}')]
    # several calls in one turn, answered in order
    two = json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}},
                      {"name": "get_weather", "arguments": {"city": "Rome"}}])
    row["conversations"][1:3] = [{"from": "function_call", "value": two}, {"from": "observation", "value": "a"},
                                 {"from": "observation", "value": "b"}]
    assert len(convert(row, "sharegpt").messages[1].tool_calls) == 2


def test_a_conversation_may_end_with_the_call_and_a_prompt_with_the_results():
    assert convert({**ROW, "messages": [ASK, CALL]}, "messages").messages[-1].tool_calls == (OSLO,)
    prompt, _ = try_convert({**ROW, "messages": [ASK, CALL, RESULT]}, "messages", prompt_only=True)
    assert prompt.messages[-1].role == "tool" and prompt.tools == (WEATHER,)


BAD_ROWS = [
    pytest.param(with_turn(1, tool_calls=[{"function": {"name": "get_time", "arguments": "{}"}}]),
                 "d.jsonl:7: field 'messages[1].tool_calls[0].function.name': calls function 'get_time', which the "
                 "row's tools do not declare (declared: get_weather)", id="undeclared-function"),
    pytest.param({"messages": ROW["messages"]},
                 "d.jsonl:7: field 'messages[1].tool_calls[0].function.name': calls function 'get_weather', which the "
                 "row's tools do not declare (declared: (none))", id="no-tools-at-all"),
    pytest.param(with_turn(1, tool_calls=[{"id": "c1", "function": {"name": "get_weather", "arguments": "{city: 1}"}}]),
                 "d.jsonl:7: field 'messages[1].tool_calls[0].function.arguments': the arguments (a JSON object) is "
                 "not valid JSON: Expecting property name enclosed in double quotes at character 2",
                 id="arguments-not-json"),
    pytest.param(with_turn(1, tool_calls=[{"id": "c1", "function": {"name": "get_weather", "arguments": "[1]"}}]),
                 "d.jsonl:7: field 'messages[1].tool_calls[0].function.arguments': expected the arguments as a JSON "
                 "object (or its JSON text), got a list of 1 item", id="arguments-not-an-object"),
    pytest.param(with_turn(1, tool_calls=[{"id": "c1", "function": {"name": "get_weather"}}]),
                 "d.jsonl:7: field 'messages[1].tool_calls[0].function.arguments': required field is missing",
                 id="arguments-missing"),
    pytest.param({**ROW, "messages": [ASK, RESULT, ANSWER]},
                 "d.jsonl:7: field 'messages[1]': a tool result with no call to answer: it must follow an assistant "
                 "turn that calls a tool, one result per call", id="result-without-call"),
    pytest.param(with_turn(2, tool_call_id="c9"),
                 "d.jsonl:7: field 'messages[2].tool_call_id': no call awaiting a result has id 'c9' (awaiting: 'c1')",
                 id="result-for-another-call"),
    pytest.param(with_turn(2, tool_call_id=...),
                 "d.jsonl:7: field 'messages[2].tool_call_id': required field is missing: the calls awaiting results "
                 "have ids ('c1'); name the one this result answers", id="tool-message-without-id"),
    pytest.param({**ROW, "tools": [{"type": "function", "function": {"description": "x"}}]},
                 "d.jsonl:7: field 'tools[0].function.name': required field is missing", id="tool-without-name"),
    pytest.param({**ROW, "tools": [WEATHER, WEATHER]},
                 "d.jsonl:7: field 'tools[1].function.name': function 'get_weather' is declared twice; each tool "
                 "needs a name of its own", id="tool-twice"),
    pytest.param({**ROW, "tools": "[{\"name\": \"get_weather\"}"},
                 "d.jsonl:7: field 'tools': the tools list (of {\"type\": \"function\", \"function\": {\"name\", "
                 "\"description\", \"parameters\"}} objects) is not valid JSON: Expecting ',' delimiter at character 25",
                 id="tools-not-json"),
    pytest.param({**ROW, "tools": {"name": "get_weather"}},
                 "d.jsonl:7: field 'tools': expected a list of {\"type\": \"function\", \"function\": {\"name\", "
                 "\"description\", \"parameters\"}} objects (or its JSON text), got an object with keys 'name'",
                 id="tools-not-a-list"),
    pytest.param({**ROW, "tools": [{"type": "retrieval", "function": WEATHER["function"]}]},
                 "d.jsonl:7: field 'tools[0].type': expected type 'function', got string 'retrieval'", id="tool-type"),
    pytest.param({**ROW, "tools": [{"name": "get_weather", "parameters": "city"}]},
                 "d.jsonl:7: field 'tools[0].parameters': expected the parameters' JSON schema (an object), got "
                 "string 'city'", id="parameters-not-an-object"),
    pytest.param({**ROW, "messages": [ASK, CALL, ANSWER]},
                 "d.jsonl:7: field 'messages[2].role': the call of 'get_weather' (messages[1].tool_calls[0]) has no "
                 "result: a tool turn answering each call must follow the turn that makes it", id="call-unanswered"),
    pytest.param({**ROW, "messages": [ASK, CALL, RESULT, ASK, ANSWER]},
                 "d.jsonl:7: field 'messages[3].role': expected an assistant turn here, answering the tool results "
                 "before it, got user", id="user-after-results"),
    pytest.param({**ROW, "messages": [ASK, CALL, RESULT, CALL, RESULT, ANSWER]},
                 "d.jsonl:7: field 'messages[3].tool_calls[0].id': call id 'c1' is used twice; each call needs an id "
                 "of its own so that its result can name it", id="call-id-twice"),
    pytest.param(with_turn(2, name="get_time"),
                 "d.jsonl:7: field 'messages[2].name': names function 'get_time', but the call it answers is to "
                 "'get_weather'", id="result-names-another-function"),
    pytest.param(with_turn(0, tool_calls=CALL["tool_calls"]),
                 "d.jsonl:7: field 'messages[0].tool_calls': only an assistant turn calls tools; this turn's role is "
                 "'user'", id="user-calls"),
    pytest.param({**ROW, "messages": [ASK, CALL, RESULT]},
                 "d.jsonl:7: field 'messages': the conversation must end with an assistant turn (the reply to train "
                 "on), but it ends with a tool turn", id="ends-with-result"),
]


@pytest.mark.parametrize("row, issue", BAD_ROWS)
def test_bad_function_calling_rows_name_row_turn_and_field(row, issue):
    assert issues_of(row) == [issue]


def test_bad_sharegpt_calls_name_the_turn():
    def row(value) -> dict:
        return {"tools": [WEATHER], "conversations": [
            {"from": "human", "value": "q"}, {"from": "function_call", "value": value},
            {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]}
    assert issues_of(row('{"name": "get_weather", "arguments": {"city": "Oslo"}'), "sharegpt") == [
        "d.jsonl:7: field 'conversations[1].value': the function call ({\"name\", \"arguments\"}, or a list of them) is "
        "not valid JSON: Expecting ',' delimiter at character 54"]
    assert issues_of(row('[]'), "sharegpt") == [
        "d.jsonl:7: field 'conversations[1].value': empty list: at least one call is needed"]
    assert issues_of(row('[{"name": "f", "arguments": {}}]'), "sharegpt") == [
        "d.jsonl:7: field 'conversations[1].value[0].name': calls function 'f', which the row's tools do not declare "
        "(declared: get_weather)"]
    assert issues_of(row('{"name": " ", "arguments": {}}'), "sharegpt") == [
        "d.jsonl:7: field 'conversations[1].value.name': the function's name is empty"]
    assert issues_of({**row("x"), "conversations": [{"from": "human", "value": "q"},
                                                    {"from": "observation", "value": "r"}]}, "sharegpt") == [
        "d.jsonl:7: field 'conversations[1]': a tool result with no call to answer: it must follow an assistant turn "
        "that calls a tool, one result per call"]


# -- rendering -----------------------------------------------------------------------------------------

# A small template that writes tools itself, in the released ERNIE-4.5-21B-A3B-Thinking template's
# markers: the list in the system turn, calls after the reply, results in a tool turn.
TOOL_TEMPLATE = (
    "{%- if tools -%}{{- '<tool_list>' + (tools | tojson) + '</tool_list>\\n' -}}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}{{- 'User: ' + m.content + '\\n' -}}"
    "{%- elif m.role == 'tool' -%}{{- 'Tool: <tool_output>' + m.content + '</tool_output>\\n' -}}"
    "{%- elif m.role == 'assistant' -%}{{- 'Assistant: ' + (m.content or '') -}}"
    "{%- for c in (m.tool_calls or []) -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + c.function.name + '\", \"arguments\": ' + c.function.arguments + '}\\n</tool_call>' -}}"
    "{%- endfor -%}{{- '<|end_of_sentence|>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)


@pytest.fixture(scope="module")
def tool_template(tiny_moe_dir, tmp_path_factory):
    from models.loader import load_tokenizer
    from tests.test_chat_templates import checkpoint_with_template

    return load_tokenizer(checkpoint_with_template(tiny_moe_dir, tmp_path_factory.mktemp("tools"), TOOL_TEMPLATE))


def learned(tokenizer, example) -> list[str]:
    messages, trainable = conversation_of(example)
    return [text for text, trained in conversation_segments(tokenizer, messages, trainable, **example.template_kwargs)
            if trained]


def test_a_template_without_tools_gets_the_studio_layout_and_only_the_assistant_learns(tiny_tokenizer):
    example = convert({**ROW, "messages": [{"role": "system", "content": "Be brief."}, *ROW["messages"]]}, "messages")
    assert not renders_tools(tiny_tokenizer)
    messages, trainable = conversation_of(example)
    segments = conversation_segments(tiny_tokenizer, messages, trainable, **example.template_kwargs)
    assert segments == [
        ("<|begin_of_sentence|>Be brief.\n\n<tool_list>\nget_weather(city: string) - Weather in a city\n</tool_list>\n"
         "User: Weather in Oslo?\nAssistant: ", False),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|end_of_sentence|>', True),
        ('User: <tool_output>{"sky": "rainy"}</tool_output>\nAssistant: ', False),
        ("It is rainy in Oslo.<|end_of_sentence|>", True)]
    features, _ = encode_sft(tiny_tokenizer, example, 512)
    taught = tiny_tokenizer.decode([t for t in features["labels"] if t != IGNORE_INDEX])
    assert taught == "".join(text for text, trained in segments if trained)


def test_two_results_fold_into_one_user_turn_and_signatures_keep_every_schema():
    calls = {"role": "assistant", "content": "Both.", "tool_calls": [OSLO.to_openai(), OSLO.to_openai()]}
    folded = fold_tools([ASK, calls, RESULT, RESULT], [])
    assert folded[1] == {"role": "assistant", "content": "Both.\n" + OSLO.text() + "\n" + OSLO.text()}
    assert folded[2] == {"role": "user", "content": '<tool_output>{"sky": "rainy"}</tool_output>\n'
                                                    '<tool_output>{"sky": "rainy"}</tool_output>'}
    schema = {"name": "find", "parameters": {"type": "object", "required": ["q"], "properties": {
        "q": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
        "tags": {"type": "array", "items": {"type": "string"}}}}}
    assert signature(schema) == 'find(q: string, unit?: "c" | "f", tags?: {"type": "array", "items": {"type": "string"}})'
    assert signature({"name": "now"}) == "now()"


def test_a_template_that_knows_tools_is_given_them_and_the_call_is_learned(tool_template):
    assert renders_tools(tool_template)
    example = convert(ROW, "messages")
    assert learned(tool_template, example) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|end_of_sentence|>',
        "It is rainy in Oslo.<|end_of_sentence|>"]
    prompt = render(tool_template, [ASK], add_generation_prompt=True, tools=[WEATHER])
    assert prompt.startswith('<tool_list>[{"type": "function", "function": {"name": "get_weather"')


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The released ERNIE 4.5 tokenizer with its thinking template (which renders tools) and its
    non-thinking one (which does not)."""
    import shutil

    from models.loader import load_tokenizer
    from tests.test_chat_templates import REAL, checkpoint_with_template, released_template

    if not REAL.is_dir():
        pytest.skip("../shared/real_ernie is absent")
    found = {}
    for which in ("thinking", "non-thinking"):
        into = checkpoint_with_template(REAL / "tokenizer", tmp_path_factory.mktemp(which), released_template(which))
        shutil.copy(REAL / "ERNIE-4.5-0.3B-Base-PT" / "config.json", into / "config.json")
        found[which] = load_tokenizer(into)
    return found


def test_the_released_thinking_template_renders_the_tools_and_the_call_is_learned(released):
    tokenizer = released["thinking"]
    assert renders_tools(tokenizer)
    example = convert(ROW, "messages")
    messages, trainable = conversation_of(example)
    segments = conversation_segments(tokenizer, messages, trainable, **example.template_kwargs)
    assert segments[0][0].endswith(
        '<tool_list>\n[{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", '
        '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]\n'
        "</tool_list><|im_end|>\n\n<|im_start|>user\nWeather in Oslo?<|im_end|>\n\n<|im_start|>assistant\n")
    assert segments[1] == ('\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
                           "<|im_end|>", True)
    assert segments[2] == ('\n\n<|im_start|>tool\n<tool_output>"{\\"sky\\": \\"rainy\\"}"</tool_output><|im_end|>'
                           "\n\n<|im_start|>assistant\n<think>\n", False)
    assert parse_tool_calls(segments[1][0]) == ("<|im_end|>", [ToolCall("get_weather", '{"city": "Oslo"}')])
    assert not renders_tools(released["non-thinking"])
    assert "<tool_list>\nget_weather(city: string) - Weather in a city\n</tool_list>" in \
        render(released["non-thinking"], [ASK], add_generation_prompt=True, tools=[WEATHER])


# -- the parser ----------------------------------------------------------------------------------------

def test_parser_reads_calls_back_and_leaves_what_is_not_a_call():
    assert parse_tool_calls(OSLO.text()) == ("", [ToolCall("get_weather", '{"city": "Oslo"}')])
    two = 'Checking.\n<tool_call>{"name":"a","arguments":"{\\"x\\":1}"}</tool_call>\n<tool_call>\n' \
          '{"name": "b", "arguments": {}}\n</tool_call>'
    assert parse_tool_calls(two) == ("Checking.", [ToolCall("a", '{"x": 1}'), ToolCall("b", "{}")])
    for text in ("no call", "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}\n</tool_call>",
                 '<tool_call>{"arguments": {}}</tool_call>', '<tool_call>{"name": "a", "arguments": [1]}</tool_call>',
                 '<tool_call>{"name": "a", "arguments": {}}'):
        assert parse_tool_calls(text) == (text, [])
    assert OSLO.to_openai() == {"id": "c1", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


# -- the generated set, and learning it -------------------------------------------------------------

TRAIN_ROWS, HELD_OUT_ROWS = 240, 30


@pytest.fixture(scope="module")
def tool_set(tmp_path_factory) -> tuple[Path, Path]:
    return write_tool_set(tmp_path_factory.mktemp("tool-set"), TRAIN_ROWS, HELD_OUT_ROWS, seed=0)


def test_the_generated_set_is_valid_balanced_and_holds_out_new_questions(tool_set, tmp_path):
    train, held_out = tool_set
    assert [validate_file(path).rows_valid for path in (train, held_out)] == [TRAIN_ROWS, HELD_OUT_ROWS]
    asked = {json.dumps(messages) for messages, _ in expected_calls(train)}
    held = expected_calls(held_out)
    assert not any(json.dumps(messages) in asked for messages, _ in held)
    assert len({json.dumps(messages) for messages, _ in held}) == HELD_OUT_ROWS
    assert [call["name"] for _, call in held[:3]] == ["get_weather", "convert", "calculate"]
    for messages, call in held:  # every argument is in the question (an operation by its word)
        words = {"add": "plus", "subtract": "minus", "multiply": "times"}
        assert all(str(words.get(value, value)) in messages[0]["content"] for value in call["arguments"].values())
    assert write_tool_set(tmp_path, TRAIN_ROWS, HELD_OUT_ROWS, seed=0)[0].read_bytes() == train.read_bytes()
    assert json.loads(train.read_text().splitlines()[0])["tools"] == list(TOOLS)
    calls_only, _ = write_tool_set(tmp_path / "calls", 3, 3, answers=False)
    assert [len(json.loads(line)["messages"]) for line in calls_only.read_text().splitlines()] == [2, 2, 2]
    with pytest.raises(ValueError, match="60 held-out rows need 20 weather questions, but only 18 distinct"):
        write_tool_set(tmp_path / "more", 3, 60)


def test_the_sets_values_are_written_alike_in_the_question_and_in_the_call(tiny_tokenizer):
    """What makes the arguments learnable by the tiny model (docs/function_calling.md): each city
    and digit is the same pieces in a question (after the word's "▁") and in a call (after '"' or
    ': '), and no two cities start with the same piece."""
    def pieces(text: str) -> list[str]:
        return tiny_tokenizer.convert_ids_to_tokens(tiny_tokenizer.encode(text, add_special_tokens=False))

    firsts = set()
    for city in CITIES:
        in_call = pieces(arguments_text({"city": city}))
        in_call = in_call[in_call.index("▁") + 2:-2]  # between the value's quotes
        firsts.add(in_call[0])
        for ask in WEATHER_ASKS:
            question = pieces(ask.format(city=city))
            assert any(question[i:i + len(in_call) + 1] == ["▁", *in_call] for i in range(len(question))), \
                (city, question, in_call)
    assert len(firsts) == len(CITIES)
    for number in NUMBERS:
        assert pieces(f"What is {number} plus 3?")[4:6] == ["▁", *pieces(arguments_text({"a": number}))[-2:-1]]


def test_sft_lora_learns_to_answer_a_question_with_a_tool_call(workdir, tiny_moe_dir, tool_set):
    """In the time a test has (about 20 s of training on two CPU cores), the tiny MoE learns to
    answer with a call: every held-out question gets a reply that opens one, which the untuned model
    never writes. Calls with the right arguments take far longer: full fine-tuning reaches 80% of
    held-out questions after 400 steps of 8, SFT-LoRA 76% after 1,200 (docs/function_calling.md,
    bench/tool_calls.py)."""
    from models.chat_engine import ChatEngine

    train, held_out = tool_set
    untuned = call_accuracy(ChatEngine.load(str(tiny_moe_dir)), held_out)
    assert untuned["opened"] == 0 and untuned["accuracy"] <= 0.05, untuned["replies"][:3]
    job_dir = workdir / "jobs" / "tool-calls"
    config = example_config("tiny_sft_lora.yaml", **{
        "data.train": [{"path": str(train), "format": "messages"}], "optim.max_steps": 60,
        "optim.per_device_batch_size": 4, "optim.lr_scheduler": "constant", "logging.logging_steps": 10,
        "optim.learning_rate": 5e-3})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tuned = call_accuracy(ChatEngine.load(str(job_dir / "output")), held_out)
    print({key: value for key, value in tuned.items() if key != "replies"})
    assert tuned["opened"] >= 0.8, tuned["replies"][:5]


# -- LLaMA-Factory's glaive demo -------------------------------------------------------------------------

@pytest.mark.skipif(not GLAIVE.is_file(), reason="../shared/datasets/glaive_toolcall_en_demo.json is absent")
def test_the_glaive_demo_is_read_whole_and_its_calls_are_learned_as_written(tiny_tokenizer):
    from trainer.data.formats import iter_examples

    report = validate_file(GLAIVE)
    assert (report.format, report.rows_total, report.rows_invalid) == ("sharegpt", 300, 0)
    examples = list(iter_examples(GLAIVE))
    assert sum(len(turn.tool_calls) for example in examples for turn in example.messages) == 211
    assert sum(bool(example.tools) for example in examples) == 191
    calling = [example for example in examples if any(turn.tool_calls for turn in example.messages)]
    for example in calling[:20]:
        taught = parse_tool_calls("".join(learned(tiny_tokenizer, example)))[1]
        assert taught == [call for turn in example.messages for call in turn.tool_calls]
