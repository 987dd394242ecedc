"""A first run that guides: while no dataset is stored, the Data tab offers the sample datasets
shipped in assets/ (one click each stores one as if it had been uploaded), and until a job has
completed one line says the way to a first tuned model.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from plumbing.paths import REPO_ROOT
from trainer.jobfiles import COMPLETED
from webui.context import StudioContext

SAMPLES: dict[str, Path] = {"sft": REPO_ROOT / "assets" / "sample_sft.jsonl",
                            "dpo": REPO_ROOT / "assets" / "sample_dpo.jsonl"}


def build_first_steps(ctx: StudioContext) -> gr.Markdown:
    return ctx.texts.make(gr.Markdown, "data-first_steps", visible=show_first_steps(ctx))


def build_samples(ctx: StudioContext) -> tuple[gr.Column, gr.Button, gr.Button]:
    """The sample offer: a line and one button per sample set."""
    T = ctx.texts
    with gr.Column(visible=show_samples(ctx), elem_id="data-samples") as samples:
        T.make(gr.Markdown, "data-samples-title")
        with gr.Row():
            sft = T.make(gr.Button, "data-sample_sft", variant="primary", size="sm")
            dpo = T.make(gr.Button, "data-sample_dpo", size="sm")
    return samples, sft, dpo


def show_first_steps(ctx: StudioContext) -> bool:
    return not any(job.state == COMPLETED for job in ctx.store.list_jobs(refresh=False))


def show_samples(ctx: StudioContext) -> bool:
    return not ctx.datasets.list()


def first_steps_update(ctx: StudioContext):
    return gr.update(visible=show_first_steps(ctx))


def samples_update(ctx: StudioContext):
    return gr.update(visible=show_samples(ctx))
