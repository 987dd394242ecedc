"""The preference losses (`dpo.loss_type`, trainer/dpo_losses.py): each one's value from paddleformers'
DPO criterion on fixed log-probabilities against its formula written out here, a few training steps of
each on the tiny model, no reference model where a loss has none, the options each loss refuses, and
ERNIEKit's loss settings imported."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, example_config, read_metrics
from trainer import config as C
from trainer.dpo_losses import dpo_config_arguments, uses_reference
from trainer.erniekit_import import convert_erniekit
from trainer.schema import DpoSection

# Two packed pairs: positions 0-1 are the prompt; the chosen reply then runs to `split`, the rejected
# one from there to the end (3 + 2 tokens in the first row, 2 + 3 in the second).
ROWS = [(2, 5, 7), (2, 4, 7)]
# The reference's log-probabilities of chosen and rejected as the criterion scored them on the
# reference model (sums; per-token means for the losses that average, ipo here)
REFERENCE = (np.array([-3.1, -2.4]), np.array([-2.9, -3.3]))


def logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def token_logps(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.take_along_axis(logp, np.maximum(labels, 0)[..., None], axis=-1)[..., 0]


def expected_loss(dpo: DpoSection, logits: np.ndarray, labels: np.ndarray) -> float:
    """The loss as the papers write it, from the token log-probabilities of the two rows."""
    tokens = token_logps(logits, labels)
    chosen = np.array([tokens[i, start:split].sum() for i, (start, split, _) in enumerate(ROWS)])
    rejected = np.array([tokens[i, split:end].sum() for i, (_, split, end) in enumerate(ROWS)])
    chosen_len = np.array([split - start for start, split, _ in ROWS], dtype=float)
    rejected_len = np.array([end - split for _, split, end in ROWS], dtype=float)
    nll = -chosen.sum() / chosen_len.sum()  # the SFT loss: per-token NLL of the chosen replies
    beta, gamma = dpo.beta, dpo.simpo_gamma
    ref_chosen, ref_rejected = (0.0, 0.0) if not uses_reference(dpo) else REFERENCE
    margin = (chosen - rejected) - (ref_chosen - ref_rejected)
    mean_c, mean_r = chosen / chosen_len, rejected / rejected_len  # length-normalised log-probs
    if dpo.loss_type == "sigmoid":  # DPO, Rafailov et al. 2023, eq. 7
        loss = -logsigmoid(beta * margin).mean()
    elif dpo.loss_type == "hinge":  # SLiC-HF, Zhao et al. 2023
        loss = np.maximum(0.0, 1 - beta * margin).mean()
    elif dpo.loss_type == "ipo":  # IPO, Azar et al. 2023, eq. 17, on per-token mean log-probs
        loss = ((((mean_c - mean_r) - (ref_chosen - ref_rejected)) - 1 / (2 * beta)) ** 2).mean()
    elif dpo.loss_type == "kto_pair":  # KTO, Ethayarajh et al. 2024, the KL terms from the batch's other half
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        kl_chosen, kl_rejected = max(chosen_ratio.mean(), 0.0), max(rejected_ratio.mean(), 0.0)
        loss = np.concatenate([1 - sigmoid(beta * (chosen_ratio - kl_rejected)),
                               1 - sigmoid(beta * (kl_chosen - rejected_ratio))]).mean()
    elif dpo.loss_type == "simpo":  # SimPO, Meng et al. 2024, eq. 6
        loss = -logsigmoid(beta * (mean_c - mean_r) - gamma).mean()
    else:  # ORPO, Hong et al. 2024, eqs. 4-7: L_SFT + lambda * L_OR, lambda = beta
        log_odds = (mean_c - np.log1p(-np.exp(mean_c))) - (mean_r - np.log1p(-np.exp(mean_r)))
        return float(nll + beta * -logsigmoid(log_odds).mean())
    return float(loss + dpo.sft_loss_ratio * nll)


CASES = {
    "sigmoid": DpoSection(beta=0.1, loss_type="sigmoid"),
    "sigmoid, reference-free": DpoSection(beta=0.3, loss_type="sigmoid", reference_free=True),
    "sigmoid + SFT loss": DpoSection(beta=0.1, loss_type="sigmoid", sft_loss_ratio=0.7),
    "ipo": DpoSection(beta=0.5, loss_type="ipo"),
    "kto_pair": DpoSection(beta=0.2, loss_type="kto_pair"),
    "hinge": DpoSection(beta=0.4, loss_type="hinge"),
    "hinge, reference-free": DpoSection(beta=0.4, loss_type="hinge", reference_free=True),
    "simpo": DpoSection(beta=2.0, loss_type="simpo", simpo_gamma=0.8),
    "orpo": DpoSection(beta=0.25, loss_type="orpo"),
}


@pytest.mark.parametrize("name", CASES)
def test_loss_matches_its_formula(name):
    """paddleformers' DPO criterion, configured as a run configures it, on fixed logits and reference
    log-probabilities (zeros where the run has no reference, as DPOTrainer feeds them)."""
    import paddle
    from paddleformers.cli.train.dpo.dpo_argument import DPOConfig
    from paddleformers.nn.criterion import CriterionLayer
    from paddleformers.transformers import PretrainedConfig

    dpo = CASES[name]
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(2, 7, 6)).astype("float32")
    labels = np.full((2, 7), -100)
    labels[:, 2:] = rng.integers(0, 6, size=(2, 5))
    config = PretrainedConfig()
    config.dpo_config = DPOConfig(**dpo_config_arguments(dpo, lora=True))
    indices = paddle.to_tensor([[i, start, split, end] for i, (start, split, end) in enumerate(ROWS)], dtype="int32")
    reference = [paddle.to_tensor(r.astype("float32")) for r in REFERENCE] if uses_reference(dpo) else \
        [paddle.zeros([1]), paddle.zeros([1])]
    loss = CriterionLayer(config)(paddle.to_tensor(logits), (paddle.to_tensor(labels), indices, *reference))[-1]
    assert float(loss) == pytest.approx(expected_loss(dpo, logits, labels), rel=1e-5)


# One short run per loss on the tiny MoE model, each in the same fresh process (`trainer.train.run`, what
# `python -m trainer run` calls) so the imports are paid once: 2 steps of 8 pairs cut to 64 tokens.
SHORT = {"optim.max_steps": 2, "logging.logging_steps": 1, "data.max_seq_len": 64, "data.max_prompt_len": 32}
RUNS = {
    "sigmoid": {"dpo.loss_type": "sigmoid"},
    "ipo": {"dpo.loss_type": "ipo"},
    "kto_pair": {"dpo.loss_type": "kto_pair"},
    "hinge": {"dpo.loss_type": "hinge", "dpo.reference_free": True, "dpo.sft_loss_ratio": 0.5},
    "simpo": {"dpo.loss_type": "simpo", "dpo.simpo_gamma": 0.3, "finetuning.type": "full",
              "optim.learning_rate": 1e-4},
    "orpo": {"dpo.loss_type": "orpo"},
}
# The first step's loss where the policy still equals its reference (a LoRA adapter starts at zero):
# every margin is 0, so beta = 0.1 gives these.
FIRST_LOSS = {"sigmoid": math.log(2), "ipo": (1 / (2 * 0.1)) ** 2, "kto_pair": 1 - 1 / (1 + math.exp(0))}
RUN_MANY = """
import sys
from pathlib import Path
from trainer.config import load_config
from trainer.train import run
codes = []
for job in sys.argv[1:]:
    print(f"=== {Path(job).name}", flush=True)
    codes.append(run(load_config(Path(job) / "config.yaml"), Path(job)))
