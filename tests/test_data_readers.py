"""Tests of trainer.data.readers: file shapes, line numbers, encodings and file-level errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.data_fixtures import SAMPLES, write_csv, write_json, write_jsonl, write_parquet
from trainer.data.formats import iter_examples
from trainer.data.readers import BadRecord, DataError, ReadError, iter_records
from trainer.data.validate import validate_file


def rows_of(path):
    return [(r.line, r.row) for r in iter_records(path)]


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert rows_of(path) == [(1, {"a": 1}), (4, {"a": 2})]


def test_ndjson_extension_is_jsonl(tmp_path):
    path = tmp_path / "d.ndjson"
    path.write_text('{"a": 1}\n', encoding="utf-8")
    assert rows_of(path) == [(1, {"a": 1})]


def test_malformed_json_line_names_line_column_and_json_message(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["messages"]] * 3, raw_lines={2: '{"a": 1,, "b": 2}'})
    records = rows_of(path)
    assert [line for line, _ in records] == [1, 2, 3]
    bad = records[1][1]
    assert isinstance(bad, BadRecord)
    assert bad.message == "malformed JSON at column 9: Expecting property name enclosed in double quotes"
    report = validate_file(path)
    assert str(report.issues[0]) == f"{path}:2: malformed JSON at column 9: Expecting property name enclosed in double quotes"


def test_values_json_cannot_decode_are_bad_rows_not_crashes(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["alpaca"]] * 3,
                       raw_lines={2: "[" * 50000 + "]" * 50000, 3: '{"n": ' + "1" * 5000 + "}"})
    report = validate_file(path)
    assert [(i.line, i.message) for i in report.issues][0] == (2, "cannot decode the JSON value: nested too deeply")
    assert report.issues[1].line == 3 and "5000 digits" in report.issues[1].message
    deep = tmp_path / "d.json"
    deep.write_text("[" + "[" * 50000 + "]" * 50000 + "]", encoding="utf-8")
    with pytest.raises(ReadError, match="nested too deeply"):
        list(iter_records(deep))


def test_format_of_unparsable_first_rows_names_their_problems(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "q",\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        validate_file(path)
    assert str(e.value) == (f"{path}: cannot detect the data format: the first rows cannot be parsed\n"
                            f"{path}:1: malformed JSON at column 21: Expecting property name enclosed in double quotes")


def test_pretty_printed_json_in_jsonl_gets_a_hint(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('[\n  {"a": 1}\n]\n', encoding="utf-8")
    first = rows_of(path)[0][1]
    assert isinstance(first, BadRecord) and "save it with a .json extension" in first.message


def test_empty_file(tmp_path):
    for name in ("d.jsonl", "d.json", "d.csv", "d.parquet"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ReadError) as e:
            list(iter_records(tmp_path / name))
        assert str(e.value) == f"{tmp_path / name}: file is empty"


def test_blank_jsonl_and_empty_array_are_empty(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ReadError, match="file is empty"):
        list(iter_records(tmp_path / "d.jsonl"))
    (tmp_path / "d.json").write_text(" [ ] ", encoding="utf-8")
    with pytest.raises(ReadError, match="the JSON array is empty: no records"):
        list(iter_records(tmp_path / "d.json"))


def test_not_utf8_names_line_and_byte(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": "caf\xff"}\n')
    with pytest.raises(ReadError) as e:
        list(iter_records(path))
    assert e.value.line == 3
    assert str(e.value) == (f"{path}:3: not UTF-8: invalid byte 0xff at line 3, byte 28; "
                            f"re-save the file as UTF-8")


def test_not_utf8_in_json_array_across_chunks(tmp_path):
    path = tmp_path / "d.json"
    head = b"[\n" + b'{"a": "x"},\n' * 10000
    path.write_bytes(head + b'{"a": "\xe9t\xe9"}\n]')
    with pytest.raises(ReadError) as e:
        list(iter_records(path))
    assert f"invalid byte 0xe9 at line 10002, byte {len(head) + 7};" in str(e.value)


def test_latin1_csv_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("instruction,output\nqu\u00e9,r\n".encode("latin-1"))
    with pytest.raises(ReadError, match=r"not UTF-8: invalid byte 0xe9 at line 2, byte 21"):
        list(iter_records(path))


def test_bom_is_stripped(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "d.jsonl").write_bytes(bom + b'{"a": 1}\n')
    (tmp_path / "d.json").write_bytes(bom + b'[{"a": 1}]')
    (tmp_path / "d.csv").write_bytes(bom + b"a,b\n1,2\n")
    assert rows_of(tmp_path / "d.jsonl") == [(1, {"a": 1})]
    assert rows_of(tmp_path / "d.json") == [(1, {"a": 1})]
    assert rows_of(tmp_path / "d.csv") == [(2, {"a": "1", "b": "2"})]


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ReadError, match=r"unsupported file extension '\.txt'; supported: \.jsonl, \.ndjson, "
                                        r"\.json, \.csv, \.parquet"):
        iter_records(path)


def test_missing_file(tmp_path):
    with pytest.raises(ReadError, match="file not found"):
        iter_records(tmp_path / "nope.jsonl")


def test_json_array_line_numbers(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"a": 1},\n  {"a":\n    2},   {"a": 3},\n\n  {"a": "x\\ny"}\n]\n', encoding="utf-8")
    assert rows_of(path) == [(2, {"a": 1}), (3, {"a": 2}), (4, {"a": 3}), (6, {"a": "x\ny"})]


def test_json_array_streams_large_elements_across_chunks(tmp_path):
    rows = [{"i": i, "text": "é" * (i * 7919 % 70000)} for i in range(60)]
    path = write_json(tmp_path / "d.json", rows)
    records = rows_of(path)
    assert [row for _, row in records] == rows
    text = path.read_text(encoding="utf-8").split("\n")
    starts = [n for n, line in enumerate(text, 1) if line == "  {"]
    assert [line for line, _ in records] == starts


def test_json_array_numbers_split_at_chunk_boundary(tmp_path):
    values = [{"n": 10 ** 15 + i} for i in range(20000)]
    path = write_json(tmp_path / "d.json", values, indent=None)
    assert [row for _, row in rows_of(path)] == values


def test_malformed_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2}\n  {"a": 3}\n]', encoding="utf-8")
    with pytest.raises(ReadError) as e:
        list(iter_records(path))
    assert "malformed JSON at line 4, column 3: expected ',' or ']' after an array element, got '{'" in str(e.value)
    assert e.value.line == 4


def test_json_wrapper_object_and_json_lines_in_json(tmp_path):
    wrapped = write_json(tmp_path / "w.json", {"data": [{"a": 1}, {"a": 2}], "version": {"v": [1, 2]}})
    assert [row for _, row in rows_of(wrapped)] == [{"a": 1}, {"a": 2}]
    lines = tmp_path / "l.json"
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    assert rows_of(lines) == [(1, {"a": 1}), (2, {"a": 2})]
    single = write_json(tmp_path / "s.json", SAMPLES["messages"])
    assert [row for _, row in rows_of(single)] == [SAMPLES["messages"]]


def test_csv_decodes_json_columns_and_counts_physical_lines(tmp_path):
    messages = [{"role": "user", "content": "multi\nline"}, {"role": "assistant", "content": "ok"}]
    path = write_csv(tmp_path / "d.csv", ["note", "messages"],
                     [["two\nlines", messages], ["two\nlines", messages], ["x", "[not json"]])
    records = rows_of(path)
    assert [line for line, _ in records] == [2, 4, 6]
    assert records[0][1] == {"note": "two\nlines", "messages": messages}
    assert records[2][1]["messages"] == "[not json"
    examples = list(iter_examples(path, skip_invalid=True))
    assert [e.messages[0].content for e in examples] == ["multi\nline"] * 2
    (issue,) = validate_file(path).issues
    assert str(issue) == (f"{path}:6: field 'messages': expected a list of {{role, content}} objects, "
                          f"got string '[not json'")


def test_csv_keeps_json_looking_text_in_text_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["instruction", "output"], [["Sort 3 1 2", "[1, 2, 3]"]])
    (example,) = iter_examples(path)
    assert example.messages[-1].content == "[1, 2, 3]"


def test_csv_row_with_wrong_cell_count_is_one_bad_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\na,b\nonly-one\nc,d\n", encoding="utf-8")
    report = validate_file(path)
    assert (report.rows_total, report.rows_valid, report.rows_invalid) == (3, 2, 1)
    assert str(report.issues[0]) == f"{path}:3: CSV row has 1 cells but the header has 2"


def test_csv_bad_quoting_spoils_only_its_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,output\na,b\nc,"d"x\ne,f\n', encoding="utf-8")
    records = rows_of(path)
    assert [line for line, _ in records] == [2, 3, 4]
    assert records[1][1] == BadRecord("malformed CSV: ',' expected after '\"'")
    assert records[2][1] == {"instruction": "e", "output": "f"}


def test_csv_header_only(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\n", encoding="utf-8")
    with pytest.raises(ReadError, match="header row but no data rows"):
        list(iter_records(path))


def test_parquet_rows_are_numbered_by_row(tmp_path):
    rows = [SAMPLES["alpaca"], {**SAMPLES["alpaca"], "output": " "}, SAMPLES["alpaca"]]
    path = write_parquet(tmp_path / "d.parquet", rows)
    assert [line for line, _ in rows_of(path)] == [1, 2, 3]
    report = validate_file(path)
    assert report.format == "alpaca" and report.rows_invalid == 1
    assert str(report.issues[0]) == f"{path}: row 2: field 'output': empty assistant turn"


def test_parquet_nested_messages_and_json_string_column(tmp_path):
    nested = write_parquet(tmp_path / "n.parquet", [SAMPLES["messages"]] * 2)
    assert [e.messages[-1].content for e in iter_examples(nested)] == ["<think>2 and 2</think>4"] * 2
    as_text = write_parquet(tmp_path / "t.parquet", [{"messages": json.dumps(SAMPLES["messages"]["messages"])}])
    (example,) = iter_examples(as_text)
    assert example.system == "Think first."


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(ReadError, match="not a readable Parquet file"):
        list(iter_records(path))


def test_validation_memory_is_bounded(tmp_path):
    path = tmp_path / "big.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q" * 200},
                                    {"role": "assistant", "content": "a" * 300}]})
    bad = json.dumps({"messages": [{"role": "user", "content": "q" * 200}, {"role": "assistant", "content": ""}]})
    with open(path, "w", encoding="utf-8") as f:
        for i in range(36000):
            f.write((bad if i % 10 == 0 else good) + "\n")
    assert path.stat().st_size > 20_000_000
    tracemalloc.start()
    try:
        report = validate_file(path, skip_invalid=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.rows_total, report.rows_invalid, report.issues_total) == (36000, 3600, 3600)
    assert len(report.issues) == 200
    assert peak < 3_000_000, peak


def _cli(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from trainer.data.check import main; "
                                                 "sys.exit(main(sys.argv[1:]))", *args],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])


def test_cli_runs_as_a_process(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES["alpaca"]])
    result = _cli(str(path))
    assert result.returncode == 0, result.stderr
    assert "format:  alpaca (sft, detected)" in result.stdout


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["src", "tgt", "label", "messages", "role", "content", "from", "value", "conversations",
                         "instruction", "input", "output", "chosen", "rejected", "response", "sort", "system",
                         "history", "x"]), children, max_size=5),
    max_leaves=20,
)


def _consume(path):
    """Read and convert a file: only the package's own errors may escape."""
    try:
        list(iter_examples(path, skip_invalid=True))
        validate_file(path)
    except DataError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(json_values, min_size=1, max_size=5), ext=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_fuzz_json_values(tmp_path, rows, ext):
    path = tmp_path / f"f{ext}"
    if ext == ".jsonl":
        write_jsonl(path, rows)
    elif ext == ".json":
        write_json(path, rows)
    else:
        write_csv(path, ["messages", "src", "tgt"], [[row, row, row] for row in rows])
    _consume(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), ext=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_fuzz_random_bytes(tmp_path, data, ext):
    path = tmp_path / f"f{ext}"
    path.write_bytes(data)
    _consume(path)
