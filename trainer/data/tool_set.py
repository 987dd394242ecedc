"""A synthetic function-calling set: questions about the weather in a city, a unit conversion or
arithmetic on two numbers, each answered by a call to one of three functions with the arguments
taken from the question, the function's result and a short final answer built from it. Drawn from
a fixed seed, so the same call writes the same rows. The values come from closed lists all seen in
training (nine cities, the digits 2 to 9, four units, three operations), chosen so that the tiny
model's tokenizer writes each the same way in the question and in the call; a held-out question is
a new phrasing of a city or a new combination of values and words (docs/function_calling.md).

`write_tool_set(folder, train, held_out, seed)` writes `folder/train.jsonl` and
`folder/held_out.jsonl` (the `messages` format with `tools`); no held-out question is ever asked in
training. `call_accuracy(engine, path)` asks each held-out question alone and counts the greedy
replies that start a call, parse (models/tool_calls.py) into one, name the expected function, and
have exactly the expected arguments; `api_call_accuracy(client, model, path)` counts the same
through an OpenAI client, from `message.tool_calls`. The learning test and bench/tool_calls.py use
them (docs/function_calling.md).

`write_fixed_call_set(path)` writes a smaller set whose calls never change their arguments (the
time, a six-sided die, the weather in Paris), which the tiny model learns in seconds: the tests of
the server's tool calls and of the Chat tab's tools train on it.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from models.tool_calls import TOOL_CALL_OPEN, ToolCall, arguments_text, parse_tool_calls
from plumbing.files import atomic_write_text


def _function(name: str, properties: dict) -> dict:
    """A function declared as briefly as OpenAI's shape allows: every row carries all of them, and
    the tiny model's tokenizer spells JSON nearly a character a token."""
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": properties}}}


TOOLS = (
    _function("get_weather", {"city": {"type": "string"}}),
    _function("convert", {"value": {"type": "number"}, "unit": {"type": "string"}, "to": {"type": "string"}}),
    _function("calculate", {"a": {"type": "number"}, "op": {"type": "string"}, "b": {"type": "number"}}),
)

# A weather service knows its cities, so the questions name cities from a closed list, each seen in
# training. These nine are those the tiny model's tokenizer splits alike in a question (after
# "▁") and in a call (after '"'), each starting with a piece no other one starts with: the first
# piece names the city, and a model writes the rest as it learnt the spelling. Cities whose first
# piece differs (Paris is "▁P" in a question, "P" in a call) need the model to map one piece to
# another before it can copy, which the random-weight tiny model did not learn in any run measured
# (docs/function_calling.md).
CITIES = ("Berlin", "Rome", "Lima", "Oslo", "Dublin", "Vienna", "Havana", "Nairobi", "Quito")
SKIES = ("sunny", "cloudy", "rainy", "windy")
# unit -> (the other unit, factor to it)
UNITS = {"km": ("miles", 0.621), "miles": ("km", 1.609), "kg": ("pounds", 2.205), "pounds": ("kg", 0.454)}
OPS = {"plus": ("add", lambda a, b: a + b), "minus": ("subtract", lambda a, b: a - b),
       "times": ("multiply", lambda a, b: a * b)}
# Numbers are single digits: one piece each, the same in the question and the call.
NUMBERS = range(2, 10)

WEATHER_ASKS = ("What is the weather in {city}?", "How is the weather in {city} today?", "Is it sunny in {city}?",
                "Tell me the weather for {city}.", "Weather in {city}, please.", "Will it rain in {city}?")
CONVERT_ASKS = ("Convert {value} {unit} to {other}.", "How many {other} is {value} {unit}?",
                "What is {value} {unit} in {other}?")
CALCULATE_ASKS = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b} for me.")
KINDS = ("weather", "convert", "calculate")


def _held_out(kind: str, *indices: int) -> bool:
    """Whether a question (its kind and the indices of its values and phrasing) is one only held-out
    rows ask: each city in two of its six phrasings, a quarter of the conversions and a fifth of the
    sums, differences and products, so every held-out question is one training never asks."""
    if kind == "weather":
        city, ask = indices
        return ask in (city % len(WEATHER_ASKS), (city + 3) % len(WEATHER_ASKS))
    if kind == "convert":
        return sum(indices) % 4 == 0
    a, op, b, ask = indices
    return (a + 2 * b + op + ask) % 5 == 0


def _sizes(kind: str) -> tuple[int, ...]:
    """How many values each index of a question of `kind` takes (see `sample`)."""
    return {"weather": (len(CITIES), len(WEATHER_ASKS)),
            "convert": (len(NUMBERS), len(UNITS), len(CONVERT_ASKS)),
            "calculate": (len(NUMBERS), len(OPS), len(NUMBERS), len(CALCULATE_ASKS))}[kind]


