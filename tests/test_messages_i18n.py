"""The trainer's messages in both languages (trainer/messages.py): every catalogue entry has English
and Chinese with the same fields; bad configs, ERNIEKit files and data files and rows produce
Messages (never plain strings) whose English is what the command line prints and whose Chinese has
no English left but names and values; the ids and fields survive `trainer data check --json` and
the web UI shows them in the chosen language."""

from __future__ import annotations

import ast
import json
import pickle
import string
from pathlib import Path

import pytest

from tests.browser_helpers import english_words
from tests.conftest import ROOT, shown
from tests.data_fixtures import SAMPLES, write_jsonl
from tests.test_bad_inputs import DATASETS, GOOD
from trainer import config as C
from trainer.data import check
from trainer.data.formats import try_convert
from trainer.data.readers import DataError
from trainer.data.validate import validate_file
from trainer.erniekit_import import convert_erniekit
from trainer.messages import CATALOGUE, Message
from trainer.schema import SECTIONS

# Names of data fields, role spellings and schema values a Chinese message keeps as they are
DATA_NAMES = {"role", "content", "from", "value", "system", "user", "assistant", "human", "gpt", "chosen",
              "rejected", "response", "sort", "instruction", "input", "output", "history", "conversations",
              "label", "path", "format", "probability", "is_system", "erniekit", "alpaca", "sharegpt", "images",
              "chosen_response", "rejected_response", "prompt",
              "tool", "tools", "tool_calls", "tool_call_id", "function", "function_call", "observation", "id", "type",
              "name", "arguments", "parameters", "description"}
# Fields shown as they are: what a library said (json, csv, yaml, pyarrow, re), a command to run
LIBRARY_FIELDS = {"error", "problem", "command"}


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_every_entry_has_both_languages_with_the_same_fields():
    wrong = [key for key, entry in CATALOGUE.items() if set(entry) != {"en", "zh"} or not all(entry.values())
             or placeholders(entry["en"]) != placeholders(entry["zh"])]
    assert not wrong, wrong


def test_no_chinese_template_holds_english_words():
    left = {key: english_words(entry["zh"].format(**{name: "0" for name in placeholders(entry["zh"])}))
            for key, entry in CATALOGUE.items()}
    assert not {key: words for key, words in left.items() if words}


def test_a_message_is_its_english_text_and_keeps_its_id_through_json_and_pickle():
    message = Message("row-expected-string", value=Message("value-items", n=2))
    assert message == "expected a string, got a list of 2 items" and isinstance(message, str)
    assert message.text("zh") == "应为字符串，实际为 含 2 项的列表"
    assert f"x: {message}" == "x: expected a string, got a list of 2 items"
    for copy in (Message.from_json(json.loads(json.dumps(message.to_json()))), pickle.loads(pickle.dumps(message))):
        assert (copy, copy.key, copy.text("zh")) == (message, message.key, message.text("zh"))
    assert json.dumps({"m": message}) == '{"m": "expected a string, got a list of 2 items"}'


# -- the corpus: bad input of every kind --------------------------------------------------------------

def _problems(d) -> list:
    with pytest.raises(C.ConfigError) as info:
        C.from_dict(d)
    return info.value.problems


