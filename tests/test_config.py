"""Tests for the run-config schema (trainer.config) and ERNIEKit import (trainer.erniekit_import)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer import config as C
from trainer import erniekit_import as E
from trainer.cli import cmd_validate

FIXTURE = Path(__file__).parent / "fixtures" / "erniekit_sft_lora_0p3b.yaml"
TRAIN = {"data": {"train": [{"path": "train.jsonl"}]}}


def problems_of(d, local: bool = True) -> list[str]:
    with pytest.raises(C.ConfigError) as info:
        C.from_dict(d, local=local)
    return [message for _, message in info.value.problems]


def with_train(**sections) -> dict:
    d = {"data": {"train": [{"path": "train.jsonl"}]}}
    for name, value in sections.items():
        if isinstance(value, dict):
            d.setdefault(name, {}).update(value)
        else:
            d[name] = value
    return d


def test_defaults_validate_and_match_the_schema():
    cfg = C.from_dict(TRAIN)
    assert cfg.model.name_or_path == "ernie-4.5-tiny-moe"
    assert cfg.finetuning.lora.target_modules == ["all-linear"]
    assert cfg.optim.learning_rate == 1e-4 and cfg.precision == "fp32" and cfg.devices.device == "cpu"
    assert cfg.data.train == [C.DatasetEntry(path="train.jsonl", format="auto", probability=1.0)]
    for spec in C.iter_fields():
        if spec.key != "data.train":
            assert C.get(cfg, spec.key) == spec.default, spec.key


def test_yaml_round_trip_is_equal(tmp_path):
    cfg = C.from_dict(C.apply_overrides(TRAIN, [
        "optim.learning_rate=3e-7", "finetuning.lora.target_modules=[qkv_proj, o_proj]", "method=dpo",
        "data.eval=[{path: e.jsonl, format: erniekit_dpo, probability: 0.5}]", "devices.gpu_ids=",
    ]))
    path = tmp_path / "run.yaml"
    C.dump_yaml(cfg, path)
    assert C.load_config(path) == cfg
    assert C.from_dict(yaml.safe_load(C.to_yaml(cfg))) == cfg
    assert list(yaml.safe_load(path.read_text())) == [f.name for f in dataclasses.fields(C.RunConfig)]
    assert [p.name for p in tmp_path.iterdir()] == ["run.yaml"]


def test_overrides_are_parsed_as_yaml():
    d = C.apply_overrides(TRAIN, ["optim.learning_rate=3e-4", "data.train=[{path: a.jsonl}, b.jsonl]",
                                  "finetuning.lora.rslora=true", "devices.gpu_ids=0,1", "output.dir="])
    cfg = C.from_dict(d)
    assert cfg.optim.learning_rate == 3e-4
    assert [e.path for e in cfg.data.train] == ["a.jsonl", "b.jsonl"]
    assert cfg.finetuning.lora.rslora is True and cfg.devices.gpu_ids == "0,1" and cfg.output.dir == ""
    assert TRAIN == {"data": {"train": [{"path": "train.jsonl"}]}}
    cfg = C.from_dict(C.apply_overrides(TRAIN, ["output.dir=2024", "model.name_or_path=yes"]), local=False)
    assert (cfg.output.dir, cfg.model.name_or_path) == ("2024", "yes")


def test_override_errors():
    with pytest.raises(C.ConfigError) as info:
        C.apply_overrides({}, ["optim.lr=1", "nonsense", "data.max_seq_len=[1"])
    messages = [m for _, m in info.value.problems]
    assert messages[0] == "unknown key 'optim.lr' — did you mean 'optim.learning_rate'?"
    assert "expected KEY=VALUE" in messages[1]
    assert "data.max_seq_len" in messages[2] and "not valid YAML" in messages[2]


def test_dotted_keys_are_accepted_like_nested_ones():
    cfg = C.from_dict({"data.train": [{"path": "a.jsonl"}], "optim": {"learning_rate": 0.01},
                       "finetuning.lora.rank": 4})
    assert cfg.optim.learning_rate == 0.01 and cfg.finetuning.lora.rank == 4
    assert problems_of({"data.train": ["a"], "data": {"train": ["b"]}}) == ["data.train: given twice"]


def test_unknown_keys_name_the_key_and_suggest():
    assert problems_of(with_train(optim={"lr": 1e-3})) == \
        ["unknown key 'optim.lr' — did you mean 'optim.learning_rate'?"]
    assert problems_of(with_train(learning_rate=1e-3)) == \
        ["unknown key 'learning_rate' — did you mean 'optim.learning_rate'?"]
    assert problems_of(with_train(finetuning={"lora": {"rnak": 4}})) == \
        ["unknown key 'finetuning.lora.rnak' — did you mean 'finetuning.lora.rank'?"]
    assert problems_of({"data": {"train": [{"path": "a", "prob": 1}]}}) == \
        ["unknown key 'data.train[0].prob' — did you mean 'data.train[0].probability'?"]


def test_type_choice_and_range_errors():
    assert problems_of(with_train(optim={"learning_rate": "fast"})) == \
        ["optim.learning_rate: expected a number, got 'fast'"]
    assert problems_of(with_train(finetuning={"type": "qlora"})) == \
        ["finetuning.type: expected one of lora, full; got 'qlora'"]
    assert problems_of(with_train(finetuning={"lora": {"dropout": 1.5}})) == \
        ["finetuning.lora.dropout: must be in [0, 1), got 1.5"]
    assert problems_of(with_train(finetuning={"lora": {"rank": 0}})) == \
        ["finetuning.lora.rank: must be in [1, 8192], got 0"]
    assert problems_of(with_train(dpo={"beta": 0})) == ["dpo.beta: must be > 0, got 0"]
    assert problems_of(with_train(optim={"max_steps": 0})) == \
        ["optim.max_steps: must be -1 (use the number of epochs) or >= 1, got 0"]
    assert problems_of({"data": {"train": [{"path": "a", "format": "csv"}]}})[0].startswith(
        "data.train[0].format: expected one of auto, erniekit")


def test_numbers_as_yaml_reads_them():
    # PyYAML reads 1e-4 (no dot) as a string
    assert C.from_dict(with_train(optim={"learning_rate": "1e-4"})).optim.learning_rate == 1e-4
    assert C.from_dict(with_train(optim={"num_train_epochs": 2})).optim.num_train_epochs == 2.0
    assert C.from_dict(with_train(finetuning={"type": "LoRA"})).finetuning.type == "lora"


def test_bool_and_int_strictness():
    assert problems_of(with_train(finetuning={"lora": {"rslora": "yes please"}})) == \
        ["finetuning.lora.rslora: expected true or false, got 'yes please'"]
    assert problems_of(with_train(finetuning={"lora": {"rslora": 1}})) == \
        ["finetuning.lora.rslora: expected true or false, got 1"]
    assert problems_of(with_train(optim={"per_device_batch_size": 2.5})) == \
        ["optim.per_device_batch_size: expected an integer, got 2.5"]
    assert problems_of(with_train(devices={"nproc": True})) == ["devices.nproc: expected an integer, got true"]
    assert problems_of(with_train(optim={"learning_rate": True})) == \
        ["optim.learning_rate: expected a number, got true"]
    assert C.from_dict(with_train(optim={"seed": 7.0})).optim.seed == 7


def test_validate_a_config_edited_in_code():
    cfg = C.from_dict(TRAIN)
    cfg.optim.learning_rate = -1
    with pytest.raises(C.ConfigError, match=r"optim.learning_rate: must be > 0, got -1$"):
        C.validate(cfg)


def test_cross_field_rules():
    assert problems_of(with_train(precision="fp16")) == ["precision: fp16 needs a GPU; on cpu use fp32"]
    assert problems_of(with_train(precision="bf16")) == ["precision: bf16 needs a GPU; on cpu use fp32"]
    on_gpu = with_train(precision="bf16", devices={"device": "gpu", "gpu_ids": "0"})
    assert C.from_dict(on_gpu, local=False).precision == "bf16"
    assert problems_of({"data": {"train": []}}) == \
        ["data.train: needs at least one file, e.g. data.train=[{path: train.jsonl}]"]
    assert problems_of({}) == problems_of({"data": {"train": []}})
    assert problems_of(with_train(method="dpo", data={"max_seq_len": 512, "max_prompt_len": 512})) == \
        ["data.max_prompt_len: must be below data.max_seq_len (512) for method dpo, got 512"]
    assert problems_of(with_train(model={"name_or_path": ""}))[0].startswith(
        "model.name_or_path: must not be empty")
    assert problems_of(with_train(devices={"device": "gpu"}), local=False) == \
        ["devices.gpu_ids: required when devices.device is gpu, e.g. 0 or 0,1"]
    assert "they must match" in problems_of(with_train(devices={"device": "gpu", "gpu_ids": "0,1"}), local=False)[0]
    assert problems_of(with_train(logging={"eval_steps": 10}))[0].startswith(
        "logging.eval_steps: evaluation needs")
    assert problems_of(with_train(devices={"nnodes": 2}))[0].startswith("devices.master: required as host:port")
    assert problems_of({"data": {"train": [{"path": "p.jsonl", "format": "alpaca_dpo"}]}}) == \
        ["data.train[0].format: alpaca_dpo holds preference pairs; it needs method dpo"]


def test_all_problems_are_reported_at_once():
    with pytest.raises(C.ConfigError) as info:
        C.from_dict({"optim": {"lr": 1, "learning_rate": "fast"}, "finetuning": {"type": "qlora"},
                     "precision": "fp16", "method": "dpo", "data": {"train": [], "max_prompt_len": 4096}})
    keys = [key for key, _ in info.value.problems]
    assert keys == ["optim.lr", "finetuning.type", "optim.learning_rate", "data.train", "data.max_prompt_len",
                    "precision"]
    text = str(info.value)
    assert text.startswith("6 problems in the run config:")
    assert all(message in text for _, message in info.value.problems)


def test_load_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 1\n   seed: 3\n")
    with pytest.raises(C.ConfigError) as info:
        C.load_config(bad)
    assert str(info.value).startswith(f"{bad}: YAML syntax error at line 3, column")
    with pytest.raises(C.ConfigError, match="no such file"):
        C.load_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(C.ConfigError, match="expected a mapping of settings at the top level, got a list"):
        C.load_config(listing)
    good = tmp_path / "good.yaml"
    good.write_text("data:\n  train: [a.jsonl]\noptim: {lr: 3}\n")
    with pytest.raises(C.ConfigError) as info:
        C.load_config(good)
    assert str(info.value) == f"{good}: unknown key 'optim.lr' — did you mean 'optim.learning_rate'?"


def test_load_config_with_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: [a.jsonl]\noptim:\n  learning_rate: 1.0e-3\n")
    cfg = C.load_config(path, ["optim.learning_rate=5e-4", "optim.seed=1"])
    assert cfg.optim.learning_rate == 5e-4 and cfg.optim.seed == 1


def test_iter_fields_covers_every_leaf_key_once():
    specs = C.iter_fields()
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    expected = set()

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, prefix + f.name + ".")
            else:
                expected.add(prefix + f.name)

    walk(C.RunConfig(), "")
    assert set(keys) == expected
    assert keys[:3] == ["model.name_or_path", "model.template", "method"]
    by_key = {s.key: s for s in specs}
    assert by_key["finetuning.type"].choices == ("lora", "full")
    assert by_key["finetuning.lora.dropout"].maximum == 1 and by_key["finetuning.lora.dropout"].advanced
    assert by_key["finetuning.lora.rank"].depends_on == ("finetuning.type", "lora")
    assert by_key["data.train"].type == "datasets"
    assert [s.key for s in by_key["data.train"].item_fields] == ["path", "format", "probability"]
    assert all(s.help and s.label and s.group for s in specs)
    # defaults are copies: editing one does not change the schema
    by_key["finetuning.lora.target_modules"].default.append("x")
    assert C.field_spec("finetuning.lora.target_modules").default == ["all-linear"]


def test_command_preview_single_process():
    cfg = C.from_dict(TRAIN)
    assert C.command_preview(cfg, "jobs/1/config.yaml", "jobs/1") == \
        [sys.executable, "-m", "trainer", "run", "jobs/1/config.yaml", "--job-dir", "jobs/1"]


def test_command_preview_two_cpu_ranks():
    cfg = C.from_dict(with_train(devices={"nproc": 2}))
    argv = C.command_preview(cfg, "c.yaml", "jobs/1")
    assert argv == [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                    "--log_dir", str(Path("jobs/1") / "launch_logs"),
                    sys.executable, "-m", "trainer", "run", "c.yaml", "--job-dir", "jobs/1"]
    assert "--devices" not in argv


def test_command_preview_gpus_and_nodes():
    cfg = C.from_dict(with_train(devices={"device": "gpu", "gpu_ids": "0,1", "nproc": 2, "nnodes": 2,
                                          "master": "10.0.0.1:8090"}), local=False)
    argv = C.command_preview(cfg, "c.yaml", "j")
    launch = argv[:argv.index("--log_dir")]
    assert launch[3:] == ["--nproc_per_node", "2", "--devices", "0,1", "--nnodes", "2",
                          "--master", "10.0.0.1:8090", "--rank", "0"]


def test_config_modules_do_not_import_paddle():
    code = ("import sys, trainer.config, trainer.erniekit_import; "
            "print('paddle' in sys.modules, 'paddleformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.split() == ["False", "False"]


def test_validate_cli(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: [a.jsonl]\n")
    assert cmd_validate([str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cmd_validate([str(path), "optim.learning_rate=fast", "precision=fp16"]) == 1
    err = capsys.readouterr().err
    assert "optim.learning_rate: expected a number, got 'fast'" in err and "precision: fp16 needs a GPU" in err
    assert cmd_validate([str(path), "optim.lr=1", "precision=fp16"]) == 1
    err = capsys.readouterr().err
    assert "2 problems" in err and "unknown key 'optim.lr'" in err and "precision: fp16 needs a GPU" in err


# ---------------------------------------------------------------- ERNIEKit import

def test_erniekit_fixture_imports_and_validates():
    data, unmapped, notes = E.import_erniekit(str(FIXTURE))
    cfg = C.from_dict(data, local=False)  # a GPU config for a model not downloaded here
    assert cfg.model.name_or_path == "baidu/ERNIE-4.5-0.3B-Paddle"
    assert cfg.method == "sft" and cfg.finetuning.type == "lora"
    assert cfg.finetuning.lora.rank == 32 and cfg.finetuning.lora.alpha == 64
    assert cfg.data.train == [C.DatasetEntry("./examples/data/sft-train.jsonl", "erniekit", 1.0)]
    assert cfg.data.eval == [C.DatasetEntry("./examples/data/sft-eval.jsonl", "erniekit", 1.0)]
    assert (cfg.data.max_seq_len, cfg.optim.learning_rate, cfg.optim.lr_scheduler) == (8192, 1e-4, "cosine")
    assert (cfg.optim.gradient_accumulation_steps, cfg.optim.warmup_steps, cfg.optim.seed) == (8, 20, 23)
    assert (cfg.logging.save_steps, cfg.logging.eval_steps, cfg.logging.logging_steps) == (100, 100, 1)
    assert cfg.precision == "bf16" and cfg.devices.device == "gpu" and cfg.devices.gpu_ids == "0"
    assert (cfg.gpu.tensor_parallel_degree, cfg.gpu.pipeline_parallel_degree, cfg.gpu.sharding) == (1, 1, "stage1")
    assert cfg.gpu.offload_optimizer is True and cfg.gpu.recompute is False
    assert not any(line.startswith(("tensor_parallel_degree:", "sharding:", "recompute:")) for line in unmapped)
    assert "output_dir: ./output" in unmapped and "disable_tqdm: true" in unmapped
    assert not any(line.startswith(("learning_rate:", "stage:", "train_dataset_path:")) for line in unmapped)
    assert any("local" in note and "baidu/ERNIE-4.5-0.3B-Paddle" in note for note in notes)


def test_erniekit_dpo_and_dataset_mixing():
    data, unmapped, notes = E.convert_erniekit({
        "stage": "DPO", "fine_tuning": "Full", "train_dataset_type": "erniekit,messages,odd",
        "train_dataset_path": "a.jsonl,b.jsonl,c.jsonl", "train_dataset_prob": "0.5,0.3,0.2",
        "beta": 0.2, "device": "cpu", "compute_type": "bf16", "min_lr": 5.0e-7,
    })
    cfg = C.from_dict(data)
    assert cfg.method == "dpo" and cfg.finetuning.type == "full" and cfg.dpo.beta == 0.2
    assert [(e.path, e.format, e.probability) for e in cfg.data.train] == \
        [("a.jsonl", "erniekit_dpo", 0.5), ("b.jsonl", "chatml_dpo", 0.3), ("c.jsonl", "auto", 0.2)]
    assert cfg.precision == "fp32" and cfg.devices.device == "cpu"
    assert unmapped == ["min_lr: 5.0e-07"]
    assert any("'odd'" in note for note in notes)


def test_erniekit_unsupported_stage_is_refused():
    with pytest.raises(C.ConfigError, match="stage: 'PT' cannot be imported"):
        E.convert_erniekit({"stage": "PT"})


def test_erniekit_cli_writes_the_config(tmp_path, capsys):
    out = tmp_path / "run.yaml"
    assert E.main([str(FIXTURE), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert C.from_dict(C.read_yaml_mapping(out), local=False) == \
        C.from_dict(E.import_erniekit(str(FIXTURE))[0], local=False)
    assert "  recompute_use_reentrant: true" in printed.splitlines()
    assert "to do before it runs on this machine" in printed  # the hub model is not downloaded here
    assert "notes:" in printed


def test_erniekit_cli_bad_files(tmp_path, capsys):
    assert E.main([str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "o.yaml")]) == 1
    assert "missing.yaml: no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: [SFT\n")
    assert E.main([str(broken), "-o", str(tmp_path / "o.yaml")]) == 1
    assert "YAML syntax error at line" in capsys.readouterr().err
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    assert E.main([str(scalar), "-o", str(tmp_path / "o.yaml")]) == 1
    assert "expected a mapping" in capsys.readouterr().err
    assert not (tmp_path / "o.yaml").exists()