sys.exit(max(codes))
"""


@pytest.fixture(scope="module")
def loss_runs(workdir, tiny_moe_dir):
    jobs = {}
    for name, changes in RUNS.items():
        job_dir = workdir / "jobs" / f"dpo-loss-{name}"
        job_dir.mkdir(parents=True)
        C.dump_yaml(C.from_dict(example_config("tiny_dpo_lora.yaml", **SHORT, **changes)), job_dir / "config.yaml")
        jobs[name] = job_dir
    result = subprocess.run([sys.executable, "-c", RUN_MANY, *map(str, jobs.values())], cwd=ROOT,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = dict(part.removeprefix("dpo-loss-").split("\n", 1) for part in result.stdout.split("=== ")[1:])
    return jobs, logs


@pytest.mark.parametrize("name", RUNS)
def test_each_loss_trains_a_few_steps(loss_runs, name):
    jobs, logs = loss_runs
    status = json.loads((jobs[name] / "status.json").read_text())
    metrics = [m for m in read_metrics(jobs[name]) if "loss" in m]
    assert status["state"] == "completed" and [m["step"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    dpo = C.load_config(jobs[name] / "config.yaml").dpo
    if uses_reference(dpo):
        assert "reference model: the policy with its adapter off" in logs[name]
        assert metrics[0]["reward_chosen"] == metrics[0]["reward_rejected"] == 0
        assert metrics[0]["loss"] == pytest.approx(FIRST_LOSS[name], rel=1e-6)
    else:
        # nothing loaded and no adapter-off pass: the rewards are beta x the policy's own log-probs
        assert "reference model: none" in logs[name]
        for m in metrics:
            assert m["reward_chosen"] == pytest.approx(dpo.beta * m["logp_chosen"], abs=2e-6)
            assert m["reward_rejected"] == pytest.approx(dpo.beta * m["logp_rejected"], abs=2e-6)
    assert metrics[1]["loss"] != metrics[0]["loss"]


def test_no_reference_model_is_built_for_a_loss_without_one(monkeypatch, tmp_path):
    """Full DPO loads a frozen reference copy only for the losses that score against it; the memory
    estimate counts it only then."""
    from types import SimpleNamespace

    import models.loader
    from trainer.memory import model_config, training
    from trainer.train import dpo_setup

    loaded = []

    def load_model(*args, **kwargs):
        loaded.append(args)
        return SimpleNamespace(eval=lambda: None, parameters=lambda: [], config=SimpleNamespace())

    monkeypatch.setattr(models.loader, "load_model", load_model)
    tiny = model_config("ernie-4.5-tiny-moe")
    for dpo, reference in (({"loss_type": "simpo"}, False), ({"loss_type": "orpo"}, False),
                           ({"loss_type": "hinge", "reference_free": True}, False),
                           ({"loss_type": "kto_pair"}, True), ({"loss_type": "sigmoid"}, True)):
        cfg = C.from_dict({"method": "dpo", "finetuning": {"type": "full"}, "dpo": dpo,
                           "data": {"train": [{"path": "a.jsonl"}]}}, local=False)
        loaded.clear()
        extra = dpo_setup(cfg, SimpleNamespace(config=SimpleNamespace()), tmp_path, "float32")
        assert (extra["ref_model"] is not None, len(loaded)) == (reference, int(reference)), dpo
        assert extra["dpo_config"].reference_free is not reference
        assert training(cfg, tiny).reference_model is reference


def dpo_problems(**dpo) -> list[str]:
    with pytest.raises(C.ConfigError) as info:
        C.from_dict({"method": "dpo", "dpo": dpo, "data": {"train": [{"path": "a.jsonl"}]}}, local=False)
    return [message for _, message in info.value.problems]


def test_options_a_loss_does_not_take_are_refused_by_key():
    assert dpo_problems(loss_type="sigmoid", simpo_gamma=1.0) == [
        "dpo.simpo_gamma: SimPO's target margin; dpo.loss_type sigmoid does not use it; choose simpo or set it back "
        "to 0.5"]
    assert dpo_problems(loss_type="kto_pair", reference_free=True) == [
        "dpo.reference_free: kto_pair takes its divergence terms against the reference model, and paddleformers has "
        "no reference-free kto_pair; turn it off or use sigmoid, ipo or hinge"]
    assert dpo_problems(loss_type="orpo", sft_loss_ratio=0.5) == [
        "dpo.sft_loss_ratio: the orpo loss holds the chosen replies' SFT loss already, at weight 1 (dpo.beta weighs "
        "its odds-ratio term); set it to 0"]
    assert dpo_problems(loss_type="dpop") == [
        "dpo.loss_type: expected one of sigmoid, ipo, kto_pair, simpo, orpo, hinge; got 'dpop'"]
    assert dpo_problems(sft_loss_ratio=-1) == ["dpo.sft_loss_ratio: must be >= 0, got -1"]
    # what a loss has no use for is no problem outside DPO, and simpo and orpo are reference-free already
    sft = C.from_dict({"dpo": {"loss_type": "kto_pair", "reference_free": True, "simpo_gamma": 2},
                       "data": {"train": [{"path": "a.jsonl"}]}}, local=False)
    assert sft.method == "sft"
    for loss in ("simpo", "orpo"):
        cfg = C.from_dict({"method": "dpo", "dpo": {"loss_type": loss, "reference_free": True},
                           "data": {"train": [{"path": "a.jsonl"}]}}, local=False)
        assert not uses_reference(cfg.dpo)


def imported(**src) -> tuple[dict, list[str], dict]:
    """Our dpo section, ERNIEKit's keys not imported, and the notes by id."""
    out, unmapped, notes = convert_erniekit({"stage": "DPO", "train_dataset_path": "/d/pairs.jsonl", **src})
    C.from_dict(out, local=False)
    return out["dpo"], unmapped, {note.key: note for note in notes}


