"""Shared fixtures: one studio workdir per test session, the tiny models built once, and helpers
to run the real trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SFT = ROOT / "assets" / "sample_sft.jsonl"
EXAMPLES = ROOT / "examples"


# Test files that share a costly session fixture run on one xdist worker, so it is built once.
SHARED_FIXTURE_GROUPS = {"test_vl_training.py": "vl-lora-job", "test_browser_vl.py": "vl-lora-job",
                         "test_tool_api.py": "tool-job", "test_browser_tools.py": "tool-job",
                         **dict.fromkeys(("test_training.py", "test_serve.py", "test_dpo.py", "test_eval.py",
                                          "test_quant_export.py", "test_batch_generate.py"), "lora-job")}
# Seconds the long files (a group: its files together) take on two busy cores, from --durations.
# Workers take them longest first: xdist's own order, most tests first, left the real-checkpoint and
# browser files, a few long tests each, for the end, where a worker that had taken one next to a long
# test ran both while the other sat idle. Only the order matters; a file not listed takes under 12 s.
FILE_SECONDS = {
    "vl-lora-job": 250, "lora-job": 255, "test_real_checkpoints.py": 150, "test_webui_browser.py": 120,
    "test_chat_templates.py": 90, "tool-job": 90, "test_browser_first_run.py": 55, "test_faults.py": 45,
    "test_browser_eval.py": 38, "test_multinode.py": 37, "test_browser_chat.py": 33, "test_quant_training.py": 28,
    "test_tool_calls.py": 28, "test_browser_presets.py": 25, "test_browser_compare.py": 24,
    "test_job_lifecycle.py": 21, "test_quant.py": 21, "test_load.py": 19, "test_browser_vl_chat.py": 17,
    "test_vl_export.py": 15, "test_mtp.py": 14, "test_eval_jobs.py": 14, "test_browser_messages.py": 14,
    "test_jobs.py": 13, "test_hub.py": 12,
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`pytest -n N` (pytest.ini) hands out whole test files, as xdist's loadfile does, so each file's
    module fixtures (a studio, a browser page, a trained job) are built once, with the files of
    SHARED_FIXTURE_GROUPS handed out together, in the order pytest_collection_modifyitems sets."""
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(Path(nodeid.split("::", 1)[0]).name)

    config.option.loadscopereorder = False  # xdist would reorder the files by their number of tests
    return FileGroupScheduling(config, log)


def _scope(file_name: str) -> str:
    return SHARED_FIXTURE_GROUPS.get(file_name, file_name)


def pytest_collection_modifyitems(items):
    """Longest files first (FILE_SECONDS), then those with the most tests, each file's own order kept."""
    tests = Counter(_scope(item.path.name) for item in items)

    def rank(item) -> tuple:
        scope = _scope(item.path.name)
        return -FILE_SECONDS.get(scope, 0), -tests[scope], scope

    items.sort(key=rank)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("studio")
    os.environ["ERNIE_STUDIO_HOME"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_moe_dir(workdir) -> Path:
    from models.tiny import ensure_built

    return ensure_built("ernie-4.5-tiny-moe", workdir / "models")


@pytest.fixture(scope="session")
def tiny_dense_dir(workdir) -> Path:
    from models.tiny import ensure_built

    return ensure_built("ernie-4.5-tiny-dense", workdir / "models")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_moe_dir):
    from models.loader import load_tokenizer

    return load_tokenizer(tiny_moe_dir)


@pytest.fixture(scope="session")
def lora_job(workdir, tiny_moe_dir) -> Path:
    """The SFT-LoRA example trained once per session (the adapter lives in its output/), in 20
    epochs at a higher learning rate instead of 30: every sample answer is learnt either way (15
    epochs still get 93% of them)."""
    job_dir = workdir / "jobs" / "lora-learns"
    config = example_config("tiny_sft_lora.yaml", **{"optim.num_train_epochs": 20, "optim.learning_rate": 3e-3})
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


# SFT-LoRA on the fixed-call set (trainer/data/tool_set.py write_fixed_call_set): 12 rows, 120 steps of
# 4: 33 s of steps on two otherwise idle cores (55 s with other work on them); 30 epochs still miscount
# a call's closing braces.
TOOL_EPOCHS, TOOL_LEARNING_RATE, TOOL_BATCH = 40, 3e-3, 4


