"""A synthetic function-calling set: questions about the weather in a city, a unit conversion or
arithmetic on two numbers, each answered by a call to one of three functions with the arguments
taken from the question, the function's result and a short final answer built from it. Drawn from
a fixed seed, so the same call writes the same rows.

`write_tool_set(folder, train, held_out, seed)` writes `folder/train.jsonl` and
`folder/held_out.jsonl` (the `messages` format with `tools`); no held-out question asks what a
training one does (the same function with the same arguments in the same words).
`call_accuracy(engine, path)` asks each held-out question alone and counts the greedy replies that
start a call, parse (models/tool_calls.py) into one, name the expected function, and have exactly
the expected arguments. The function-calling learning test uses both (docs/function_calling.md).

`write_fixed_call_set(path)` writes a smaller set whose calls never change their arguments (the
time, a six-sided die, the weather in Paris), which the tiny model learns in seconds: the tests of
the server's tool calls and of the Chat tab's tools train on it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from models.tool_calls import TOOL_CALL_OPEN, arguments_text, parse_tool_calls
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

CITIES = ("Paris", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Seoul", "Dublin", "Vienna", "Lisbon",
          "Prague", "Athens", "Warsaw", "Havana", "Nairobi", "Sydney", "Toronto", "Boston", "Denver", "Quito",
          "Manila", "Hanoi")
SKIES = ("sunny", "cloudy", "rainy", "windy")
# unit -> (the other unit, factor to it)
UNITS = {"km": ("miles", 0.621), "miles": ("km", 1.609), "kg": ("pounds", 2.205), "pounds": ("kg", 0.454)}
OPS = {"plus": ("add", lambda a, b: a + b), "minus": ("subtract", lambda a, b: a - b),
       "times": ("multiply", lambda a, b: a * b)}

WEATHER_ASKS = ("What is the weather in {city}?", "How is the weather in {city} today?", "Is it sunny in {city}?",
                "Tell me the weather for {city}.", "Weather in {city}, please.", "Will it rain in {city}?")
CONVERT_ASKS = ("Convert {value} {unit} to {other}.", "How many {other} is {value} {unit}?",
                "What is {value} {unit} in {other}?")
CALCULATE_ASKS = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b} for me.")
KINDS = ("weather", "convert", "calculate")


def _weather_asks(held_out: bool) -> list[tuple[str, str]]:
    """(city, phrasing) pairs: each city is asked about in training in all phrasings but one, held out."""
    return [(city, ask) for i, city in enumerate(CITIES) for j, ask in enumerate(WEATHER_ASKS)
            if (i % len(WEATHER_ASKS) == j) == held_out]


def sample(rng: random.Random, kind: str, held_out: bool = False) -> tuple[str, dict, dict]:
    """(the question, the expected call as {"name", "arguments"}, the whole conversation row) of a
    question of `kind` (one of KINDS)."""
    if kind == "weather":
        city, ask = rng.choice(_weather_asks(held_out))
        question = ask.format(city=city)
        call = {"name": "get_weather", "arguments": {"city": city}}
        degrees, sky = rng.randint(-5, 35), rng.choice(SKIES)
        result = {"degrees": degrees, "sky": sky}
        answer = f"{degrees} degrees, {sky}."
    elif kind == "convert":
        unit = rng.choice(tuple(UNITS))
        other, factor = UNITS[unit]
        value = rng.randint(2, 99)
        question = rng.choice(CONVERT_ASKS).format(value=value, unit=unit, other=other)
        call = {"name": "convert", "arguments": {"value": value, "unit": unit, "to": other}}
        converted = round(value * factor, 1)
        result = {"value": converted}
        answer = f"{converted} {other}."
    else:
        word = rng.choice(tuple(OPS))
        op, apply = OPS[word]
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        question = rng.choice(CALCULATE_ASKS).format(a=a, op=word, b=b)
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


def write_tool_set(folder: str | Path, train: int, held_out: int, seed: int = 0) -> tuple[Path, Path]:
    """`folder/train.jsonl` and `folder/held_out.jsonl`: `train` and `held_out` rows, the three
    kinds of question in turn, no held-out question among the training ones."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [sample(rng, KINDS[i % len(KINDS)]) for i in range(train)]
    asked = {question for question, _, _ in rows}
    kept: list[dict] = []
    while len(kept) < held_out:
        question, _, row = sample(rng, KINDS[len(kept) % len(KINDS)], held_out=True)
        if question not in asked:
            asked.add(question)
            kept.append(row)
    paths = (folder / "train.jsonl", folder / "held_out.jsonl")
    for path, items in zip(paths, ([row for _, _, row in rows], kept)):
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
    together: models/batch_generate.py), as shares of the questions:
    - `opened`: the reply starts a tool call (`<tool_call>`);
    - `parsed`: it holds exactly one call the parser reads;
    - `right_function`: that call is to the expected function;
    - `accuracy`: with exactly the expected arguments too;
    with the replies, for a failure's message."""
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
    counts = dict.fromkeys(("opened", "parsed", "right_function", "accuracy"), 0)
    for reply, (_, expected) in zip(replies, cases):
        _, calls = parse_tool_calls(reply)
        counts["opened"] += reply.lstrip().startswith(TOOL_CALL_OPEN)
        if len(calls) == 1:
            counts["parsed"] += 1
            counts["right_function"] += calls[0].name == expected["name"]
            counts["accuracy"] += calls[0].name == expected["name"] and \
                json.loads(calls[0].arguments) == expected["arguments"]
    return {**{key: count / len(cases) for key, count in counts.items()}, "questions": len(cases), "replies": replies}


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