def held_out_questions(kind: str) -> int:
    """How many distinct held-out questions of `kind` there are."""
    return sum(_held_out(kind, *indices) for indices in itertools.product(*map(range, _sizes(kind))))


def sample(rng: random.Random, kind: str, held_out: bool = False) -> tuple[str, dict, dict]:
    """(the question, the expected call as {"name", "arguments"}, the whole conversation row) of a
    question of `kind` (one of KINDS), drawn among the held-out questions or among the others."""
    while True:
        indices = tuple(rng.randrange(size) for size in _sizes(kind))
        if _held_out(kind, *indices) == held_out:
            break
    if kind == "weather":
        city, ask = CITIES[indices[0]], WEATHER_ASKS[indices[1]]
        question = ask.format(city=city)
        call = {"name": "get_weather", "arguments": {"city": city}}
        degrees, sky = rng.randint(-5, 35), rng.choice(SKIES)
        result = {"degrees": degrees, "sky": sky}
        answer = f"{degrees} degrees, {sky}."
    elif kind == "convert":
        value, unit = NUMBERS[indices[0]], tuple(UNITS)[indices[1]]
        other, factor = UNITS[unit]
        question = CONVERT_ASKS[indices[2]].format(value=value, unit=unit, other=other)
        call = {"name": "convert", "arguments": {"value": value, "unit": unit, "to": other}}
        converted = round(value * factor, 1)
        result = {"value": converted}
        answer = f"{converted} {other}."
    else:
        a, word, b = NUMBERS[indices[0]], tuple(OPS)[indices[1]], NUMBERS[indices[2]]
        op, apply = OPS[word]
        question = CALCULATE_ASKS[indices[3]].format(a=a, op=word, b=b)
        call = {"name": "calculate", "arguments": {"a": a, "op": op, "b": b}}
        result = {"result": apply(a, b)}
        answer = f"It is {apply(a, b)}."
    return question, call, call_row(TOOLS, question, call["name"], call["arguments"], result, answer)


def call_row(tools, question: str, name: str, arguments: dict, result: dict, answer: str) -> dict:
    """One conversation: the question, the call to `name` with `arguments`, its result, the answer."""
    return {"tools": list(tools), "messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": name, "arguments": arguments_text(arguments)}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": json.dumps(result)},
        {"role": "assistant", "content": answer},
    ]}


def write_tool_set(folder: str | Path, train: int, held_out: int, seed: int = 0,
                   answers: bool = True) -> tuple[Path, Path]:
    """`folder/train.jsonl` and `folder/held_out.jsonl`: `train` and `held_out` rows, the three
    kinds of question in turn, the held-out ones distinct and never asked in training. Without
    `answers` a training row ends with its call (no result, no final answer): the learning bench
    measures calls, and half the tokens train twice as fast."""
    for i, kind in enumerate(KINDS):
        wanted, there = len(range(i, held_out, len(KINDS))), held_out_questions(kind)
        if wanted > there:
            raise ValueError(f"{held_out} held-out rows need {wanted} {kind} questions, but only {there} distinct "
                             f"held-out {kind} questions exist")
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [sample(rng, KINDS[i % len(KINDS)])[2] for i in range(train)]
    if not answers:
        rows = [{**row, "messages": row["messages"][:2]} for row in rows]
    asked: set[str] = set()
    kept: list[dict] = []
    while len(kept) < held_out:
        question, _, row = sample(rng, KINDS[len(kept) % len(KINDS)], held_out=True)
        if question not in asked:
            asked.add(question)
            kept.append(row)
    paths = (folder / "train.jsonl", folder / "held_out.jsonl")
    for path, items in zip(paths, (rows, kept)):
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in items))
    return paths


def expected_calls(path: str | Path) -> list[tuple[list[dict], dict]]:
    """(the conversation up to the question, the call it should get) of each row of a tool-set file."""
    found = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        ask, reply = row["messages"][0], row["messages"][1]["tool_calls"][0]["function"]
        found.append(([ask], {"name": reply["name"], "arguments": json.loads(reply["arguments"])}))
    return found


