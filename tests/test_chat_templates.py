"""Conversations split by the checkpoint's own chat template, including templates that do not render
incrementally: the learned spans are exactly the assistant replies (never a generation prompt or a
user turn), prompts equal the template's rendering, and `data check` reports a row a template
cannot render instead of crashing.

`LAST_QUERY_TEMPLATE` reproduces, in small, what ERNIE-4.5-21B-A3B-Thinking's released template
does (`../shared/real_ernie`): reasoning is kept only for replies after the last question, and the
generation prompt `<|im_start|>assistant\\n<think>\\n` is written whether asked for or not. The
tests at the end run the released templates themselves and skip when that folder is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.chat_template import TemplateError, conversation_segments, encode_conversation, render
from trainer.data.formats import Example, Turn
from trainer.cli import main as trainer_cli
from trainer.data.tokenize import IGNORE_INDEX, TokenizationError, encode_dpo, encode_sft, encode_sft_examples

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_ernie"

LAST_QUERY_TEMPLATE = (
    "{{- '<|im_start|>system\\nthink_mode=True<|im_end|>\\n\\n' -}}"
    "{%- set ns = namespace(last=-1) -%}"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last = loop.index0 -%}{%- endif -%}{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}{{- '<|im_start|>user\\n' + m.content + '<|im_end|>\\n\\n' -}}"
    "{%- elif m.role == 'assistant' -%}"
    "{%- set content = m.content -%}{%- set reasoning = '' -%}"
    "{%- if '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{%- if loop.index0 > ns.last -%}{{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    "{{- '<response>\\n' + content + '\\n</response>\\n<|im_end|>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' -}}"
)

# A template that drops what the assistant said: no way to know what the model must learn.
DEAF_TEMPLATE = (
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{{- 'User: ' + m.content + '\\n' -}}"
    "{%- else -%}{{- 'Assistant: ok<|end_of_sentence|>' -}}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)

TWO_TURNS = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "<think>\nthey greet me\n</think>\n\nHello!"},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
]


def checkpoint_with_template(source: Path, into: Path, template: str) -> Path:
    """A copy of a checkpoint's config and tokenizer whose tokenizer_config carries `template`."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json"):
        if (source / name).is_file():
            shutil.copy(source / name, into / name)
    config_path = into / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["chat_template"] = template
    config_path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return into


@pytest.fixture(scope="module")
def last_query_dir(tiny_moe_dir, tmp_path_factory) -> Path:
    return checkpoint_with_template(tiny_moe_dir, tmp_path_factory.mktemp("last-query"), LAST_QUERY_TEMPLATE)


@pytest.fixture(scope="module")
def last_query(last_query_dir):
    from models.loader import load_tokenizer

    return load_tokenizer(last_query_dir)


def learned(segments) -> list[str]:
    return [text for text, trained in segments if trained]


def as_example(messages: list[dict]) -> Example:
    return Example(messages=[Turn(m["role"], m["content"], True) for m in messages], line=3, source="rows.jsonl")


def test_segments_are_the_whole_rendering_and_only_replies_are_learned(last_query):
    segments = conversation_segments(last_query, TWO_TURNS)
    assert "".join(text for text, _ in segments) == render(last_query, TWO_TURNS, add_generation_prompt=False)
    # the first reply lost its reasoning once a later question exists; the last keeps it, after the
    # `<think>` opening the generation prompt wrote
    assert learned(segments) == ["Hello!\n</response>\n<|im_end|>",
                                 "add them\n</think>\n<response>\n4\n</response>\n<|im_end|>"]


def test_generation_prompt_the_template_always_appends_is_not_learned(last_query):
    segments = conversation_segments(last_query, TWO_TURNS[:2])
    assert segments[-1] == ("\n\n<|im_start|>assistant\n<think>\n", False)
    features, _ = encode_sft(last_query, as_example(TWO_TURNS[:2]), max_seq_len=512)
    taught = last_query.decode([t for t in features["labels"] if t != IGNORE_INDEX])
    assert taught.endswith("</response>\n<|im_end|>") and "<|im_start|>" not in taught


def test_multi_turn_prompt_is_the_templates_rendering(last_query):
    """The last question is never dropped: the ids decode to what the template renders."""
    prompt = TWO_TURNS[:3]
    expected = render(last_query, prompt, add_generation_prompt=True)
    ids, trained = encode_conversation(last_query, prompt)
    assert last_query.decode(ids) == expected and expected.endswith("What is 2+2?<|im_end|>\n\n"
                                                                    "<|im_start|>assistant\n<think>\n")
    assert trained.count(True) == len(last_query("Hello!\n</response>\n<|im_end|>",
                                                 add_special_tokens=False)["input_ids"])


def test_chat_engine_prompt_equals_rendering(last_query):
    from models.chat_engine import ChatEngine

    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=4096), generation_config=None)
    engine = ChatEngine(model, last_query, name="last-query")
    prompt = engine.prepare(TWO_TURNS[:3], max_tokens=16)
    assert prompt.text == render(last_query, TWO_TURNS[:3], add_generation_prompt=True)
    assert last_query.decode(prompt.ids) == prompt.text