TRAIN = {"train": [{"path": "a.jsonl"}]}
BAD_CONFIGS = [
    {"optim": {"lr": 1, "learning_rate": "快", "seed": "一", "max_steps": 0}, "未知": 1, 1: 2, "method": "模式"},
    {"optim": {"learning_rate": 1}, "optim.learning_rate": 2, "logging": 5, "data": {"skip_invalid": "是"}},
    {"optim": {"learning_rate": float("nan")}, "model": {"name_or_path": 5},
     "finetuning": {"lora": {"target_modules": [1], "rank": 0}}},
    {"optim": {"learning_rate": -1, "num_train_epochs": [1]}, "data": {"train": 5}},
    {"data": {"train": [{"path": {"甲": 1}}]}},
    {"data": {"train": [5, {"path": " "}, {"format": "auto"}, {"path": "a.jsonl", "fmt": "x"}]}},
    {"model": {"name_or_path": " "}, "precision": "bf16", "logging": {"eval_steps": 5},
     "data": {"train": [{"path": "a.jsonl", "format": "alpaca_dpo"}]}},
    {"method": "dpo", "data": {**TRAIN, "max_seq_len": 512, "max_prompt_len": 600},
     "moe": {"token_balanced_loss": True, "aux_loss_coef": -2, "bias_update_rate": 0.1, "freeze_router": True},
     "finetuning": {"lora": {"target_modules": ["("]}}},
    {"data": TRAIN, "devices": {"device": "gpu", "nnodes": 2}, "finetuning": {"lora": {"target_modules": []}}},
    {"data": TRAIN, "devices": {"device": "gpu", "gpu_ids": "0,x"}},
    {"data": TRAIN, "devices": {"device": "gpu", "gpu_ids": "0,0"}},
    {"data": TRAIN, "devices": {"device": "gpu", "gpu_ids": "0,1", "nproc": 1}},
    {"data": TRAIN, "finetuning": {"type": "full", "base_quant": "wint4/8", "base_quant_group_size": 64},
     "devices": {"device": "gpu", "gpu_ids": "0,1", "nproc": 2}, "gpu": {"tensor_parallel_degree": 2}},
    {"data": TRAIN, "method": "dpo", "dpo": {"loss_type": "kto_pair", "reference_free": True, "simpo_gamma": 2}},
    {"data": TRAIN, "method": "dpo", "dpo": {"loss_type": "orpo", "sft_loss_ratio": 1}},
    5,
]

BAD_YAML = {
    "syntax.yaml": "optim:\n  seed: [1, 2\n",
    "deep.yaml": "data: " + "[" * 5000 + "]" * 5000 + "\n",
    "scalar.yaml": "42\n",
    "alias.yaml": "a: &a [1]\nb: *a\n",
    "twice.yaml": "optim:\n  seed: 1\n  seed: 2\n",
}

ERNIEKIT = [
    {"stage": "阶段"},
    {"fine_tuning": "量化", "train_dataset_path": "a.jsonl,b.jsonl", "train_dataset_type": "erniekit",
     "train_dataset_prob": "1"},
]
ERNIEKIT_NOTES = {
    "model_name_or_path": "baidu/ERNIE-4.5-0.3B-Paddle", "batch_size": 2, "per_device_train_batch_size": 1,
    "template": "模板", "lr_scheduler_type": "constant_with_warmup", "train_dataset_path": "a.jsonl,b.jsonl",
    "train_dataset_type": "erniekit,alpaca", "eval_dataset_path": "e.jsonl", "do_eval": False, "compute_type": "wint8",
    "device": "芯片",
}
ERNIEKIT_MORE_NOTES = [
    {"stage": "DPO", "loss_type": "nca_pair", "lr_scheduler_type": "多项式", "evaluation_strategy": "每轮",
     "do_eval": True, "device": "cpu", "bf16": True, "rslora": True},
    {"evaluation_strategy": "steps", "do_eval": True},
    {"stage": "DPO", "loss_type": "or", "sft_loss_ratio": 0.5},
    {"stage": "DPO", "loss_type": "or"},
    {"stage": "DPO", "loss_type": "ipo", "pref_loss_ratio": 2, "sft_loss_ratio": 1},
]


def config_messages(tmp_path) -> list:
    out = [message for d in BAD_CONFIGS for _, message in _problems(d)]
    for name, text in BAD_YAML.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(C.ConfigError) as info:
            C.read_yaml_mapping(tmp_path / name)
        out += [message for _, message in info.value.problems]
    for path in (tmp_path / "missing.yaml", tmp_path):
        with pytest.raises(C.ConfigError) as info:
            C.read_yaml_mapping(path)
        out += [message for _, message in info.value.problems]
    with pytest.raises(C.ConfigError) as info:
        C.apply_overrides({}, ["无键", "optim.seed=[1", "optim.seed=" + "[" * 5000, "optim.nope=1"])
    out += [message for _, message in info.value.problems]
    for src in ERNIEKIT:
        with pytest.raises(C.ConfigError) as info:
            convert_erniekit(src)
        out += [message for _, message in info.value.problems]
    for src in (ERNIEKIT_NOTES, *ERNIEKIT_MORE_NOTES):
        out += convert_erniekit(src)[2]
    return out


