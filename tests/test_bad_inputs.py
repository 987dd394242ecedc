"""The bad-input corpus: malformed datasets, run configs, uploads and chat requests, one table per
surface. Every case must be answered with an error that names its file, line, field or parameter,
without a traceback, and must leave nothing written half-way. A property-based fuzz holds the
dataset readers to their own error type and to line numbers inside the file."""

from __future__ import annotations

import errno
import http.client
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.chat_request import RequestError, parse_chat_request
from tests.conftest import shown
from trainer import cli
from trainer.data import check
from trainer.data.readers import BadRecord, ReadError, iter_records

BOM = b"\xef\xbb\xbf"
TURNS = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
GOOD = json.dumps({"messages": TURNS})


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def parquet_bytes(tmp_path) -> bytes:
    path = tmp_path / "real.parquet"
    pq.write_table(pa.table({"messages": [json.dumps(TURNS)] * 50}), path)
    return path.read_bytes()


def tool_row(name: str = "get_weather", arguments: str = '{"city": "Oslo"}', result_id: str | None = "c1",
             tools: list | None = None) -> str:
    """A messages row that asks for the weather through a tool call, with one thing changed."""
    result = {"role": "tool", "content": "rain"} | ({"tool_call_id": result_id} if result_id else {})
    return json.dumps({"tools": tools or [{"type": "function", "function": {"name": "get_weather"}}], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": name, "arguments": arguments}}]},
        result, {"role": "assistant", "content": "Rain."}]})


# -- datasets: `python -m trainer data check FILE --json` ---------------------------------------------

