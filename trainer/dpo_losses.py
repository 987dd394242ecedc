"""The preference losses of a DPO run (`dpo.loss_type` and its options, docs/dpo.md): which of them
score against a reference model, the rules a run config must meet for them, and the arguments of
paddleformers' DPOConfig that run each. Never imports paddle.
"""

from __future__ import annotations

from typing import Any

from trainer.messages import Message
from trainer.schema import field_spec

# Losses that score the policy alone: no reference model is loaded, no adapter-off pass is run.
NO_REFERENCE = ("simpo", "orpo")
# paddleformers' DPOTrainer has no reference-free kto_pair: its KL terms are taken against the reference.
NEEDS_REFERENCE = ("kto_pair",)
# paddleformers calls ORPO's odds-ratio loss `or`
_PADDLEFORMERS_NAMES = {"orpo": "or"}


def uses_reference(dpo) -> bool:
    """Whether the run scores against a reference model (`dpo`: the run config's DPO section)."""
    return dpo.loss_type not in NO_REFERENCE and not dpo.reference_free


def dpo_config_arguments(dpo, lora: bool) -> dict[str, Any]:
    """paddleformers' DPOConfig arguments for the run's DPO section.

    `reference_free` is set for every loss without a reference: DPOTrainer then feeds zeros as the
    reference log-probabilities. Without it a LoRA run would score the policy with its adapter off
    as reference, and paddleformers' simpo would subtract that reference's margin from its own."""
    arguments = dict(beta=dpo.beta, loss_type=_PADDLEFORMERS_NAMES.get(dpo.loss_type, dpo.loss_type), lora=lora,
                     reference_free=not uses_reference(dpo), simpo_gamma=dpo.simpo_gamma,
                     sft_loss_ratio=dpo.sft_loss_ratio)
    if dpo.loss_type == "orpo":
        # ORPO is the chosen reply's SFT loss plus beta x the odds-ratio loss (the paper's lambda, as
        # TRL and LLaMA-Factory take it); paddleformers' `or` is the odds-ratio loss times
        # pref_loss_ratio, plus sft_loss_ratio x the SFT loss.
        arguments.update(pref_loss_ratio=dpo.beta, sft_loss_ratio=1.0)
    return arguments


def config_problems(v: dict[str, Any]) -> list[tuple[str, Message]]:
    """Options that do not fit the chosen loss, each refused by its key (DPO runs only)."""
    if v.get("method") != "dpo" or "dpo.loss_type" not in v:
        return []
    loss, out = v["dpo.loss_type"], []
    gamma = "dpo.simpo_gamma"
    default = field_spec(gamma).default
    if loss != "simpo" and v.get(gamma, default) != default:
        out.append((gamma, Message("dpo-gamma-not-simpo", key=gamma, loss=loss, default=default)))
    if loss in NEEDS_REFERENCE and v.get("dpo.reference_free"):
        out.append(("dpo.reference_free", Message("dpo-reference-free-kto", key="dpo.reference_free", loss=loss)))
    if loss == "orpo" and v.get("dpo.sft_loss_ratio", 0):
        out.append(("dpo.sft_loss_ratio", Message("dpo-sft-ratio-orpo", key="dpo.sft_loss_ratio")))
    return out