GOOD_TURNS = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}]
# (format, row): rows that reach every check of the formats
TOOLS = [{"type": "function", "function": {"name": "查天气"}}]
ASK, REPLY = {"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}
RESULT = {"role": "tool", "tool_call_id": "c_1", "content": "晴"}


def call(name: str, arguments: str) -> dict:
    return {"role": "assistant", "tool_calls": [{"id": "c_1", "type": "function",
                                                 "function": {"name": name, "arguments": arguments}}]}


CALL = call("查天气", "{}")

BAD_ROWS = [
    ("erniekit", {"src": ["问", "问"], "tgt": ["答"], "label": [1, 1, 2]}),
    ("erniekit", {"src": [], "tgt": "答"}),
    ("erniekit", {"src": ["问"], "tgt": ["答"], "label": [0]}),
    ("erniekit", {"src": "问", "tgt": "答", "label": 5}),
    ("erniekit", {"src": ["系统"], "tgt": ["答"], "is_system": 1}),
    ("erniekit", {"src": [" "], "tgt": [7], "system": 1.5}),
    ("erniekit", {"src": "问", "tgt": "答", "label": [1, 1]}),
    ("erniekit", {"src": ["问"], "tgt": ["答"], "label": [1, 1]}),
    ("erniekit", {"src": {"甲": 1}, "tgt": True}),
    ("erniekit", {"src": ["问", "问", "问"], "tgt": ["答", 1.5]}),
    ("erniekit", {"src": ["问", "问", "问"], "tgt": ["答", "答"]}),
    ("erniekit_dpo", {"src": ["问"], "tgt": ["答"], "response": "答", "sort": "排"}),
    ("erniekit_dpo", {"src": ["问"], "response": "答", "sort": [1]}),
    ("erniekit_dpo", {"src": ["问", "问"], "tgt": [], "response": [["甲", "乙"], "乙", "丙"], "sort": [1, 0]}),
    ("erniekit_dpo", {"src": ["问"], "response": ["甲", "乙"], "sort": [1, 0, 2]}),
    ("erniekit_dpo", {"src": ["问"], "response": ["甲", "乙"], "sort": [1, "高"]}),
    ("erniekit_dpo", {"src": ["问"], "response": ["甲", "甲"], "sort": [1, 1]}),
    ("erniekit_dpo", {"src": ["问"], "response": [["甲", "乙"], "乙"], "sort": {"甲": 1}}),
    ("erniekit_dpo", {"src": ["问"], "response": "甲"}),
    ("alpaca", {"instruction": "问", "output": "", "history": [["问"], [1, "答"]]}),
    ("alpaca", {"instruction": "问", "output": "答", "history": {}}),
    ("alpaca", {"instruction": "问\ud800", "output": "答"}),
    ("alpaca_dpo", {"instruction": "问", "chosen": "甲", "rejected": "甲"}),
    ("alpaca_dpo", {"instruction": "问", "chosen": {"role": "user", "content": "甲"}}),
    ("alpaca_dpo", {"instruction": "问", "chosen": {"role": "assistant"}, "rejected": 5}),
    ("messages", {"messages": [{"role": "机器人", "content": "甲"}, {"content": "乙"}, {"role": "user"}, 5]}),
    ("messages", {"messages": []}),
    ("messages", {"messages": {"role": "user"}}),
    ("messages", {"messages": [*GOOD_TURNS, {"role": "system", "content": "系统"}, {"role": "user", "content": "问"}]}),
    ("messages", {"messages": [{"role": "system", "content": "系统"}, *GOOD_TURNS], "system": "系统"}),
    ("messages", {"messages": [{"role": "assistant", "content": "答"}]}),
    ("messages", {"messages": GOOD_TURNS, "label": [0]}),
    ("messages", {"messages": GOOD_TURNS, "label": [1, 1]}),
    ("messages", {"messages": [*GOOD_TURNS, *GOOD_TURNS], "label": [1]}),
    ("messages", {"messages": [{"role": "system", "content": "系统"}]}),
    ("messages", {"messages": [{"role": "user", "content": "问"}], "label": [1]}),
    ("messages_dpo", {"messages": GOOD_TURNS, "chosen": "甲", "rejected": "乙"}),
    # multi-turn preference pairs: a session-level reply, a reply that calls tools
    ("chatml_dpo", {"messages": [*GOOD_TURNS, {"role": "user", "content": "问"}],
                    "chosen_response": [{"role": "assistant", "content": "甲"}, {"role": "user", "content": "问"},
                                        {"role": "assistant", "content": "乙"}],
                    "rejected_response": [{**REPLY, "tool_calls": CALL["tool_calls"]}]}),
    ("trl_dpo", {"chosen": [ASK, REPLY, ASK, REPLY], "rejected": [ASK, {**REPLY, "content": "乙"}, ASK, REPLY]}),
    ("trl_dpo", {"chosen": [ASK, REPLY], "rejected": [ASK, REPLY, ASK, REPLY]}),
    ("sharegpt", {"conversations": [{"from": "human", "value": "问"}]}),
    ("sharegpt", {"conversations": [{"from": "人", "value": "问"}]}),
    ("sharegpt_dpo", {"conversations": [{"from": "human", "value": "问"}], "chosen": {"from": "gpt", "value": "甲"}}),
    ("messages", [1, 2]),
    ("messages", None),
    # function calling (trainer/data/tool_rows.py)
    ("messages", {"tools": "[", "messages": GOOD_TURNS}),
    ("messages", {"tools": 5, "messages": GOOD_TURNS}),
    ("messages", {"tools": [{"type": "检索"}, {"name": " "}, {"name": "查天气"}, {"name": "查天气", "parameters": 1}],
                  "messages": GOOD_TURNS}),
    ("messages", {"tools": TOOLS, "messages": [ASK, call("问路", "{}"), RESULT, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, call("查天气", "{"), RESULT, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, call("查天气", "[1]"), RESULT, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [{**ASK, "tool_calls": call("查天气", "{}")["tool_calls"]}, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, RESULT, CALL, RESULT, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, RESULT, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, {**RESULT, "tool_call_id": "c_2"}, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, {"role": "tool", "content": "晴"}, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, {**RESULT, "name": "问路"}, REPLY]}),
    ("messages", {"tools": TOOLS, "messages": [ASK, CALL, RESULT, ASK, REPLY]}),
    ("sharegpt", {"tools": TOOLS, "conversations": [{"from": "human", "value": "问"},
                                                    {"from": "function_call", "value": "{"}]}),
    ("sharegpt", {"tools": TOOLS, "conversations": [{"from": "human", "value": "问"},
                                                    {"from": "function_call", "value": "[]"}]}),
]

# JSON files (named in the file's name) whose trouble is the file's own, beyond tests.test_bad_inputs
BAD_FILES = {
    "wrapper-colon.json": '{"data": [' + GOOD + '], "x" 1}',
    "wrapper-separator.json": '{"data": [' + GOOD + '] 5}',
    "wrapper-key.json": '{"data": [' + GOOD + '], 5: 1}',
    "after-object.json": '{"data": [' + GOOD + ']} x',
    "empty-array.json": "[]",
    "array-separator.json": "[" + GOOD + " 5]",
    "after-array.json": "[" + GOOD + "] 5",
    "end-of-file.json": '{"data": [' + GOOD + '], "x"',
    "no-fields.jsonl": "{}\n",
    "column-twice.csv": "甲,甲\n1,2\n",
    "zero-bytes.jsonl": "",
    "noext": "x",
    "one-invalid.jsonl": json.dumps({"instruction": "问", "output": ""}),
    "blank.jsonl": "\n\n",
    "pretty.jsonl": "{\n" + GOOD[1:],
    "prose.jsonl": GOOD + "\n" + "名字\n",
    "unknown.jsonl": '{"提示": "问"}\n',
    "not-objects.jsonl": "[1]\n",
    "unparsed.jsonl": "{\n",
    "header-only.csv": "instruction,output\n",
    "blank-header.csv": ",\n1,2\n",
    "short-row.csv": "instruction,output\n问\n",
    "empty.csv": "\n",
    "notes.txt": "x",
    "folder.jsonl/": "",
    "refused.jsonl": "\n".join([json.dumps(SAMPLES["alpaca"]), json.dumps({"instruction": "问", "output": ""})]),
}


def data_messages(tmp_path) -> list:
    messages = []
    for fmt, row in BAD_ROWS:
        example, issues = try_convert(row, fmt, "d.jsonl", 1)
        assert example is None and issues, (fmt, row)
        messages += [issue.message for issue in issues]
    for name, text in BAD_FILES.items():
        path = tmp_path / name
        if name.endswith("/"):
            path.mkdir()
        else:
            path.write_text(text, encoding="utf-8")
        try:
            report = validate_file(path)
            error = report.error()
            assert error is not None, name
        except DataError as e:
            error = e
        messages += [error.summary] if error.summary else []
        messages += [issue.message for issue in error.issues]
    skipped = validate_file(tmp_path / "one-invalid.jsonl", skip_invalid=True).error()
    messages += [skipped.summary]
    with pytest.raises(DataError) as info:
        validate_file(tmp_path / "missing.jsonl")
    messages += [issue.message for issue in info.value.issues]
    with pytest.raises(DataError) as info:
        validate_file(write_jsonl(tmp_path / "g.jsonl", [SAMPLES["alpaca"]]), format="gpt")
    messages += [issue.message for issue in info.value.issues]
    return messages


def test_dataset_kind_mismatch_is_a_message(tmp_path):
    from trainer.datasets import _load
    from trainer.schema import DatasetEntry

    path = write_jsonl(tmp_path / "p.jsonl", [SAMPLES["alpaca_dpo"]])
    with pytest.raises(C.ConfigError) as info:
        _load([DatasetEntry(path=str(path))], False, lambda line: None, "sft", "data.train")
    (key, message), = info.value.problems
    assert message.key == "data-kind-mismatch" and message.text("zh").endswith("sft 方法需要SFT 对话数据")
    assert message == f"data.train[0]: {path} holds preference rows (format alpaca_dpo); method sft needs sft data"


def leaves(message) -> list:
    """The plain values inside a message, nested messages opened."""
    out = []
    for name, value in message.fields.items():
        for item in value if isinstance(value, list) else [value]:
            out += leaves(item) if isinstance(item, Message) else [] if name in LIBRARY_FIELDS else [str(item)]
    return out


def keys_of(message) -> set[str]:
    nested = {k for v in message.fields.values() for item in (v if isinstance(v, list) else [v])
              if isinstance(item, Message) for k in keys_of(item)}
    return {message.key} | nested


def chinese_without_library_text(message) -> str:
    def strip(value):
        if isinstance(value, list):
            return [strip(item) for item in value]
        return Message(value.key, **{n: "0" if n in LIBRARY_FIELDS else strip(v) for n, v in value.fields.items()}) \
            if isinstance(value, Message) else value
    return strip(message).text("zh")


def test_bad_configs_and_data_give_messages_with_no_english_in_chinese(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    messages = config_messages(tmp_path / "c") + data_messages(tmp_path / "d")
    # and values the corpus gives in English: JSON literals, ERNIEKit's keys
    names = DATA_NAMES | {spec.key for spec in C.iter_fields()} | set(SECTIONS) | {"nan", "true", "stage", "device",
                                                                                   "or"}  # ERNIEKit's orpo
    plain = [m for m in messages if not isinstance(m, Message)]
    assert not plain, plain
    for message in messages:
        zh = chinese_without_library_text(message).replace("'", " ")  # a quoted name is a name
        # data values in the corpus are Chinese or numbers, so what is left is names and keys
        assert not english_words(zh, names), (message, zh, english_words(zh, names))
        assert message.text("en") == message
    produced = set().union(*(keys_of(m) for m in messages))
    # reached by the tests of tests/test_bad_inputs.py and below, or by reading damage no small file shows
    # reached by the other tests here (damaged files, the UI, the run's data), or by damage no small
    # file shows (a row with no issue of its own, a Parquet file that breaks after its first batch)
    elsewhere = {"read-utf16", "read-not-utf8", "read-nul", "read-json-decode", "read-int-digits",
                 "read-parquet-unreadable", "read-parquet-after", "read-parquet-no-rows", "read-csv-near",
                 "read-csv-malformed", "read-hint-cr", "read-empty-whitespace", "config-data-file-missing",
                 "config-data-invalid-rows", "data-kind-mismatch", "value-null", "format-invalid-row",
                 "row-template"}  # the last: tests/test_chat_templates.py, with a real chat template
    # the GPU-scale, machine and model checks are tested with their modules (trainer/parallel.py,
    # trainer/preflight.py), which need GPUs or model directories to reach
    # the images of rows, and zip uploads: tests/test_vl_data.py reaches each of them and checks its Chinese
    # a quantized export's report and FastDeploy notes: tests/test_quant_export.py
    theirs = {key for key in CATALOGUE if key.split("-")[0] in ("gpu", "machine", "model", "image", "vl", "zip",
                                                                 "qr", "fd")
              or key.startswith(("import-note-gpu", "import-note-sharding", "import-note-recompute",
                                 "import-note-prompt-len"))}
    never = {key for key in CATALOGUE if not key.startswith("json-")} - produced - elsewhere - theirs
    assert not never, sorted(never)


def test_file_level_damage_gives_messages_and_check_json_carries_their_ids(tmp_path, capsys):
    """tests/test_bad_inputs.py's corpus of damaged files: every issue `data check --json` prints
    holds its message's id and fields, which give back the English text and a Chinese one."""
    seen = set()
    for param in DATASETS:
        name, content, _ = param.values
        path = tmp_path / param.id / name
        path.parent.mkdir()
        path.write_bytes(content(tmp_path) if callable(content) else content)
        assert check.main([str(path), "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        for issue in report["issues"]:
            message = Message.from_json(issue["i18n"])
            assert message == issue["message"] and message.text("zh") != message
            seen |= keys_of(message)
        if "error_i18n" in report:
            assert Message.from_json(report["error_i18n"]).text("zh")
    assert {"read-utf16", "read-not-utf8", "read-nul", "read-int-digits", "read-parquet-unreadable",
            "read-csv-malformed", "read-hint-cr", "read-empty-whitespace", "value-null"} <= seen


def test_no_message_site_is_a_plain_string():
    """What the checks say goes through the catalogue: no string literal where a problem, an issue,
    a note, a bad record or a read error is made in the modules that check config and data."""
    modules = ["trainer/config.py", "trainer/schema.py", "trainer/parallel.py", "trainer/preflight.py",
               "trainer/erniekit_import.py", "trainer/datasets.py", "trainer/data/readers.py", "trainer/data/rows.py",
               "trainer/data/formats.py", "trainer/data/dialogue.py", "trainer/data/tool_rows.py",
               "trainer/data/validate.py", "trainer/data/stats.py"]
    # the argument that holds the message, by what is called
    message_at = {"issue": 1, "BadRecord": 0, "ReadError": 1, "DataIssue": 3, "DataError": 1,
                  "UnknownFormatError": 1, "fail": 0, "expect": 1, "notes.append": 0}
    problem_lists = {"ConfigError": 0, "problems.append": 0, "out.append": 0}  # (key, message) pairs
    found = []
    for module in modules:
        for node in ast.walk(ast.parse((ROOT / module).read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "append" and isinstance(func, ast.Attribute):
                name = f"{getattr(func.value, 'id', '')}.append"
            if name in message_at and len(node.args) > message_at[name]:
                messages = [node.args[message_at[name]]]
            elif name in problem_lists and node.args:
                pairs = node.args[problem_lists[name]]
                pairs = pairs.elts if isinstance(pairs, ast.List) else [pairs]
                messages = [pair.elts[1] for pair in pairs if isinstance(pair, ast.Tuple) and len(pair.elts) == 2]
            else:
                continue
            found += [f"{module}:{node.lineno}" for message in messages if _is_text(message)]
    assert not found, found


def _is_text(node: ast.AST) -> bool:
    """Text written out in English: a string with a space, an f-string, or one of them joined or chosen."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and " " in node.value
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    if isinstance(node, ast.IfExp):
        return _is_text(node.body) or _is_text(node.orelse)
    return False


def test_the_command_line_still_prints_english(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "output": ""}])
    assert check.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:1: field 'output': empty assistant turn" in out and "1 row: 0 valid, 1 invalid" in out


# -- the web UI shows them in the chosen language -----------------------------------------------------

@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio")


def test_train_tab_marks_and_data_tab_tables_follow_the_language(ctx, tmp_path):
    import gradio as gr
    import pandas as pd

    from webui import data_tab, train_tab
    from webui.form import BY_KEY, to_widget

    with gr.Blocks():
        tab = train_tab.build(ctx)
    form = tab.form
    values = [to_widget(BY_KEY[key], BY_KEY[key].default) for key in form.keys]
    values[form.keys.index("optim.learning_rate")] = -1.0
    values[form.keys.index("data.train")] = pd.DataFrame([["/nowhere/x.jsonl", "auto", 1.0]])
    updates, job_id = train_tab.start(ctx, tab, values, "", "zh")
    assert job_id is None
    mark = updates[form.errors["optim.learning_rate"]]["value"]
    assert shown(mark, "en") == "⚠ optim.learning_rate: must be > 0, got -1.0"
    assert shown(mark, "zh") == "⚠ optim.learning_rate：必须 > 0，实际为 -1.0"
    assert shown(updates[form.errors["data.train"]]["value"], "zh") == \
        "⚠ data.train[0].path：文件不存在：/nowhere/x.jsonl"
    assert "必须 > 0" in shown(updates[tab.problems], "zh")

    bad = write_jsonl(tmp_path / "bad.jsonl", [SAMPLES["messages"], {"messages": [{"role": "user", "content": "问"}]}])
    stored = ctx.datasets.add(bad, "bad.jsonl")
    report = data_tab.show_dataset(ctx, stored.id, "zh")
    assert report.errors["value"].values.tolist() == [
        ["bad.jsonl", 2, "messages", "对话必须以 assistant 轮次结束（即要训练的回答），但它以 user 轮次结束"]]
    assert report.preview.iloc[1].tolist()[-1] == \
        "messages: 对话必须以 assistant 轮次结束（即要训练的回答），但它以 user 轮次结束"
    english = data_tab.show_dataset(ctx, stored.id, "en").errors["value"].values.tolist()[0][-1]
    assert english == "the conversation must end with an assistant turn (the reply to train on), but it ends with " \
                      "a user turn"

    unreadable = ctx.datasets.add(_write(tmp_path / "u.jsonl", b"\x00\x01"), "u.jsonl")
    assert data_tab.show_dataset(ctx, unreadable.id, "zh").summary.startswith(
        "**u.jsonl** 无法使用：第 1 行有零字节 0x00")


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_load_and_import_failures_and_notes_follow_the_language(ctx, tmp_path):
    import gradio as gr

    from webui import train_tab

    with gr.Blocks():
        tab = train_tab.build(ctx)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: &a [1]\nb: *a\n")
    status = train_tab.load_yaml(ctx, tab, str(broken), "zh")[tab.io_status]
    assert shown(status, "zh") == "无法加载 broken.yaml：YAML 语法错误：第 2 行第 4 列：运行配置中不允许使用别名（*a）；请直接写出值"
    fixture = str(ROOT / "tests" / "fixtures" / "erniekit_sft_lora_0p3b.yaml")
    status = shown(train_tab.import_yaml(ctx, tab, fixture, "zh")[tab.io_status], "zh")
    notes = status.split("说明：", 1)[1]
    assert notes and not english_words(notes, {"device"}), english_words(notes, {"device"})  # an ERNIEKit key


def test_refused_uploads_are_said_in_both_languages(ctx, tmp_path):
    from webui.data_tab import store_uploads

    for name, content in (("notes.txt", b"x"), ("empty.jsonl", b"")):
        status = store_uploads(ctx, [str(_write(tmp_path / name, content))], "zh").status
        assert shown(status, "en").startswith(f"- Refused {name}: ")
        assert shown(status, "zh").startswith(f"- 已拒绝 {name}：") and not english_words(shown(status, "zh"))