# (file name, content, (line, field, words in the message)); line 0 is the file as a whole
DATASETS = [
    pytest.param("d.jsonl", jsonl(GOOD, GOOD[:40]), (2, "", "malformed JSON at column 41"), id="truncated-jsonl"),
    pytest.param("d.json", ("[\n" + GOOD + ",\n" + json.dumps({"messages": TURNS}, indent=1)[:60]).encode(),
                 (7, "", "malformed JSON at line 7, column 15: Unterminated string"), id="truncated-json-array"),
    pytest.param("d.parquet", lambda tmp: parquet_bytes(tmp)[:-40], (0, "", "not a readable Parquet file"),
                 id="truncated-parquet"),
    pytest.param("d.jsonl", jsonl(GOOD, GOOD.replace("4", "caf\u00e9")).replace(b"\xc3\xa9", b"\xe9"),
                 (2, "", "not UTF-8: invalid byte 0xe9 at line 2"), id="latin1-jsonl"),
    pytest.param("d.json", ("[\n" + GOOD + ",\n" + GOOD.replace("4", "na\u00efve") + "\n]").encode("latin-1"),
                 (3, "", "not UTF-8: invalid byte 0xef at line 3"), id="latin1-json"),
    pytest.param("d.jsonl", jsonl(GOOD).decode().encode("utf-16"), (1, "", "the file is UTF-16"),
                 id="utf16-with-bom"),
    pytest.param("d.jsonl", jsonl(GOOD).decode().encode("utf-16-le"), (1, "", "NUL byte at line 1"),
                 id="utf16-without-bom"),
    pytest.param("d.csv", "instruction,output\nhi,there\n".encode("utf-16-be"), (1, "", "NUL byte at line 1"),
                 id="utf16-csv"),
    pytest.param("d.json", ("[" + GOOD + ",\n" + GOOD + "\x00]").encode(), (2, "", "NUL byte at line 2"),
                 id="nul-in-json"),
    pytest.param("d.jsonl", bytes(range(256)) * 64, (1, "", "NUL byte at line 1"), id="binary-jsonl"),
    pytest.param("d.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(200), (1, "", "invalid byte 0x89 at line 1"),
                 id="png-named-jsonl"),
    pytest.param("d.jsonl", jsonl(GOOD).replace(b"\n", b"\r") * 2, (1, "", "bare carriage return, \\r"),
                 id="old-mac-line-ends"),
    pytest.param("d.jsonl", b"", (0, "", "file is empty"), id="empty-jsonl"),
    pytest.param("d.json", b" \n\t\n", (0, "", "file is empty (only whitespace)"), id="blank-json"),
    pytest.param("d.jsonl", jsonl(GOOD, "{" + "x" * (4 << 20)), (2, "", "malformed JSON at column 2"),
                 id="gigantic-garbage-line"),
    pytest.param("d.jsonl", jsonl(GOOD, "[" * 100_000), (2, "", "nested too deeply"), id="nested-garbage-jsonl"),
    pytest.param("d.json", b"[" * 100_000, (1, "", "nested too deeply"), id="nested-garbage-json"),
    pytest.param("d.jsonl", jsonl(GOOD, '{"messages": ' + "7" * 5000 + "}"),
                 (2, "", "an integer of 5000 digits; at most 4300 can be read"),
                 id="integer-of-5000-digits"),
    pytest.param("d.jsonl", jsonl(json.dumps({"messages": [{"role": "user", "content": 5}, TURNS[1]]})),
                 (1, "messages[0].content", "expected a string, got int 5"), id="number-as-content"),
    pytest.param("d.jsonl", jsonl(json.dumps({"instruction": ["a", "b"], "output": "x"})),
                 (1, "instruction", "expected a string, got a list of 2 items"), id="list-as-instruction"),
    pytest.param("d.jsonl", jsonl(json.dumps({"src": [1, "b"], "tgt": ["x", "y"]})),
                 (1, "src[0]", "expected a string, got int 1"), id="number-in-erniekit-src"),
    pytest.param("d.jsonl", jsonl(json.dumps({"messages": {"role": "user", "content": "hi"}})),
                 (1, "messages", "expected a list of {role, content} objects, got an object"),
                 id="object-as-messages"),
    pytest.param("d.jsonl", jsonl(GOOD, "null", GOOD), (2, "", "got null"), id="null-row"),
    pytest.param("d.jsonl", jsonl('{"messages": [{"role": "user", "content": "a\\ud800b"}, '
                                  '{"role": "assistant", "content": "x"}]}'),
                 (1, "messages[0].content", "unpaired surrogate \\ud800 at character 2"), id="unpaired-surrogate"),
    pytest.param("d.json", b"42", (1, "", "the first is int 42"), id="scalar-json"),
    pytest.param("d.json", ("[" + GOOD + "]\n]garbage").encode(),
                 (2, "", "unexpected content after the top-level array"), id="content-after-array"),
    pytest.param("d.csv", b"instruction,input\nhi,there\n", (2, "output", "required field is missing"),
                 id="csv-missing-column"),
    pytest.param("d.csv", b"instruction,instruction,output\na,b,c\n", (1, "", "names column 'instruction' twice"),
                 id="csv-duplicate-column"),
    pytest.param("d.csv", b"instruction,output\n\"never closed,x\n", (2, "", "malformed CSV"), id="csv-open-quote"),
    pytest.param("d.parquet", jsonl(GOOD), (0, "", "not a readable Parquet file"), id="jsonl-named-parquet"),
    # function calling: tools, calls and their results
    pytest.param("d.jsonl", jsonl(GOOD, tool_row(name="get_time")),
                 (2, "messages[1].tool_calls[0].function.name", "calls function 'get_time', which the row's tools do "
                                                                "not declare (declared: get_weather)"),
                 id="call-to-undeclared-function"),
    pytest.param("d.jsonl", jsonl(tool_row(arguments="{'city': 'Oslo'}")),
                 (1, "messages[1].tool_calls[0].function.arguments", "the arguments (a JSON object) is not valid JSON"),
                 id="arguments-not-json"),
    pytest.param("d.jsonl", jsonl(tool_row(result_id="c2")),
                 (1, "messages[2].tool_call_id", "no call awaiting a result has id 'c2' (awaiting: 'c1')"),
                 id="result-with-no-matching-call"),
    pytest.param("d.jsonl", jsonl(tool_row(result_id=None)),
                 (1, "messages[2].tool_call_id", "the calls awaiting results have ids ('c1')"),
                 id="tool-message-without-tool-call-id"),
    pytest.param("d.jsonl", jsonl(tool_row(tools=[{"type": "function", "function": {"parameters": {}}}])),
                 (1, "tools[0].function.name", "required field is missing"), id="tools-entry-without-name"),
    pytest.param("d.json", json.dumps([{"tools": "[]", "conversations": [
        {"from": "human", "value": "Time?"}, {"from": "function_call", "value": "get_time()"},
        {"from": "observation", "value": "9:00"}, {"from": "gpt", "value": "Nine."}]}]).encode(),
                 (1, "conversations[1].value", "the function call ({\"name\", \"arguments\"}, or a list of them) is "
                                               "not valid JSON"), id="sharegpt-function-call-not-json"),
]