def test_erniekit_loss_settings_are_imported():
    for theirs, ours in (("sigmoid", "sigmoid"), ("ipo", "ipo"), ("kto_pair", "kto_pair"), ("hinge", "hinge"),
                         ("simpo", "simpo"), ("or", "orpo")):
        dpo, unmapped, _ = imported(loss_type=theirs)
        assert dpo["loss_type"] == ours and not unmapped
    dpo, unmapped, _ = imported(loss_type="simpo", simpo_gamma=1.2, beta=2.5, reference_free=True, sft_loss_ratio=0.1)
    assert dpo == {"beta": 2.5, "loss_type": "simpo", "simpo_gamma": 1.2, "reference_free": True,
                   "sft_loss_ratio": 0.1} and not unmapped
    # ERNIEKit's defaults (simpo_gamma 0.5 whatever the loss) carry nothing
    assert imported(loss_type="sigmoid", simpo_gamma=0.5, pref_loss_ratio=1.0, sft_loss_ratio=0.0)[:2] == \
        ({"loss_type": "sigmoid"}, [])
    dpo, _, notes = imported(loss_type="ipo", pref_loss_ratio=2, sft_loss_ratio=0.5)
    assert dpo["sft_loss_ratio"] == 0.25
    assert "dpo.sft_loss_ratio is sft_loss_ratio / pref_loss_ratio = 0.25" in notes["import-note-pref-ratio"]
    dpo, _, notes = imported(loss_type="or", beta=0.1, sft_loss_ratio=0.5)
    assert dpo == {"beta": 2.0, "loss_type": "orpo"} and "so dpo.beta is 1.0 / 0.5 = 2 " in notes["import-note-orpo"]
    dpo, _, notes = imported(loss_type="or", pref_loss_ratio=0.2)
    assert dpo == {"beta": 0.2, "loss_type": "orpo"} and "import-note-orpo-alone" in notes
    dpo, _, notes = imported(loss_type="dpop")
    assert dpo == {"loss_type": "sigmoid"} and notes["import-note-loss"].startswith("loss_type 'dpop' is not offered")
    dpo, unmapped, _ = imported(loss_type="sigmoid", pref_loss_ratio="half")
    assert unmapped == ["pref_loss_ratio: half"]