def test_dpo_replies_stop_at_the_end_marker(last_query):
    example = Example(messages=[Turn(m["role"], m["content"], True) for m in TWO_TURNS[:3]],
                      chosen="<think>\nadd\n</think>\n\n4", rejected="5", line=1, source="pairs.jsonl")
    features, _ = encode_dpo(last_query, example, max_seq_len=512, max_prompt_len=256)
    chosen = [t for t in features.response_labels[features.prompt_len - 1:][:features.chosen_len]]
    assert last_query.decode(chosen) == "add\n</think>\n<response>\n4\n</response>\n<|im_end|>"


def test_template_that_hides_replies_is_a_row_error_not_a_traceback(tiny_moe_dir, tmp_path):
    from models.loader import load_tokenizer

    deaf = load_tokenizer(checkpoint_with_template(tiny_moe_dir, tmp_path / "deaf", DEAF_TEMPLATE))
    with pytest.raises(TemplateError, match="assistant turn 1"):
        conversation_segments(deaf, TWO_TURNS[:2])
    with pytest.raises(TokenizationError, match=r"rows.jsonl:3: .*assistant turn 1"):
        encode_sft_examples(deaf, [as_example(TWO_TURNS[:2])], max_seq_len=512, truncation="truncate_end")


def data_check(path: Path, model: Path) -> tuple[int, dict]:
    """`python -m trainer data check PATH --model MODEL --json`, run in this process (an exception
    fails the test, as a traceback would): its exit status and report."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = trainer_cli(["data", "check", str(path), "--model", str(model), "--json"])
    return status, json.loads(out.getvalue().strip().splitlines()[-1])


def write_rows(path: Path, conversations: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations),
                    encoding="utf-8")
    return path


def test_data_check_two_turn_rows_and_unrenderable_rows(last_query_dir, tiny_moe_dir, tmp_path):
    rows = write_rows(tmp_path / "two_turns.jsonl", [TWO_TURNS, TWO_TURNS[:2]])
    status, report = data_check(rows, last_query_dir)
    assert status == 0 and report["ok"] and report["rows_valid"] == 2
    assert report["stats"]["tokens"]["max"] > report["stats"]["tokens"]["min"] > 0

    deaf = checkpoint_with_template(tiny_moe_dir, tmp_path / "deaf", DEAF_TEMPLATE)
    status, report = data_check(rows, deaf)
    assert status == 1 and not report["ok"] and report["rows_invalid"] == 2
    assert report["issues"][0]["line"] == 1 and "assistant turn 1" in report["issues"][0]["message"]


# ------------------------------------------------------------------ the released templates

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real_ernie is absent")


def released_template(which: str) -> str:
    if which == "thinking":
        info = json.loads((REAL / "ERNIE-4.5-21B-A3B-Thinking" / "hf_model_info.json").read_text(encoding="utf-8"))
        return info["config"]["tokenizer_config"]["chat_template"]
    return json.loads((REAL / "ERNIE-4.5-0.3B-Base-PT" / "tokenizer_config.json").read_text(encoding="utf-8"))[
        "chat_template"]


@pytest.fixture(scope="module")
def released_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("released")
    dirs = {}
    for which in ("thinking", "non-thinking"):
        into = checkpoint_with_template(REAL / "tokenizer", root / which, released_template(which))
        shutil.copy(REAL / "ERNIE-4.5-0.3B-Base-PT" / "config.json", into / "config.json")
        dirs[which] = into
    return dirs


@needs_real
def test_released_thinking_template(released_dirs):
    from models.loader import load_tokenizer

    tokenizer = load_tokenizer(released_dirs["thinking"])
    segments = conversation_segments(tokenizer, TWO_TURNS)
    assert "".join(t for t, _ in segments) == render(tokenizer, TWO_TURNS, add_generation_prompt=False)
    assert learned(segments) == ["Hello!\n</response>\n<|im_end|>",
                                 "add them\n</think>\n<response>\n4\n</response>\n<|im_end|>"]
    assert segments[-1] == ("\n\n<|im_start|>assistant\n<think>\n", False)
    prompt = TWO_TURNS[:3]
    ids, _ = encode_conversation(tokenizer, prompt)
    assert tokenizer.decode(ids) == render(tokenizer, prompt, add_generation_prompt=True)


@needs_real
def test_released_non_thinking_template(released_dirs):
    from models.loader import load_tokenizer

    tokenizer = load_tokenizer(released_dirs["non-thinking"])
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Sky?"},
             {"role": "assistant", "content": "Blue."}]
    segments = conversation_segments(tokenizer, plain)
    assert segments == [("<|begin_of_sentence|>Be brief.\nUser: Hi\nAssistant: ", False),
                        ("Hello!<|end_of_sentence|>", True), ("User: Sky?\nAssistant: ", False),
                        ("Blue.<|end_of_sentence|>", True)]
    ids, _ = encode_conversation(tokenizer, plain[:4])
    assert tokenizer.decode(ids) == render(tokenizer, plain[:4], add_generation_prompt=True)


@needs_real
def test_released_templates_pack_a_multi_turn_preference_pair(released_dirs):
    """A pair compared after a conversation (an earlier reply with its reasoning): the prompt is the
    template's rendering of that conversation, earlier reasoning dropped as the thinking template
    drops it, and each reply is learned up to its end marker."""
    from models.loader import load_tokenizer
    from trainer.data.formats import convert

    row = {"messages": [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "<think>add</think>5"},
                        {"role": "user", "content": "And 2+4?"}],
           "chosen_response": [{"role": "assistant", "content": "6"}],
           "rejected_response": [{"role": "assistant", "content": "5"}]}
    example = convert(row, "chatml_dpo")
    expected = {"thinking": ("<|im_start|>assistant\n<response>\n5\n</response>\n<|im_end|>\n\n<|im_start|>user\n"
                             "And 2+4?<|im_end|>\n\n<|im_start|>assistant\n<think>\n",
                             "\n</think>\n<response>\n6\n</response>\n<|im_end|>",
                             "\n</think>\n<response>\n5\n</response>\n<|im_end|>"),
                "non-thinking": ("User: 2+3?\nAssistant: <think>add</think>5<|end_of_sentence|>User: And 2+4?\n"
                                 "Assistant: ", "6<|end_of_sentence|>", "5<|end_of_sentence|>")}
    for which, (prompt_end, chosen, rejected) in expected.items():
        tokenizer = load_tokenizer(released_dirs[which])
        features, _ = encode_dpo(tokenizer, example, 2048, 2048)
        prompt = features.input_ids[:features.prompt_len]
        assert tokenizer.decode(prompt) == render(tokenizer, [t.to_message() for t in example.messages],
                                                  add_generation_prompt=True)
        assert tokenizer.decode(prompt).endswith(prompt_end), which
        learned = [label for label in features.response_labels if label != IGNORE_INDEX]
        assert tokenizer.decode(learned[:features.chosen_len]) == chosen
        assert tokenizer.decode(learned[features.chosen_len:]) == rejected


@needs_real
def test_released_templates_data_check_two_turn_rows(released_dirs, tmp_path):
    rows = write_rows(tmp_path / "two_turns.jsonl", [TWO_TURNS, TWO_TURNS[:2]])
    for which, model in released_dirs.items():
        status, report = data_check(rows, model)
        assert status == 0 and report["rows_valid"] == 2, (which, report)


def test_data_check_json_reports_a_model_that_cannot_load(tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl", [TWO_TURNS])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    (broken / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    status, report = data_check(rows, broken)
    assert status == 2 and not report["ok"]
    assert report["error"].startswith(f"--model: cannot load the tokenizer of {broken}")


@needs_real
def test_thinking_rows_train_and_chat_with_the_released_thinking_template(workdir, tiny_moe_dir, tmp_path):
    """The tiny MoE given the released thinking template (model.template auto keeps it) learns
    thinking rows and answers through the model server with its reasoning apart, also when the
    question follows an earlier exchange, whose reasoning that template drops."""
    import openai

    from models.server_process import ModelServer
    from tests.conftest import example_config, run_trainer, sample_conversations

    model = shutil.copytree(tiny_moe_dir, tmp_path / "tiny-thinking-released")
    checkpoint_with_template(tiny_moe_dir, model, released_template("thinking"))
    thought = "I remember this from training."
    conversations = sample_conversations()[:12]
    data = tmp_path / "thinking.jsonl"
    thinking = [c[:-1] + [{"role": "assistant", "content": f"<think>\n{thought}\n</think>\n\n{c[-1]['content']}"}]
                for c in conversations]
    # the same questions after an earlier exchange, as the template renders a follow-up
    turns = lambda messages: [m for m in messages if m["role"] != "system"]  # noqa: E731
    follow_ups = [turns(earlier) + turns(row) for earlier, row in zip(conversations[6:], thinking[:6])]
    data.write_text("".join(json.dumps({"messages": row}, ensure_ascii=False) + "\n"
                            for row in thinking + follow_ups), encoding="utf-8")
    config = example_config("tiny_sft_full.yaml", **{"model.name_or_path": str(model), "data.max_seq_len": 320,
                                                      "optim.num_train_epochs": 30})
    config["data"]["train"] = [{"path": str(data), "format": "messages"}]
    job_dir = workdir / "jobs" / "thinking-released"
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    server = ModelServer(str(job_dir / "output"), name="released-thinking", log_path=tmp_path / "serve.log")
    server.start()
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none")
        ask = lambda messages: client.chat.completions.create(  # noqa: E731
            model="released-thinking", messages=messages, temperature=0, max_tokens=100).choices[0].message
        answers = [ask(c[:-1]) for c in conversations]
        assert all(a.model_extra["reasoning_content"] == thought for a in answers)
        exact = sum(a.content == c[-1]["content"].strip() for a, c in zip(answers, conversations))
        assert exact >= 0.5 * len(conversations)
        answers = [ask(row[:-1]) for row in follow_ups]
        assert all(a.model_extra["reasoning_content"] == thought for a in answers)
        exact = sum(a.content == c[-1]["content"].strip() for a, c in zip(answers, conversations))
        assert exact >= 0.5 * len(follow_ups)
    finally:
        server.stop()