def call_accuracy(engine, path: str | Path, max_tokens: int = 96) -> dict:
    """How a chat engine answers a tool-set file's questions, each asked alone (greedy, decoded
    together: models/batch_generate.py): `score`'s shares, with the replies for a failure's message."""
    from models.batch_generate import stream_batch
    from models.chat_engine import Prompt
    from models.chat_request import SamplingParams
    from models.chat_template import encode_conversation, render

    tools = list(TOOLS)
    cases = expected_calls(path)
    prompts = [Prompt(ids=encode_conversation(engine.tokenizer, messages, tools=tools)[0],
                      text=render(engine.tokenizer, messages, add_generation_prompt=True, tools=tools),
                      max_new_tokens=max_tokens, thinking=False) for messages, _ in cases]
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    replies = [""] * len(prompts)
    for i, chunk in stream_batch(engine, prompts, [params] * len(prompts), max_rows=len(prompts)):
        replies[i] += chunk.content
    answers = [(reply.lstrip().startswith(TOOL_CALL_OPEN), parse_tool_calls(reply)[1]) for reply in replies]
    return {**score(answers, [call for _, call in cases]), "replies": replies}


def api_call_accuracy(client, model: str, path: str | Path, max_tokens: int = 96) -> dict:
    """The same through an OpenAI client (the official `openai` package's, or any with its
    `chat.completions.create`): each question asked alone with the set's tools, greedy, and the
    calls read from `message.tool_calls` as the server parsed them; a reply that opens a call the
    server could not parse counts as opened. `score`'s shares, with the messages' text."""
    cases = expected_calls(path)
    answers, texts = [], []
    for messages, _ in cases:
        message = client.chat.completions.create(model=model, messages=messages, tools=list(TOOLS), temperature=0,
                                                 max_tokens=max_tokens).choices[0].message
        calls = [ToolCall(call.function.name, call.function.arguments) for call in message.tool_calls or []]
        text = message.content or ""
        answers.append((bool(calls) or text.lstrip().startswith(TOOL_CALL_OPEN), calls))
        texts.append(text + "".join(call.text() for call in calls))
    return {**score(answers, [call for _, call in cases]), "replies": texts}


def score(answers: list[tuple[bool, list[ToolCall]]], expected: list[dict]) -> dict:
    """Shares of the questions whose answer (whether the reply opened a call, the calls read from it)
    - `opened` a tool call;
    - `parsed`: holds exactly one call;
    - `right_function`: that call is to the expected function;
    - `accuracy`: with exactly the expected arguments too;
    and `by_function`: `accuracy` over each function's questions."""
    counts = dict.fromkeys(("opened", "parsed", "right_function", "accuracy"), 0)
    right: dict[str, list[bool]] = {}
    for (opened, calls), call in zip(answers, expected):
        counts["opened"] += opened
        exact = len(calls) == 1 and calls[0].name == call["name"] and \
            json.loads(calls[0].arguments) == call["arguments"]
        right.setdefault(call["name"], []).append(exact)
        if len(calls) == 1:
            counts["parsed"] += 1
            counts["right_function"] += calls[0].name == call["name"]
            counts["accuracy"] += exact
    return {**{key: count / len(expected) for key, count in counts.items()}, "questions": len(expected),
            "by_function": {name: sum(hits) / len(hits) for name, hits in right.items()}}


# -- a set with fixed calls ----------------------------------------------------------------------------
# Questions each answered by one call whose arguments never change, the function's result (fixed
# too) and a final answer that repeats it: what the tiny random-weight model can learn in seconds
# (choosing a function and writing a known call, not copying from the question), for the tests of
# the server's and the Chat tab's tool calls.

FIXED_TOOLS = (
    _function("get_time", {}),
    _function("roll_die", {"sides": {"type": "integer"}}),
    _function("get_weather", {"city": {"type": "string"}}),
)
# (phrasings of the question, the call's function and arguments, its result, the final answer)
FIXED_CALLS = (
    (("What time is it?", "Tell me the time.", "What is the time now?", "Time, please."),
     "get_time", {}, {"time": "10:30"}, "It is 10:30."),
    (("Roll a die.", "Roll a die for me.", "Throw a die, please.", "Can you roll a die?"),
     "roll_die", {"sides": 6}, {"value": 4}, "You rolled a 4."),
    (("What is the weather in Paris?", "How is the weather in Paris?", "Weather in Paris, please.",
      "Tell me the weather for Paris."),
     "get_weather", {"city": "Paris"}, {"degrees": 12, "sky": "rainy"}, "12 degrees, rainy."),
)


def write_fixed_call_set(path: str | Path) -> Path:
    """`path` (jsonl, the `messages` format with `tools`): every phrasing of FIXED_CALLS once."""
    rows = [call_row(FIXED_TOOLS, question, *rest) for asks, *rest in FIXED_CALLS for question in asks]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path
