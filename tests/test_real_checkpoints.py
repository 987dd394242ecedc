"""Real ERNIE 4.5 configs end to end through the command line: 2-layer random-weight checkpoints that
paddleformers builds from the released 0.3B and 21B-A3B `config.json` at full width (the 21B-A3B
with 8 of its 64 routed experts, and with its multi-token-prediction layer), with the released
tokenizer and the 0.3B's chat template, go through `data check`, SFT-LoRA, `export --merge` and a
model server answering over HTTP; the 21B-A3B export still holds its MTP layer, unchanged.

Every test skips without ../shared/real_ernie; its files are read there, never copied into the
repository. The 21B-A3B steps need about 5.5 GB of memory each, one process at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from models.config_keys import FASTDEPLOY_QUANTIZATION_KEYS, KEY_HANDLING, refusals
from models.server_process import ModelServer
from tests.conftest import ROOT, SAMPLE_SFT, example_config, run_trainer
from tests.weights import mtp_names, stored_dtypes, stored_tensor

REAL = ROOT.parent / "shared" / "real_ernie"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent")

RELEASED = {"0.3B": REAL / "ERNIE-4.5-0.3B-Base-PT" / "config.json",
            "21B-A3B": REAL / "ERNIE-4.5-21B-A3B-Paddle" / "config.fastdeploy-test.json"}
REDUCED = {"0.3B": {"num_hidden_layers": 2}, "21B-A3B": {"num_hidden_layers": 2, "moe_num_experts": 8}}

# Runs in a process of its own, so the test process never holds the full-width weights.
BUILD = """
import json, shutil, sys
from pathlib import Path
from models.tiny import build_weights

config_file, changes, out, real = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
out.mkdir(parents=True)
build_weights({**json.loads(config_file.read_text()), **changes}, out)
for name in ("tokenizer.model", "special_tokens_map.json", "added_tokens.json"):
    shutil.copy(real / "tokenizer" / name, out / name)
for name in ("tokenizer_config.json", "generation_config.json"):  # the 0.3B's carry the chat template
    shutil.copy(real / "ERNIE-4.5-0.3B-Base-PT" / name, out / name)
"""


def build(name: str, out: Path) -> Path:
    result = subprocess.run([sys.executable, "-c", BUILD, str(RELEASED[name]), json.dumps(REDUCED[name]), str(out),
                             str(REAL)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def real_0p3b(tmp_path_factory) -> Path:
    return build("0.3B", tmp_path_factory.mktemp("real") / "ERNIE-4.5-0.3B-2-layers")


@pytest.fixture(scope="module")
def real_21b(tmp_path_factory) -> Path:
    return build("21B-A3B", tmp_path_factory.mktemp("real") / "ERNIE-4.5-21B-A3B-2-layers")


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def ask(model_dir: Path, log: Path) -> dict:
    """One chat completion from `python -m models.serve` on `model_dir`, over plain HTTP."""
    server = ModelServer(str(model_dir), name="real", log_path=log)
    server.start(timeout=600)
    try:
        body = {"model": "real", "messages": [{"role": "user", "content": "Hello, who are you?"}], "max_tokens": 6,
                "temperature": 0}
        request = urllib.request.Request(f"{server.base_url}/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            assert response.status == 200
            return json.loads(response.read())
    finally:
        server.stop()


def check_train_export_serve(model_dir: Path, tmp_path: Path) -> Path:
    """data check, SFT-LoRA, merge and export, and a served reply; returns the export."""
    report = json.loads(cli("data", "check", str(SAMPLE_SFT), "--model", str(model_dir), "--max-seq-len", "128",
                            "--json").stdout)
    assert report["ok"] and report["rows_valid"] == 60 and report["stats"]["tokens"]["max"] < 128

    job = tmp_path / "job"
    config = example_config("tiny_sft_lora.yaml", **{
        "model.name_or_path": str(model_dir), "finetuning.lora.rank": 8, "finetuning.lora.alpha": 16,
        "data.max_seq_len": 128, "optim.max_steps": 2, "optim.per_device_batch_size": 1,
        "logging.logging_steps": 1})
    result = run_trainer(config, job, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((job / "status.json").read_text())["state"] == "completed"

    export = tmp_path / "export"
    cli("export", str(job), "--merge", "-o", str(export))
    reply = ask(export, tmp_path / "serve.log")
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] > 0 and reply["usage"]["prompt_tokens"] > 0
    return export


def check_export_mirrors_base(base: Path, export: Path) -> None:
    """Same tensors, stored in the same precision; the adapted attention weights merged in."""
    assert stored_dtypes(export) == stored_dtypes(base)
    assert not np.array_equal(stored_tensor(export, "model.layers.0.self_attn.q_proj.weight"),
                              stored_tensor(base, "model.layers.0.self_attn.q_proj.weight"))


def test_every_key_of_the_released_configs_is_honoured_carried_or_without_bearing():
    for name, path in RELEASED.items():
        config = json.loads(path.read_text())
        assert sorted(set(config) - set(KEY_HANDLING)) == [], name
        assert refusals(config) == [], name
    fastdeploy = json.loads(RELEASED["21B-A3B"].read_text())["quantization_config"]
    assert set(fastdeploy) <= set(FASTDEPLOY_QUANTIZATION_KEYS)


def test_real_0p3b_trains_exports_and_serves(real_0p3b, tmp_path):
    check_export_mirrors_base(real_0p3b, check_train_export_serve(real_0p3b, tmp_path))


def test_real_21b_a3b_trains_exports_and_serves_and_keeps_its_mtp_layer(real_21b, tmp_path):
    export = check_train_export_serve(real_21b, tmp_path)
    assert (export / "config.json").read_text() == (real_21b / "config.json").read_text()
    check_export_mirrors_base(real_21b, export)
    assert mtp_names(export) == mtp_names(real_21b) == [
        "model.mtp_block.0.input_layernorm.weight", "model.mtp_block.0.mlp.down_proj.weight",
        "model.mtp_block.0.mlp.gate_proj.weight", "model.mtp_block.0.mlp.up_proj.weight",
        "model.mtp_block.0.post_attention_layernorm.weight", "model.mtp_block.0.self_attn.k_proj.weight",
        "model.mtp_block.0.self_attn.o_proj.weight", "model.mtp_block.0.self_attn.q_proj.weight",
        "model.mtp_block.0.self_attn.v_proj.weight", "model.mtp_emb_norm.0.weight", "model.mtp_hidden_norm.0.weight",
        "model.mtp_linear_proj.0.weight"]
    for name in mtp_names(real_21b):
        assert np.array_equal(stored_tensor(export, name), stored_tensor(real_21b, name)), name
