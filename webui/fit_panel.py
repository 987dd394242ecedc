"""The Train tab's "Will it fit?" line, above Start: the memory the run in the form needs per
process (CPU) or per GPU (trainer.memory, models/memory.py), by part, beside the memory the machine
has, and a warning when it will not fit (Start still queues the run). The preview redraws it on
every change of the form; its text is in every language at once (`said`), so it follows a switch."""

from __future__ import annotations

import copy
from pathlib import Path

import gradio as gr

from models.checkpoints import ModelNotFound
from models.memory import ArchitectureError, Estimate
from trainer.config import ConfigError, from_dict
from trainer.memory import Fit, check_fit
from webui.dataset_store import human_size
from webui.i18n import Phrase, said

# Which data files a run reads does not change its memory: a form without any yet is estimated with
# a stand-in (the estimate takes max_seq_len as every batch's width).
_STAND_IN_DATA = [{"path": "train.jsonl"}]


def build() -> gr.Markdown:
    return gr.Markdown(elem_id="train-fit")


def fit_of(config: dict, workdir: Path) -> Fit | str:
    """The estimate for a form's config beside the machine, or the message key saying why there is none."""
    config = copy.deepcopy(config)
    data = config.setdefault("data", {}) if isinstance(config, dict) else None
    if isinstance(data, dict) and not data.get("train"):
        data["train"] = _STAND_IN_DATA
    try:
        cfg = from_dict(config, local=False)
    except ConfigError:
        return "msg-fit-invalid"
    return check_fit(cfg, workdir)  # ConfigError still, for LoRA targets this model does not have


def _parts(e: Estimate) -> Phrase:
    fields = {name: human_size(getattr(e, name)) for name in ("weights", "gradients", "optimizer", "activations",
                                                              "runtime")}
    return Phrase("msg-fit-parts", fields)


def text(config: dict, workdir: Path) -> str:
    """The line for the form's config (markdown, every language)."""
    try:
        fit = fit_of(config, workdir)
    except ModelNotFound as exc:
        return said("msg-fit-no-model", reason=str(exc))
    except ArchitectureError as exc:
        return said("msg-fit-unsupported", reason=str(exc))
    except ConfigError as exc:
        return said("msg-fit-unsupported", reason="; ".join(str(message) for _, message in exc.problems))
    if isinstance(fit, str):
        return said(fit)
    e = fit.estimate
    parts = _parts(e)
    if e.reference:
        parts = Phrase("msg-fit-reference-parts", {"parts": parts, "reference": human_size(e.reference)})
    if fit.where == "ram":
        per = Phrase("msg-fit-per-process") if fit.processes == 1 else \
            Phrase("msg-fit-processes", {"n": fit.processes, "each": human_size(e.peak)})
        have = Phrase("msg-fit-ram", {"have": human_size(fit.have)})
    else:
        per = Phrase("msg-fit-per-gpu")
        have = Phrase("msg-fit-gpu", {"have": human_size(fit.have)}) if fit.have else Phrase("msg-fit-gpu-unknown")
    line = said("msg-fit-estimate", per=per, need=human_size(fit.need), parts=parts,
                phase=Phrase(f"msg-fit-phase-{e.phase}"), have=have)
    if fit.fits is False:
        line += "\n" + said("msg-fit-too-big", need=human_size(fit.need), have=human_size(fit.have))
    return line