@pytest.fixture(scope="session")
def tool_job(workdir, tiny_moe_dir) -> Path:
    """The tiny MoE tuned once per session to answer the fixed-call questions with their calls and a
    tool's result with the learnt final answer (no arguments copied from the question: the tiny
    model cannot learn that in test time, docs/function_calling.md)."""
    from trainer.data.tool_set import write_fixed_call_set

    job_dir = workdir / "jobs" / "fixed-calls"
    config = example_config("tiny_sft_lora.yaml", **{"optim.num_train_epochs": TOOL_EPOCHS,
                                                      "optim.learning_rate": TOOL_LEARNING_RATE,
                                                      "optim.per_device_batch_size": TOOL_BATCH})
    config["data"]["train"] = [{"path": str(write_fixed_call_set(workdir / "fixed_calls.jsonl")),
                                "format": "messages"}]
    result = run_trainer(config, job_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


# The VL example's 12 epochs halved: the learning test's held-out answers are 78 of 80 right after 6
# (79 of 80 after 12; the bar is 72), every colour both ways, and a blank image's guesses the same.
VL_EPOCHS = 6


@pytest.fixture(scope="session")
def vl_lora_job(workdir) -> Path:
    """The VL SFT-LoRA example (the tiny VL model on the shapes set) trained once per session, in
    VL_EPOCHS epochs."""
    job_dir = workdir / "jobs" / "vl-lora"
    result = run_trainer(example_config("tiny_vl_sft_lora.yaml", **{"optim.num_train_epochs": VL_EPOCHS}), job_dir,
                         timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir


def example_config(name: str, **changes) -> dict:
    """An example config as a dict, with dotted-key changes applied and data paths made absolute."""
    from trainer.config import set_key

    config = yaml.safe_load((EXAMPLES / name).read_text())
    for entry in config["data"]["train"]:
        entry["path"] = str(ROOT / entry["path"])
    for key, value in changes.items():
        set_key(config, key.replace("__", "."), value)
    return config


def run_trainer(config: dict, job_dir: Path, *extra: str, timeout: int = 400) -> subprocess.CompletedProcess:
    """Run `python -m trainer run` on `config` in `job_dir` and return the finished process."""
    job_dir.mkdir(parents=True, exist_ok=True)
    config_path = job_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(config_path), "--job-dir", str(job_dir), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )



def run_as_written_elsewhere(cfg, job_dir: Path) -> subprocess.CompletedProcess:
    """`trainer.train.run` in a fresh process on `cfg` as a config written for another machine reaches
    it: validated without this machine's checks, so what only the run finds is found there."""
    from trainer.config import dump_yaml

    config_file = job_dir.parent / f"{job_dir.name}.yaml"
    dump_yaml(cfg, config_file)
    code = ("import sys; from pathlib import Path; from trainer.config import from_dict, read_yaml_mapping; "
            "from trainer.train import run; "
            f"sys.exit(run(from_dict(read_yaml_mapping({str(config_file)!r}), local=False), Path({str(job_dir)!r})))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def read_metrics(job_dir: Path) -> list[dict]:
    path = job_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def sample_conversations() -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in SAMPLE_SFT.read_text(encoding="utf-8").splitlines()]


def answer_budget(tokenizer, conversation: list[dict]) -> int:
    """max_tokens enough for a reply equal to the conversation's last turn: that turn's own tokens,
    its end-of-turn token and a few more. A reply that equals the answer has ended by then; a
    model that has not learnt it rarely stops, and a fixed budget lets it run on for nothing."""
    from models.chat_template import encode_conversation

    whole, _ = encode_conversation(tokenizer, conversation)
    prompt, _ = encode_conversation(tokenizer, conversation[:-1])
    return len(whole) - len(prompt) + 4


def exact_answer_rate(model, tokenizer) -> float:
    """Share of sample prompts whose greedy reply equals the trained final answer."""
    from models.chat_engine import ChatEngine
    from models.chat_request import SamplingParams

    engine = ChatEngine(model, tokenizer)
    conversations = sample_conversations()
    hits = sum(engine.reply(c[:-1], SamplingParams(temperature=0, max_tokens=answer_budget(tokenizer, c)))[1]
               == c[-1]["content"].strip() for c in conversations)
    return hits / len(conversations)


def shown(markdown: str, lang: str = "en") -> str:
    """The text a status written with webui.i18n.both shows in `lang`; other text as it is."""
    import re

    blocks = re.findall(rf'<div class="studio-msg" lang="{lang}">\n\n(.*?)\n\n</div>', markdown, re.S)
    return "\n".join(blocks) if blocks else markdown
