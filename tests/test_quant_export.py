"""Quantized export (`trainer export --quantize`, trainer/quant_export.py) and its quality report
(trainer/quant_report.py, read back by trainer/export_facts.py): the session's SFT-LoRA job exported
once as wint4/8 with the report; the export is self-contained, reloads in a fresh process with the
in-memory quantized model's greedy answers, and its report holds sane figures. Every refusal leaves
nothing behind. The FastDeploy command for plain and quantized exports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.quant_spec import QuantSpec
from trainer.export_facts import REPORT_FILE, default_export_dir, fastdeploy_command, report_text

ROOT = Path(__file__).resolve().parent.parent
WIDTH = "wint4/8"
RELOAD = """
import json, sys
from models.chat_engine import ChatEngine
from models.quant import quantized_layers
from trainer.quant_report import greedy_answers
engine = ChatEngine.load(sys.argv[1])
prompts = json.loads(open(sys.argv[2]).read())
print(json.dumps({"layers": len(quantized_layers(engine.model)), "answers": greedy_answers(engine, prompts)}))
"""


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "export", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(lora_job, tmp_path_factory):
    """The LoRA job exported as wint4/8 with the report (wint8 compared too): (dir, report, stdout)."""
    out = tmp_path_factory.mktemp("quant-export") / "wint4-8"
    result = export_cli(lora_job, "--merge", "--quantize", WIDTH, "--report", "--report-widths", "wint8", "-o", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / REPORT_FILE).read_text(encoding="utf-8")), result.stdout


def left_behind(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.glob(out.name + "*"))


def test_the_quantized_export_is_self_contained_and_written_whole(exported, lora_job):
    out, _, stdout = exported
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["quantization_config"] == QuantSpec(WIDTH).to_config()
    adapter_template = json.loads((lora_job / "output" / "tokenizer_config.json").read_text())["chat_template"]
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == adapter_template
    assert {"model.safetensors", "tokenizer.model", "generation_config.json", REPORT_FILE} <= {
        path.name for path in out.iterdir()}
    assert left_behind(out) == [out.name]  # no .partial beside it
    assert f"exported to {out}" in stdout
    # FastDeploy cannot read the studio's format: it is pointed at the full-precision export
    assert f"--model {lora_job / 'export'} " in stdout and "--quantization wint4" in stdout


def test_the_report_compares_full_precision_with_each_width(exported):
    _, report, stdout = exported
    assert report["width"] == WIDTH and report["group_size"] == -1
    # the job has no eval data: a fixed sample of its 60 training rows, said so
    assert report["sample"]["source"] == "train" and report["sample"]["rows"] == 32
    full, *quantized = report["results"]
    assert full["width"] == "full" and [r["width"] for r in quantized] == ["wint8", WIDTH]
    assert full["perplexity"] > 1
    for result in quantized:
        assert result["perplexity"] >= full["perplexity"] * 0.99
        assert 0 <= result["same_share"] <= 1
        assert result["same_share"] == result["same_answers"] / len(report["answers"])
        assert result["weight_bytes"] < full["weight_bytes"] / 2  # float32 base: int8 / int4 linear layers
    wint8, mix = quantized
    assert mix["weight_bytes"] < wint8["weight_bytes"] and mix["layers"]["int4"] > 0 and mix["layers"]["int8"] > 0
    # load memory: measured for what is written (the job's output and the export), not for wint8
    assert full["load"]["increase_bytes"] > 0 and mix["load"]["increase_bytes"] > 0 and wint8["load"] is None
    assert all(set(answer["ids"]) == {"full", "wint8", WIDTH} for answer in report["answers"])
    table = report_text(report)
    assert table in stdout and "full precision (float32)" in table and "wint4/8 (exported)" in table


def test_the_export_tab_shows_the_report_and_the_command_in_either_language(exported, lora_job):
    from tests.browser_helpers import english_words
    from tests.conftest import shown
    from webui.export_tab import finished_view
    from webui.exports import ExportStatus

    out, _, _ = exported
    quality, notes, command = finished_view(lora_job, ExportStatus("done", out, width=WIDTH))
    assert "| wint4/8 (exported) |" in shown(quality, "en") and "| wint4/8（已导出） |" in shown(quality, "zh")
    assert "asks FastDeploy for wint4" in shown(notes, "en")
    assert not english_words(shown(quality, "zh") + shown(notes, "zh"))
    assert command["value"] == fastdeploy_command(out, lora_job, WIDTH).text and command["visible"]


def test_the_export_reloads_in_a_fresh_process_with_the_in_memory_answers(exported, tmp_path):
    out, report, _ = exported
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([[answer["messages"], answer["images"]] for answer in report["answers"]]))
    result = subprocess.run([sys.executable, "-c", RELOAD, str(out), str(prompts)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["layers"] > 0
    assert reloaded["answers"] == [answer["ids"][WIDTH] for answer in report["answers"]]


def test_refusals_say_why_and_leave_nothing(lora_job, exported, tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "refused"
    cases = [
        (["--quantize", WIDTH], "a quantized checkpoint is made of the merged weights: add --merge"),
        (["--merge", "--quantize", "wint3"], "unsupported bit width 'wint3'"),
        (["--merge", "--quantize", "fp8"], "compute capability 8.9"),
        (["--merge", "--quantize", "wint2"], "2-bit weights are not offered"),
        (["--merge", "--quantize", WIDTH, "--group-size", "32"], "unsupported group size 32"),
        (["--merge", "--quantize", WIDTH, "--report-widths", "int3"], "unsupported bit width 'int3'"),
        # the tiny model's dense FFN has 344 input rows: the layer is named
        (["--merge", "--quantize", "wint8", "--group-size", "64"], "model.layers.0.mlp.down_proj [344, 128]: group "
                                                                     "size 64 does not divide its 344 input rows"),
    ]
    for args, reason in cases:
        assert main(["export", str(lora_job), *args, "-o", str(out)]) == 1, args
        assert reason in capsys.readouterr().err, args
        assert left_behind(out) == [], args
    assert not default_export_dir(lora_job, WIDTH).exists()

    # a job whose model already is a quantized checkpoint (here: a full fine-tuning job's output)
    job = tmp_path / "job"
    job.mkdir()
    (job / "status.json").write_text(json.dumps({"state": "completed"}))
    shutil.copytree(exported[0], job / "output")
    assert main(["export", str(job), "--quantize", "wint8", "-o", str(out)]) == 1
    assert "is already a quantized checkpoint" in capsys.readouterr().err
    assert left_behind(out) == []


def test_the_fastdeploy_command_points_at_full_precision_weights(tmp_path):
    job = tmp_path / "job"
    export = job / "export"
    export.mkdir(parents=True)
    (export / "config.json").write_text(json.dumps({"model_type": "ernie4_5_moe", "max_position_embeddings": 131072}))
    (export / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ '<think>' }}"}))
    plain = fastdeploy_command(export, job)
    assert plain.argv[1:] == ["-m", "fastdeploy.entrypoints.openai.api_server", "--model", str(export), "--port",
                              "8180", "--max-model-len", "32768", "--max-num-seqs", "32", "--reasoning-parser",
                              "ernie-x1"]
    quantized_dir = default_export_dir(job, "wint8", 128)
    assert quantized_dir == job / "export-wint8-g128"
    shutil.copytree(export, quantized_dir)
    command = fastdeploy_command(quantized_dir, job, "wint8", 128)
    assert command.model_dir == export and "--quantization wint8" in command.text
    assert [note.key for note in command.notes] == ["fd-online", "fd-group", "fd-parser"]
    mix = fastdeploy_command(default_export_dir(job, "wint4/8"), job, "wint4/8")
    assert "--quantization wint4" in mix.text and "fd-mix" in [note.key for note in mix.notes]
    shutil.rmtree(export)
    assert "fd-missing" in [note.key for note in fastdeploy_command(quantized_dir, job, "wint8").notes]

    vl = tmp_path / "vl"
    vl.mkdir()
    (vl / "config.json").write_text(json.dumps({"model_type": "ernie4_5_moe_vl", "max_position_embeddings": 4096}))
    command = fastdeploy_command(vl, tmp_path)
    assert "--max-model-len 4096" in command.text and command.argv[-2:] == ["--reasoning-parser", "ernie-45-vl"]
    (vl / "config.json").write_text(json.dumps({"model_type": "ernie4_5"}))
    assert "--reasoning-parser" not in fastdeploy_command(vl, tmp_path).text  # no thinking in its template