@pytest.mark.parametrize("name,content,where", DATASETS)
def test_bad_dataset_is_refused_naming_file_line_and_field(tmp_path, capsys, name, content, where):
    path = tmp_path / name
    path.write_bytes(content(tmp_path) if callable(content) else content)
    code = check.main([str(path), "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    line, field, words = where
    assert code == 1 and report["ok"] is False and "Traceback" not in err
    assert any(issue["line"] == line and issue["field"] == field and words in issue["message"]
               for issue in report["issues"]), report["issues"]
    # every message names the file, and none echoes a gigantic input back
    assert all(issue["text"].startswith(str(path)) and len(issue["text"]) < 2000 for issue in report["issues"])


@pytest.mark.parametrize("name,content", [
    pytest.param("d.csv", BOM + b"instruction,output\nhi,there\n", id="utf8-bom-csv-header"),
    pytest.param("d.jsonl", jsonl(json.dumps({"messages": [{"role": "user", "content": "x" * (8 << 20)},
                                                          TURNS[1]]})), id="gigantic-valid-line"),
])
def test_what_a_user_means_is_accepted(tmp_path, capsys, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert check.main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows_valid"] == 1


# -- run configs: `python -m trainer run CONFIG` ------------------------------------------------------

DATA = "data: {train: [train.jsonl]}\n"

# (YAML text or bytes, extra overrides, what stderr must say); {path} is the config file
CONFIGS = [
    pytest.param(DATA + "optim: {learning_rate: -1}\n", [], "{path}: optim.learning_rate: must be > 0, got -1",
                 id="negative-learning-rate"),
    pytest.param(DATA + "optim: {per_device_batch_size: 0}\n", [],
                 "optim.per_device_batch_size: must be >= 1, got 0", id="batch-size-0"),
    pytest.param(DATA + "finetuning: {lora: {rank: 1000000000}}\n", [],
                 "finetuning.lora.rank: must be in [1, 8192], got 1000000000", id="lora-rank-1e9"),
    pytest.param(DATA.replace("}", ", max_seq_len: 0}"), [], "data.max_seq_len: must be >= 16, got 0",
                 id="max-seq-len-0"),
    pytest.param(DATA + "optim: {seed: -1}\n", [], "optim.seed: must be in [0, 4294967295], got -1",
                 id="negative-seed"),
    pytest.param(DATA + "optim: {learning_rate: .nan}\n", [], "optim.learning_rate: expected a finite number, got nan",
                 id="nan-learning-rate"),
    pytest.param(DATA + "training: {epochs: 3}\n", [], "unknown key 'training'", id="unknown-section"),
    pytest.param(DATA + "optim: {num_train_epochs: [1, 2]}\n", [],
                 "optim.num_train_epochs: expected a number, got a list", id="list-for-a-number"),
    pytest.param(DATA + "devices: {nproc: two}\n", [], "devices.nproc: expected an integer, got 'two'",
                 id="word-for-an-integer"),
    pytest.param(DATA + "model: {name_or_path: 123}\n", [], "model.name_or_path: expected a string, got 123",
                 id="number-for-a-string"),
    pytest.param("data: {train: [5]}\n", [], "data.train[0]: expected a mapping with a path, got 5",
                 id="number-for-a-dataset"),
    pytest.param("42\n", [], "expected a mapping of settings at the top level, got 42", id="yaml-scalar"),
    pytest.param("!!python/object/apply:os.system ['echo pwned']\n", [],
                 "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
                 id="yaml-python-tag"),
    pytest.param(DATA + "optim:\n  seed: [1, 2\n", [], "YAML syntax error at line 4", id="truncated-yaml"),
    pytest.param("", [], "data.train: needs at least one file", id="empty-yaml"),
    pytest.param("model: {name_or_path: caf\u00e9}\n".encode("latin-1"), [], "UnicodeDecodeError", id="latin1-yaml"),
    pytest.param("data: " + "[" * 5000 + "]" * 5000 + "\n", [], "{path}: YAML nested too deeply",
                 id="nested-yaml"),
    pytest.param(DATA, ["optim.seed=" + "[" * 5000], "optim.seed: the value", id="nested-override"),
    pytest.param(DATA + "optim:\n  seed: 1\n  seed: 2\n", [], "line 4, column 3: key 'seed' is given twice "
                 "(first on line 3)", id="duplicate-key"),
    pytest.param("a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n" + DATA, [],
                 "aliases (*a) are not allowed in a run config", id="yaml-alias-bomb"),
    pytest.param(DATA, ["optim.learnig_rate=1e-3"], "did you mean 'optim.learning_rate'", id="misspelt-override"),
]


@pytest.mark.parametrize("text,overrides,words", CONFIGS)
def test_bad_run_config_is_refused_before_anything_is_written(tmp_path, capsys, text, overrides, words):
    path = tmp_path / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    job_dir = tmp_path / "job"
    assert cli.main(["run", str(path), "--job-dir", str(job_dir), *overrides]) == 1
    err = capsys.readouterr().err
    assert words.format(path=path) in err and "Traceback" not in err
    assert not job_dir.exists()


def _save(ctx, name):
    from webui import train_tab
    from webui.form import BY_KEY, FIELDS, to_widget

    class Form:  # the part of webui.form.Form that save_yaml reads
        keys = [spec.key for spec in FIELDS]

    values = [to_widget(BY_KEY[key], BY_KEY[key].default) for key in Form.keys]
    saved, _ = train_tab.save_yaml(ctx, Form(), values, name, "en")
    return saved["value"]


def test_a_config_saved_under_an_absurd_name_gets_a_short_one(tmp_path):
    from webui.context import make_context

    ctx = make_context(tmp_path / "studio")
    path = _save(ctx, "数据" * 200)
    assert os.path.dirname(path) == str(ctx.workdir / "configs")
    assert len(os.path.basename(path).encode()) <= 125 and os.path.basename(path).startswith("数据数据")


def test_a_config_save_that_fails_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    from webui.context import make_context

    ctx = make_context(tmp_path / "studio")
    path = _save(ctx, "run")
    before = open(path, encoding="utf-8").read()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _save(ctx, "run")
    assert open(path, encoding="utf-8").read() == before
    assert os.listdir(ctx.workdir / "configs") == ["run.yaml"]


# -- uploads: the dataset store -----------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    from webui.dataset_store import DatasetStore

    return DatasetStore(tmp_path / "studio", max_bytes=4096)


def assert_nothing_stored(store):
    assert store.list() == []
    assert [path.name for path in store.root.rglob("*")] in ([], [".incoming"])


# (name the browser sent, content, the refusal)
UPLOADS_REFUSED = [
    pytest.param("big.jsonl", b"x" * 4097, "big.jsonl: 4.0 KB is over the upload limit of 4.0 KB", id="one-byte-over"),
    pytest.param("empty.jsonl", b"", "empty.jsonl: the file is empty", id="empty"),
    pytest.param("notes.txt", jsonl(GOOD), "'notes.txt': unsupported file type .txt", id="txt"),
    pytest.param("data", jsonl(GOOD), "'data': unsupported file type (no extension)", id="no-extension"),
    pytest.param("data.jsonl.exe", jsonl(GOOD), "unsupported file type .exe", id="double-extension"),
    pytest.param("..", jsonl(GOOD), "'..': unsupported file type (no extension)", id="dot-dot"),
]


@pytest.mark.parametrize("name,content,words", UPLOADS_REFUSED)
def test_refused_upload_leaves_nothing_in_the_store(tmp_path, store, name, content, words):
    from webui.dataset_store import DatasetError

    source = tmp_path / "upload.bin"
    source.write_bytes(content)
    with pytest.raises(DatasetError) as refused:
        store.add(source, name)
    assert words in str(refused.value)
    assert_nothing_stored(store)


# An unreadable file is still stored: its report is what tells the user what is wrong with it.
UPLOADS_REPORTED = [
    pytest.param("b.jsonl", bytes(range(256)) * 8, "NUL byte at line 1", id="binary-jsonl"),
    pytest.param("p.parquet", jsonl(GOOD), "not a readable Parquet file", id="fake-parquet"),
    pytest.param("u.csv", "instruction,output\nhi,there\n".encode("utf-16"), "the file is UTF-16", id="utf16-csv"),
]


@pytest.mark.parametrize("name,content,words", UPLOADS_REPORTED)
def test_unreadable_upload_is_stored_with_its_reason(tmp_path, store, name, content, words):
    source = tmp_path / "upload.bin"
    source.write_bytes(content)
    dataset = store.add(source, name)
    assert not dataset.ok and words in dataset.error and dataset.rows_total == 0
    assert words in store.meta(dataset)["error"]


def test_a_chinese_name_too_long_for_the_file_system_is_shortened(tmp_path, store):
    source = tmp_path / "upload.bin"
    source.write_bytes(jsonl(GOOD))
    dataset = store.add(source, "训练数据" * 60 + ".jsonl")
    assert dataset.ok and dataset.path.is_file() and dataset.name.endswith(".jsonl")
    assert len(dataset.name.encode()) <= 120 and dataset.name.startswith("训练数据")


def test_a_check_that_dies_leaves_no_partial_entry(tmp_path, store, monkeypatch):
    from webui import dataset_store

    def out_of_memory(path, max_issues=500):
        raise MemoryError

    monkeypatch.setattr(dataset_store, "check_file", out_of_memory)
    source = tmp_path / "upload.bin"
    source.write_bytes(jsonl(GOOD))
    with pytest.raises(MemoryError):
        store.add(source, "d.jsonl")
    assert_nothing_stored(store)


def test_a_vanished_upload_is_reported_by_name(tmp_path):
    from webui.context import make_context
    from webui.data_tab import store_uploads

    ctx = make_context(tmp_path / "studio", max_upload_mb=1)
    status, *_ = store_uploads(ctx, [str(tmp_path / "gone.jsonl")], "en")
    assert shown(status).startswith("- Refused gone.jsonl: ") and "No such file" in status
    assert ctx.datasets.list() == []


# -- chat requests: models.chat_request, and a few over HTTP ------------------------------------------

HI = [{"role": "user", "content": "hi"}]

# (request body, the parameter named, words in the message)
REQUESTS = [
    pytest.param({"messages": HI, "temperature": float("nan")}, "temperature", "got nan", id="nan-temperature"),
    pytest.param({"messages": HI, "top_p": float("nan")}, "top_p", "got nan", id="nan-top-p"),
    pytest.param({"messages": HI, "repetition_penalty": float("inf")}, "repetition_penalty", "at most 10, got inf",
                 id="infinite-penalty"),
    pytest.param({"messages": HI, "top_k": 10 ** 400}, "top_k", "at most 2147483648", id="top-k-of-400-digits"),
    pytest.param([HI], None, "the request body must be a JSON object, got list", id="body-is-a-list"),
    pytest.param({"messages": "hi"}, "messages", "'messages' must be a non-empty list", id="messages-is-a-string"),
    pytest.param({"messages": [None]}, "messages[0]", "messages[0] must be an object", id="message-is-null"),
    pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
                 "must be a string or a list of content parts, got int", id="number-as-content"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
                 "messages[0].content[0].image_url", "'x' is neither a data:image/...;base64, URL nor an absolute",
                 id="image-part-relative-path"),
    pytest.param({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role", "unknown role ['user']",
                 id="role-is-a-list"),
    pytest.param({"messages": HI + [{"role": "system", "content": "x"}, *HI]}, "messages[1].role",
                 "a system message may only come first", id="late-system"),
    pytest.param({"messages": [{"role": "user", "content": "a\ud800"}]}, "messages[0].content",
                 "unpaired surrogate \\ud800", id="unpaired-surrogate"),
    pytest.param({"messages": HI, "stop": ["a", 1]}, "stop", "'stop' must be a non-empty string", id="number-stop"),
    pytest.param({"messages": HI, "stop": list("abcde")}, "stop", "at most 4 strings, got 5", id="five-stops"),
    pytest.param({"messages": HI, "max_tokens": "10"}, "max_tokens", "must be an integer, got '10'",
                 id="max-tokens-as-text"),
    pytest.param({"messages": HI, "max_completion_tokens": 0, "max_tokens": 5}, "max_completion_tokens",
                 "must be at least 1", id="zero-max-completion-tokens"),
    pytest.param({"messages": HI, "seed": -1}, "seed", "'seed' must be at least 0", id="negative-seed"),
    pytest.param({"messages": HI, "n": 2}, "n", "(one choice per request)", id="two-choices"),
    pytest.param({"messages": HI, "stream": "yes"}, "stream", "'stream' must be true or false", id="stream-as-text"),
    pytest.param({"messages": HI, "stream_options": [1]}, "stream_options", "must be an object",
                 id="stream-options-list"),
    pytest.param({"messages": HI, "truncation": ["auto"]}, "truncation", "must be one of disabled, auto",
                 id="truncation-list"),
    pytest.param({"messages": HI, "chat_template_kwargs": {"enable_thinking": "yes"}},
                 "chat_template_kwargs.enable_thinking", "must be true or false", id="thinking-as-text"),
    pytest.param({"messages": HI, "model": 5}, "model", "'model' must be a string", id="number-as-model"),
]


@pytest.mark.parametrize("body,param,words", REQUESTS)
def test_bad_chat_request_names_its_parameter(body, param, words):
    with pytest.raises(RequestError) as refused:
        parse_chat_request(body)
    assert refused.value.status == 400 and refused.value.param == param and words in refused.value.message


@pytest.fixture(scope="module")
def server(tiny_moe_dir, tmp_path_factory):
    from models.server_process import ModelServer

    server = ModelServer(str(tiny_moe_dir), name="tiny", log_path=tmp_path_factory.mktemp("logs") / "serve.log")
    server.start()
    yield server
    server.stop()


def post(server, body: bytes | None, length: str | None = None) -> tuple[int, dict]:
    """POST raw bytes, with the Content-Length given (or the body's own, or none when both are None)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        if length is not None or body is not None:
            conn.putheader("Content-Length", length or str(len(body)))
        conn.endheaders()
        if body is not None and length is None:
            conn.send(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


LONG = {"role": "user", "content": "word " * 2100}

# (raw body, Content-Length sent, status, the parameter named, words in the message)
HTTP = [
    pytest.param('{"messages": [{"role": "user", "content": "caf\u00e9"}]}'.encode("latin-1"), None, 400, None,
                 "the request body is not UTF-8", id="latin1-body"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None, 400, "temperature",
                 "got nan", id="nan-literal"),
    pytest.param(b'{"messages": [{"role": "user", "content": "\\udc00"}]}', None, 400, "messages[0].content",
                 "unpaired surrogate \\udc00", id="unpaired-surrogate"),
    pytest.param(b"", str(1 << 30), 413, None, "the limit is 8388608", id="body-of-1-GiB"),
    pytest.param(None, None, 411, None, "needs a Content-Length header", id="no-content-length"),
    pytest.param(json.dumps({"messages": [*HI, {"role": "assistant", "content": "hello"}, LONG],
                             "truncation": "auto"}).encode(), None, 400, "messages",
                 "even after dropping every earlier turn", id="last-message-beyond-the-context"),
]


@pytest.mark.parametrize("body,length,status,param,words", HTTP)
def test_bad_request_over_http_gets_a_specific_error(server, body, length, status, param, words):
    code, answer = post(server, body, length)
    assert code == status and answer["error"]["param"] == param and words in answer["error"]["message"]


def test_a_request_body_with_a_utf8_bom_is_answered(server):
    body = BOM + json.dumps({"messages": HI, "max_tokens": 1}).encode()
    code, answer = post(server, body)
    assert code == 200 and answer["usage"]["completion_tokens"] == 1


# -- fuzz: the dataset readers ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "src", "tgt", "instruction", "output", "x"]), children,
        max_size=3),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
jsonish_lines = st.one_of(
    st.text(max_size=30),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    json_objects.map(lambda v: json.dumps(v)[:-1]),
    st.sampled_from(["{", "[", '"', "]", ",", '{"messages": [', "NaN", "1e999", "\\ud800", '"a",b', '""""']),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(jsonish_lines, max_size=8), ext=st.sampled_from([".jsonl", ".json", ".csv"]),
       bom=st.booleans(), tail=st.binary(max_size=6))
def test_fuzz_readers_raise_only_their_own_error_with_a_line_in_the_file(tmp_path, lines, ext, bom, tail):
    data = (BOM if bom else b"") + "\n".join(lines).encode("utf-8", "surrogatepass") + tail
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(data)
    last_line = data.count(b"\n") + 1
    seen = 0
    try:
        for record in iter_records(path):
            assert seen <= record.line <= last_line
            seen = record.line
    except ReadError as e:
        assert 0 <= e.line <= last_line and str(e).startswith(str(path))
        if e.line == 0:  # only a file with nothing in it is refused as a whole
            assert "empty" in str(e)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.booleans(), json_objects), min_size=1, max_size=8))
def test_fuzz_each_broken_jsonl_line_is_reported_on_its_own_line(tmp_path, rows):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False)[: None if good else -1] for good, row in rows)
                    + "\n", encoding="utf-8")
    records = list(iter_records(path))
    assert [record.line for record in records] == list(range(1, len(rows) + 1))
    assert [isinstance(record.row, BadRecord) for record in records] == [not good for good, _ in rows]


def test_a_client_that_stops_sending_does_not_hold_the_server():
    """A Content-Length longer than the body: the server gives up after its body timeout (60 s in
    service, 1 s here), answers 408 and closes the connection instead of waiting for ever."""
    import socket
    import threading
    import time

    import uvicorn

    from models.api import BODY_TIMEOUT_S, create_app
    from models.serve import ModelHost

    assert BODY_TIMEOUT_S == 60
    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ModelHost("quick"), body_timeout_s=1), lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listening.getsockname(), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"messages\":")
            started = time.monotonic()
            answer = b""
            while chunk := sock.recv(4096):  # b"": the server closed the connection
                answer += chunk
        assert time.monotonic() - started < 5
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["error"]["message"] == "the request body did not arrive within 1 s"
    finally:
        server.should_exit = True
        thread.join(10)
