"""Tests of trainer.data formats, validation, statistics and the `data check` CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.data_fixtures import SAMPLES, write_json, write_jsonl
from trainer.data import check
from trainer.data.formats import (FORMATS, DataError, Example, Turn, UnknownFormatError, convert,
                                  detect_format, iter_examples, try_convert)
from trainer.data.stats import compute_stats
from trainer.data.validate import load_examples, validate_file

SHARED = Path("/work/shared/datasets")

U, A, S = "user", "assistant", "system"

EXPECTED = {
    "erniekit": Example([Turn(S, "Be brief."), Turn(U, "Hi"), Turn(A, "Hello!", train=False),
                         Turn(U, "And 2+2?"), Turn(A, "4")]),
    "erniekit_dpo": Example([Turn(U, "Hi"), Turn(A, "Hello!"), Turn(U, "2+2?")], chosen="4", rejected="5"),
    "alpaca": Example([Turn(U, "Who are you?"), Turn(A, "A translator."), Turn(U, "Translate\nbonjour"),
                       Turn(A, "hello")]),
    "alpaca_dpo": Example([Turn(U, "2+2?")], chosen="4", rejected="5"),
    "messages": Example([Turn(S, "Think first."), Turn(U, "2+2?"), Turn(A, "<think>2 and 2</think>4")]),
    "messages_dpo": Example([Turn(U, "2+2?")], chosen="4", rejected="5"),
    "chatml_dpo": Example([Turn(U, "Hi"), Turn(A, "Hello!"), Turn(U, "2+2?")], chosen="4", rejected="5"),
    "trl_dpo": Example([Turn(U, "2+2?")], chosen="4", rejected="5"),
    "sharegpt": Example([Turn(S, "Be kind."), Turn(U, "Hi"), Turn(A, "Hello"), Turn(U, "Bye"), Turn(A, "Bye!")]),
    "sharegpt_dpo": Example([Turn(U, "2+2?")], chosen="4", rejected="5"),
    "erniekit_vl": Example([Turn(S, "Be kind."), Turn(U, "Hi"), Turn(A, "Hello"), Turn(U, "Bye"), Turn(A, "Bye!")]),
}


def issues_of(row, format):
    example, issues = try_convert(row, format, "d.jsonl", 12)
    assert example is None
    return [str(issue) for issue in issues]


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_is_detected_and_converted(tmp_path, name):
    path = write_jsonl(tmp_path / "d.jsonl", [{"unrelated": 1, **SAMPLES[name]}] * 2)
    examples, report = load_examples(path)
    assert (report.format, report.kind, report.detected) == (name, FORMATS[name].kind, True)
    assert (report.rows_total, report.rows_valid, report.ok) == (2, 2, True)
    expected = EXPECTED[name]
    assert [(e.messages, e.chosen, e.rejected) for e in examples] == [
        (expected.messages, expected.chosen, expected.rejected)] * 2
    assert [(e.line, e.source) for e in examples] == [(1, str(path)), (2, str(path))]
    assert {e.kind for e in examples} == {FORMATS[name].kind}


def test_formats_table_lists_fields_for_the_ui():
    for spec in FORMATS.values():
        assert spec.kind in ("sft", "preference") and spec.required and spec.description
    assert FORMATS["erniekit"].required == ("src", "tgt")


def test_erniekit_single_strings_and_is_system():
    assert convert({"src": "q", "tgt": "a"}, "erniekit").messages == [Turn(U, "q"), Turn(A, "a")]
    example = convert({"src": ["You are terse.", "q"], "tgt": ["unused", "a"], "label": [1, 1], "is_system": 1},
                      "erniekit")
    assert example.messages == [Turn(S, "You are terse."), Turn(U, "q"), Turn(A, "a")]


def test_erniekit_errors():
    assert issues_of({"src": "q", "tgt": 5}, "erniekit") == [
        "d.jsonl:12: field 'tgt': expected a string or a list of strings, got int 5"]
    assert issues_of({"src": ["a", "b"], "tgt": ["x"]}, "erniekit") == [
        "d.jsonl:12: field 'tgt': has 1 item but 'src' has 2; give one reply per prompt"]
    assert issues_of({"src": ["a"], "tgt": ["x"], "label": [2]}, "erniekit") == [
        "d.jsonl:12: field 'label[0]': expected 0 or 1, got int 2"]
    assert issues_of({"src": ["a"], "tgt": ["x"], "label": [0]}, "erniekit") == [
        "d.jsonl:12: field 'label': every turn has label 0: there is nothing to train on"]
    assert issues_of({"src": ["a", "b"], "tgt": ["x", "y"], "label": [1]}, "erniekit") == [
        "d.jsonl:12: field 'label': has 1 values but there are 2 turns; give one 0/1 per turn"]
    assert issues_of({"src": [" "], "tgt": ["x"]}, "erniekit") == ["d.jsonl:12: field 'src[0]': empty user turn"]
    assert issues_of({"tgt": "x"}, "erniekit") == ["d.jsonl:12: field 'src': required field is missing"]


def test_erniekit_dpo_shapes_and_errors():
    flat = convert({"src": "q", "response": ["bad", "good"], "sort": [0, 1]}, "erniekit_dpo")
    assert (flat.messages, flat.chosen, flat.rejected) == ([Turn(U, "q")], "good", "bad")
    assert issues_of({"src": "q", "response": ["a", "b"], "sort": [1, 0, 0]}, "erniekit_dpo") == [
        "d.jsonl:12: field 'sort': has 3 ranks but 'response' has 2 replies; give one rank per reply"]
    assert issues_of({"src": "q", "response": ["a", "b"], "sort": [1, 1]}, "erniekit_dpo") == [
        "d.jsonl:12: field 'sort': both replies have the same rank [1, 1]; the preferred one must be larger"]
    assert issues_of({"src": "q", "response": ["a", "a"], "sort": [1, 0]}, "erniekit_dpo") == [
        "d.jsonl:12: field 'response': chosen and rejected replies are identical; a preference pair needs two "
        "different replies"]
    assert issues_of({"src": ["q", "r"], "tgt": [], "response": ["a", "b"], "sort": [1, 0]}, "erniekit_dpo") == [
        "d.jsonl:12: field 'tgt': has 0 items but a DPO row needs one fewer than 'src' (1): the replies before "
        "the last prompt"]
    assert issues_of({"src": "q", "response": [["a", "u", "b"], ["c"]], "sort": [1, 0]}, "erniekit_dpo") == [
        "d.jsonl:12: field 'response[0]': expected one reply (a string or a one-item list), got a list of 3: "
        "a reply spanning several turns (a session-level response) is not supported; put the turns before the "
        "compared reply in the conversation"]


def test_alpaca_empty_input_and_system():
    example = convert({"instruction": "Hi", "input": "", "output": "Hello", "system": "S"}, "alpaca")
    assert example.messages == [Turn(S, "S"), Turn(U, "Hi"), Turn(A, "Hello")]
    assert issues_of({"instruction": "Hi", "output": "x", "history": [["q"]]}, "alpaca") == [
        "d.jsonl:12: field 'history[0]': expected a [question, answer] pair, got a list of 1 item"]


def test_messages_errors():
    user = {"role": "user", "content": "q"}
    assert issues_of({"messages": [user, {"role": "assistant", "content": "  "}]}, "messages") == [
        "d.jsonl:12: field 'messages[1].content': empty assistant turn"]
    assert issues_of({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]},
                     "messages") == ["d.jsonl:12: field 'messages[0].content': empty user turn"]
    assert issues_of({"messages": [user, {"role": "robot", "content": "x"}]}, "messages") == [
        "d.jsonl:12: field 'messages[1].role': unknown role 'robot'; expected system, user, assistant or tool"]
    assert issues_of({"messages": [user, user, {"role": "assistant", "content": "a"}]}, "messages") == [
        "d.jsonl:12: field 'messages[1].role': expected an assistant turn here, got user: user and assistant "
        "turns must alternate, starting with user (after an optional system turn)"]
    assert issues_of({"messages": [user]}, "messages") == [
        "d.jsonl:12: field 'messages': the conversation must end with an assistant turn (the reply to train on), "
        "but it ends with a user turn"]
    assert issues_of({"messages": [user, {"role": "assistant", "content": "a"}, {"role": "system", "content": "s"},
                                   user, {"role": "assistant", "content": "a"}]}, "messages") == [
        "d.jsonl:12: field 'messages[2].role': a system turn is allowed only as the first turn"]
    assert issues_of({"messages": [user, {"role": "assistant", "content": 3}]}, "messages") == [
        "d.jsonl:12: field 'messages[1].content': expected a string, got int 3"]
    assert issues_of(["not", "an", "object"], "messages") == [
        "d.jsonl:12: expected an object with the fields of format 'messages', got a list of 3 items"]


def test_messages_label_marks_untrained_turns():
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}],
           "label": [0, 1]}
    example = convert(row, "messages")
    assert [t.train for t in example.messages if t.role == "assistant"] == [False, True]
    assert example.to_record()["label"] == [0, 1]


def test_sharegpt_accepts_user_assistant_and_checks_roles():
    row = {"conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]}
    assert convert(row, "sharegpt").messages == [Turn(U, "q"), Turn(A, "a")]
    row = {"conversations": [{"from": "human", "value": "q"}, {"from": "function", "value": "{}"}]}
    assert issues_of(row, "sharegpt") == [
        "d.jsonl:12: field 'conversations[1].from': unknown role 'function'; expected human, gpt, function_call, "
        "observation or system (or user, assistant)"]


def test_preference_errors_with_line_numbers(tmp_path):
    good = SAMPLES["sharegpt_dpo"]
    rows = [good, {**good, "rejected": None}, {k: v for k, v in good.items() if k != "chosen"},
            {**good, "rejected": good["chosen"]},
            {**good, "conversations": good["conversations"] + [{"from": "gpt", "value": "4"}]}]
    report = validate_file(write_jsonl(tmp_path / "p.jsonl", rows))
    assert report.format == "sharegpt_dpo" and not report.ok
    assert [f"{i.line}: {i.field}: {i.message}" for i in report.issues] == [
        "2: rejected: required field is missing: a preference row needs both 'chosen' and 'rejected'",
        "3: chosen: required field is missing: a preference row needs both 'chosen' and 'rejected'",
        "4: rejected: chosen and rejected replies are identical; a preference pair needs two different replies",
        "5: conversations: the prompt must end with a human turn; the replies go in 'chosen' and 'rejected'",
    ]


HISTORY = [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "5"},
           {"role": "user", "content": "And the capital of France?"}]


def test_a_multi_turn_pair_reads_alike_in_each_shape():
    """The reply compared on the last turn of a conversation, with the turns before it: paddleformers'
    and ERNIEKit's messages shape, OpenAI messages, ERNIEKit's src/tgt history and sharegpt."""
    expected = Example([Turn(U, "2+3?"), Turn(A, "5"), Turn(U, "And the capital of France?")],
                       chosen="Paris.", rejected="5")
    rows = {
        "chatml_dpo": {"messages": HISTORY, "chosen_response": [{"role": "assistant", "content": "Paris."}],
                       "rejected_response": [{"role": "assistant", "content": "5"}]},
        "messages_dpo": {"messages": HISTORY, "chosen": "Paris.", "rejected": {"role": "assistant", "content": "5"}},
        "erniekit_dpo": {"src": ["2+3?", "And the capital of France?"], "tgt": ["5"], "response": ["5", "Paris."],
                         "sort": [0, 1]},
        "sharegpt_dpo": {"conversations": [{"from": "human", "value": "2+3?"}, {"from": "gpt", "value": "5"},
                                           {"from": "human", "value": "And the capital of France?"}],
                         "chosen": {"from": "gpt", "value": "Paris."}, "rejected": [{"from": "gpt", "value": "5"}]},
    }
    rows["trl_dpo"] = {"chosen": [*HISTORY, {"role": "assistant", "content": "Paris."}],
                       "rejected": [*HISTORY, {"role": "assistant", "content": "5"}]}
    for name, row in rows.items():
        assert detect_format([row]) == name
        assert convert(row, name) == expected, name
    assert convert(rows["chatml_dpo"], "chatml_dpo").to_record() == rows["chatml_dpo"]


def test_multi_turn_pair_errors_name_the_reply_fields():
    good = {"messages": HISTORY, "chosen_response": [{"role": "assistant", "content": "Paris."}],
            "rejected_response": [{"role": "assistant", "content": "5"}]}
    session = [{"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Sure?"},
               {"role": "assistant", "content": "Yes."}]
    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    assert issues_of({**good, "chosen_response": session}, "chatml_dpo") == [
        "d.jsonl:12: field 'chosen_response': expected one reply (a string or a one-item list), got a list of 3: "
        "a reply spanning several turns (a session-level response) is not supported; put the turns before the "
        "compared reply in the conversation"]
    assert issues_of({**good, "rejected_response": [call]}, "chatml_dpo") == [
        "d.jsonl:12: field 'rejected_response[0].tool_calls': a reply that calls tools cannot be one side of a "
        "preference pair here: give the reply as text (calls may appear in the conversation before it)"]
    assert issues_of({**good, "messages": HISTORY + [{"role": "assistant", "content": "Paris."}]}, "chatml_dpo") == [
        "d.jsonl:12: field 'messages': the prompt must end with a user turn; the replies go in 'chosen_response' "
        "and 'rejected_response'"]
    assert issues_of({k: v for k, v in good.items() if k != "rejected_response"}, "chatml_dpo") == [
        "d.jsonl:12: field 'rejected_response': required field is missing: a preference row needs both "
        "'chosen_response' and 'rejected_response'"]
    assert issues_of({**good, "chosen_response": [{"role": "user", "content": "Paris."}]}, "chatml_dpo") == [
        "d.jsonl:12: field 'chosen_response[0].role': expected the assistant's reply (role 'assistant' or 'gpt'), "
        "got string 'user'"]
    assert issues_of({**good, "tools": [{"type": "function", "function": {"parameters": {}}}]}, "chatml_dpo")[0] \
        .startswith("d.jsonl:12: field 'tools[0].function.name': ")


def test_trl_pairs_whole_conversations_or_a_prompt_with_replies():
    """TRL's conversational shape as Hugging Face sets write it: UltraFeedback's whole conversations
    (its `prompt` and `messages` copies beside them are not read), Anthropic HH's multi-turn ones,
    an explicit prompt of turns or of text with one reply each."""
    user, reply = (lambda text: {"role": "user", "content": text}), (lambda text: {"role": "assistant", "content": text})
    single = Example([Turn(U, "2+3?")], chosen="5", rejected="6")
    ultrafeedback = {"prompt": "2+3?", "prompt_id": "a1", "chosen": [user("2+3?"), reply("5")],
                     "rejected": [user("2+3?"), reply("6")], "messages": [user("2+3?"), reply("5")],
                     "score_chosen": 9.0, "score_rejected": 2.0}
    assert detect_format([ultrafeedback]) == "trl_dpo" and convert(ultrafeedback, "trl_dpo") == single
    assert convert({"prompt": "2+3?", "chosen": "5", "rejected": "6"}, "trl_dpo") == single
    assert detect_format([{"prompt": "2+3?", "chosen": "5", "rejected": "6"}]) == "trl_dpo"
    explicit = {"prompt": [user("Hi"), reply("Hello"), user("2+3?")], "chosen": [reply("5")], "rejected": [reply("6")],
                "system": "Be brief."}
    assert convert(explicit, "trl_dpo") == Example([Turn(S, "Be brief."), Turn(U, "Hi"), Turn(A, "Hello"),
                                                    Turn(U, "2+3?")], chosen="5", rejected="6")
    hh = {"chosen": [user("Hi"), reply("Hello"), user("2+3?"), reply("5")],
          "rejected": [user("Hi"), reply("Hello"), user("2+3?"), reply("6")]}
    assert convert(hh, "trl_dpo").messages == convert(explicit, "trl_dpo").messages[1:]

    differ = {**hh, "rejected": [user("Hi"), reply("Hey"), user("2+3?"), reply("6")]}
    assert issues_of(differ, "trl_dpo") == [
        "d.jsonl:12: field 'rejected[1]': must be the same conversation as 'chosen' up to its last turn (the "
        "reply compared); the two differ at turn 1"]
    assert issues_of({**hh, "rejected": [user("2+3?"), reply("6")]}, "trl_dpo") == [
        "d.jsonl:12: field 'rejected': has 2 turns but 'chosen' has 4: the two must be the same conversation up "
        "to their last turn (the reply compared)"]
    assert issues_of({**hh, "rejected": hh["rejected"][:3]}, "trl_dpo") == [
        "d.jsonl:12: field 'rejected': the conversation must end with an assistant turn (the reply to train on), "
        "but it ends with a user turn"]
    assert issues_of({**explicit, "prompt": [user("Hi"), reply("Hello")]}, "trl_dpo") == [
        "d.jsonl:12: field 'prompt': the prompt must end with a user turn; the replies go in 'chosen' and "
        "'rejected'"]


def test_erniekit_dpo_sort_mismatch_in_a_file(tmp_path):
    rows = [SAMPLES["erniekit_dpo"], {**SAMPLES["erniekit_dpo"], "sort": [1]}]
    path = write_json(tmp_path / "d.json", rows)
    second = path.read_text(encoding="utf-8").splitlines().index("  {", 2) + 1
    report = validate_file(path)
    assert [str(i) for i in report.issues] == [
        f"{path}:{second}: field 'sort': has 1 ranks but 'response' has 2 replies; give one rank per reply"]


def test_preference_record_for_paddleformers():
    record = convert(SAMPLES["alpaca_dpo"], "alpaca_dpo").to_record()
    assert record == {"messages": [{"role": "user", "content": "2+2?"}],
                      "chosen_response": [{"role": "assistant", "content": "4"}],
                      "rejected_response": [{"role": "assistant", "content": "5"}]}


def test_unknown_format_lists_fields_and_formats(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "completion": "a"}])
    with pytest.raises(UnknownFormatError) as e:
        validate_file(path)
    text = str(e.value)
    assert text.startswith(f"{path}:1: unknown data format: no supported format matches (fields in the "
                           f"first row: prompt, completion).")
    for spec in FORMATS.values():
        assert f"  {spec.name} [{spec.kind}]: {', '.join(spec.required)}" in text


def test_detection_uses_the_majority_of_first_rows():
    rows = [[1], {"prompt": 1}] + [SAMPLES["alpaca"]] * 3 + [SAMPLES["messages"]] * 2
    assert detect_format(rows) == "alpaca"
    assert detect_format([{"instruction": "x"}]) == "alpaca"


def test_explicit_format_and_unknown_format_name(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["alpaca"]])
    report = validate_file(path, format="messages")
    assert not report.ok and report.issues[0].field == "messages" and not report.detected
    with pytest.raises(UnknownFormatError, match="unknown format 'nope'"):
        validate_file(path, format="nope")


def test_skip_invalid_reports_skipped_rows(tmp_path):
    bad = {"instruction": "q", "output": ""}
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["alpaca"], bad, SAMPLES["alpaca"], bad])
    refused = validate_file(path)
    assert (refused.ok, refused.rows_invalid, refused.rows_skipped) == (False, 2, 0)
    with pytest.raises(DataError) as e:
        load_examples(path)
    assert str(e.value).splitlines() == [
        f"{path} (format alpaca): 4 rows: 2 valid, 2 invalid; invalid rows refuse the file (skip_invalid would "
        f"use the 2 valid rows)",
        f"{path}:2: field 'output': empty assistant turn",
        f"{path}:4: field 'output': empty assistant turn"]
    examples, report = load_examples(path, skip_invalid=True)
    assert (report.ok, report.rows_valid, report.rows_skipped) == (True, 2, 2)
    assert report.summary() == "4 rows: 2 valid, 2 invalid (2 skipped)"
    assert [e.line for e in examples] == [1, 3]
    assert [e.line for e in iter_examples(path, skip_invalid=True)] == [1, 3]
    with pytest.raises(DataError, match="field 'output': empty assistant turn"):
        list(iter_examples(path))


def test_all_invalid_is_never_ok(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "output": ""}] * 8)
    report = validate_file(path, skip_invalid=True, max_issues_kept=3)
    assert (report.ok, report.rows_valid, report.issues_total, len(report.issues)) == (False, 0, 8, 3)
    with pytest.raises(DataError) as e:
        load_examples(path, skip_invalid=True)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{path} (format alpaca): 8 rows: 0 valid, 8 invalid (8 skipped); no valid rows"
    assert lines[1] == f"{path}:1: field 'output': empty assistant turn"
    assert len(lines) == 7 and lines[-1] == "... and 3 more"
    assert len(e.value.issues) == 8 and e.value.issues_total == 8


def test_stats_without_and_with_token_lengths():
    examples = [convert(SAMPLES[name], name) for name in ("alpaca", "messages", "sharegpt", "alpaca_dpo")]
    stats = compute_stats(iter(examples))
    assert stats["rows"] == 4 and stats["tokens"] is None
    assert stats["turns"] == {"mean": 3.0, "min": 2, "max": 4}
    assert (stats["multi_turn_rows"], stats["with_system"], stats["with_think"]) == (2, 2, 1)
    assert stats["characters"]["total"] == sum(
        sum(len(t.content) for t in e.messages) + len(e.chosen or "") + len(e.rejected or "") for e in examples)

    lengths = iter(range(1, 101))
    stats = compute_stats((examples[0] for _ in range(100)), token_length=lambda e: next(lengths), max_seq_len=90)
    tokens = stats["tokens"]
    assert (tokens["min"], tokens["max"], tokens["mean"], tokens["p50"]) == (1, 100, 50.5, 50.5)
    assert tokens["p95"] == 95.0  # numpy gives 95.05; percentiles are reported to one decimal
    assert tokens["histogram"]["edges"] == list(range(1, 102, 5))
    assert tokens["histogram"]["counts"] == [5] * 20
    assert tokens["over_max_seq_len"] == 10


def test_stats_of_one_length_and_of_nothing():
    example = convert(SAMPLES["alpaca"], "alpaca")
    hist = compute_stats([example] * 3, token_length=lambda e: 7)["tokens"]["histogram"]
    assert hist == {"edges": [7, 8], "counts": [3]}
    empty = compute_stats([], token_length=len)
    assert empty["rows"] == 0 and empty["tokens"]["max"] is None


def run_cli(*argv):
    out = io.StringIO()
    parser = check.argparse.ArgumentParser()
    check.add_arguments(parser)
    return check.run(parser.parse_args([str(a) for a in argv]), out=out), out.getvalue()


def test_cli_valid_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["messages"]] * 3)
    code, out = run_cli(path)
    assert code == 0
    assert "format:  messages (sft, detected)" in out and "rows:    3 rows: 3 valid, 0 invalid" in out
    assert "with <think>: 3" in out and out.rstrip().endswith("result:  OK")


def test_cli_invalid_rows_and_skip(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["alpaca"], {"instruction": "q", "output": ""}])
    code, out = run_cli(path)
    assert code == 1
    assert f"  {path}:2: field 'output': empty assistant turn\n" in out
    assert "--skip-invalid would use the 1 valid rows" in out
    code, out = run_cli(path, "--skip-invalid")
    assert code == 0 and "(1 invalid rows skipped)" in out
    code, out = run_cli(path, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["rows_invalid"] == 1
    assert report["issues"][0]["line"] == 2 and report["stats"]["rows"] == 1


def test_cli_file_level_errors_and_usage(tmp_path, capsys):
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert run_cli(empty) == (1, f"error: {empty}: file is empty\n")
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "q"}])
    code, out = run_cli(unknown, "--json")
    assert code == 1 and "unknown data format" in json.loads(out)["error"]
    assert check.main([str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
    assert check.main([str(tmp_path / "d.txt")]) == 2
    assert check.main([str(empty), "--format", "nope"]) == 2
    assert check.main([]) == 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared demo datasets here")
@pytest.mark.parametrize("name, format", [("alpaca_en_demo.json", "alpaca"), ("dpo_en_demo.json", "sharegpt_dpo"),
                                          ("identity.json", "alpaca"), ("mllm_demo.json", "messages"),
                                          ("glaive_toolcall_en_demo.json", "sharegpt")])
def test_shared_demo_datasets(name, format):
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{name} not present")
    report = validate_file(path)
    assert (report.format, report.ok, report.rows_invalid) == (format, True, 0)
