"""The Train tab: the run-config form (webui.form) with presets per model and method, YAML save and
load, ERNIEKit import, a live preview of the exact config and command that will run, and Start,
which validates first, shows each problem next to its field, and then queues the job.

The form's values live in this browser session's components only; nothing here is shared between
sessions except the job store the queued job goes into.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from models.registry import MODELS, has_experts
from trainer.config import ConfigError, command_preview, from_dict, read_yaml_mapping, to_dict, to_yaml, \
    write_text_atomic
from trainer.erniekit_import import import_erniekit
from webui.context import StudioContext
from webui.dataset_store import safe_stem
from webui.form import BY_KEY, FIELDS, GROUPS, MODEL_KEY, Form, build_fields, build_group, config_from_values, \
    from_widget, group_id, to_widget, values_from_config, visibility
from webui.i18n import t

_INDEX = re.compile(r"\[\d+\].*$")


@dataclass
class TrainTab:
    form: Form
    preset: gr.Dropdown
    apply_preset: gr.Button
    model_info: gr.Markdown
    job_name: gr.Textbox
    start: gr.Button
    problems: gr.Markdown
    command: gr.Code
    config_yaml: gr.Code
    save: gr.Button
    saved: gr.File
    load: gr.UploadButton
    importer: gr.UploadButton
    io_status: gr.Markdown
    shown_errors: gr.State

    def mark_outputs(self) -> list:
        """What `problem_updates` returns values for."""
        return [*self.form.errors.values(), *self.form.accordions.values(), self.problems, self.shown_errors]

    def table_widgets(self) -> list:
        """The dataset tables (data.train, data.eval): their headers are part of their value."""
        return [self.form.widgets[spec.key] for spec in FIELDS if spec.type == "datasets"]

    def preview_event(self, ctx: StudioContext, lang: gr.Radio) -> tuple:
        """(fn, inputs, outputs) that redraw the preview from the form as it now is: chained with
        `.then` after a handler fills the whole form, whose many change events can otherwise leave
        the preview one state behind."""
        form = self.form
        return (lambda *v: preview(ctx, form, list(v[:-2]), v[-2], v[-1]), [*form.inputs, lang, self.shown_errors],
                [self.command, self.config_yaml, *self.mark_outputs()])

    def fill_outputs(self) -> list:
        """What `fill_form` returns values for: every widget, then the marks."""
        return [*self.form.inputs, *self.mark_outputs()]


def build(ctx: StudioContext) -> TrainTab:
    T = ctx.texts
    form = Form()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            model_specs = [s for s in FIELDS if s.group == "model"]
            with T.make(gr.Accordion, group_id("model"), open=True) as acc:
                form.accordions["model"] = acc
                build_fields(T, [s for s in model_specs if not s.advanced], form, "model")
                with gr.Row():
                    preset = T.make(gr.Dropdown, "train-preset", choices=_presets(BY_KEY[MODEL_KEY].default),
                                    value=_default_preset(BY_KEY[MODEL_KEY].default))
                    apply_preset = T.make(gr.Button, "train-apply_preset", size="sm", scale=0, min_width=140)
                model_info = gr.Markdown(model_info_text(BY_KEY[MODEL_KEY].default, "en"), elem_id="train-model_info")
                advanced = [s for s in model_specs if s.advanced]
                if advanced:
                    with T.make(gr.Accordion, group_id("model", advanced=True), open=False) as adv:
                        form.accordions["model-advanced"] = adv
                        build_fields(T, advanced, form, "model-advanced")
            for group in GROUPS:
                if group != "model":
                    build_group(T, group, form, open=group in ("method", "data", "optim"))
        with gr.Column(scale=2, elem_id="train-run"):
            T.make(gr.Markdown, "train-run-title")
            job_name = T.make(gr.Textbox, "train-job_name", max_lines=1)
            start = T.make(gr.Button, "train-start", variant="primary", size="lg")
            problems = gr.Markdown(elem_id="train-problems")
            command = T.make(gr.Code, "train-command", language="shell", interactive=False, lines=3)
            config_yaml = T.make(gr.Code, "train-config_yaml", language="yaml", interactive=False, lines=18,
                                 max_lines=30)
            with gr.Row():
                save = T.make(gr.Button, "train-save", size="sm")
                load = T.make(gr.UploadButton, "train-load", size="sm", file_types=[".yaml", ".yml"],
                              type="filepath")
                importer = T.make(gr.UploadButton, "train-import", size="sm", file_types=[".yaml", ".yml"],
                                  type="filepath")
            saved = T.make(gr.File, "train-saved", visible=False, interactive=False, height=60)
            io_status = gr.Markdown(elem_id="train-io_status")
    return TrainTab(form, preset, apply_preset, model_info, job_name, start, problems, command, config_yaml, save,
                    saved, load, importer, io_status, gr.State([]))


# -- model facts and presets -----------------------------------------------------------------------

def _presets(model: str) -> list[str]:
    spec = MODELS.get((model or "").strip())
    return list(spec.presets) if spec else []


def _default_preset(model: str) -> str | None:
    presets = _presets(model)
    return presets[0] if presets else None


def model_info_text(model: str, lang: str) -> str:
    spec = MODELS.get((model or "").strip())
    if spec is None:
        return t("msg-train-custom-model", lang, path=model or "")
    experts = ""
    if spec.experts:
        shared = t("msg-train-shared", lang, n=spec.shared_experts) if spec.shared_experts else ""
        experts = t("msg-train-experts", lang, experts=spec.experts, top=spec.experts_per_token, shared=shared)
    return t("msg-train-model-info", lang, name=spec.name, kind=spec.kind, total=spec.total_params,
             active=spec.active_params, layers=spec.layers, context=f"{spec.context_length:,}", experts=experts,
             builtin=t("msg-train-builtin", lang) if spec.builtin else "")


def apply_preset(form: Form, model: str, preset: str | None, lang: str) -> list:
    """Set the preset's values; a preset decides the whole `moe` section (keys it leaves out go back
    to their defaults), so MoE settings of an earlier model's preset never stick to a dense one."""
    spec = MODELS.get((model or "").strip())
    values = (spec.presets.get(preset) if spec and preset else None) or {}
    moe_defaults = {key: BY_KEY[key].default for key in form.keys if key.startswith("moe.")} if values else {}
    updates = [to_widget(BY_KEY[key], values[key], lang) if key in values
               else to_widget(BY_KEY[key], moe_defaults[key], lang) if key in moe_defaults
               else gr.skip() for key in form.keys]
    changes = ", ".join(f"{k}={v}" for k, v in values.items())
    message = t("msg-train-preset-applied", lang, preset=preset, changes=changes) if values else \
        t("msg-train-no-presets", lang)
    return [*updates, message]


# -- validation and the preview ----------------------------------------------------------------------

def job_dir_placeholder(ctx: StudioContext) -> Path:
    return ctx.workdir / "jobs" / "<job id>"


def data_problems(ctx: StudioContext, config: dict) -> list[tuple[str, str]]:
    """Checks the schema cannot make: data files exist, and stored ones are valid (or skipped)."""
    problems = []
    data = config.get("data") or {}
    skip_invalid = data.get("skip_invalid") is True
    for kind in ("train", "eval"):
        for i, entry in enumerate(data.get(kind) or []):
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str) or not path.strip():
                continue
            key = f"data.{kind}[{i}].path"
            resolved = Path(path).expanduser()
            if not resolved.is_file():
                problems.append((key, f"{key}: " + t("msg-train-file-missing", "en", path=path)))
                continue
            stored = ctx.datasets.by_path(resolved)
            if stored is not None and stored.rows_invalid and not skip_invalid:
                problems.append((key, f"{key}: " + t("msg-train-dataset-invalid", "en", name=stored.name,
                                                     n=stored.rows_invalid)))
    return problems


def check(ctx: StudioContext, config: dict) -> tuple[Any, list[tuple[str, str]]]:
    """(RunConfig or None, every problem as (key, message))."""
    problems: list[tuple[str, str]] = []
    cfg = None
    try:
        cfg = from_dict(config)
    except ConfigError as e:
        problems += e.problems
    problems += data_problems(ctx, config)
    return (cfg if not problems else None), problems


def preview(ctx: StudioContext, form: Form, values: list, lang: str, shown: list | None) -> list:
    """The command and config that would run. While problems are shown (after a refused Start or a
    load), they are checked again on every change, so a fixed field loses its mark at once."""
    config = config_from_values(values, form.keys)
    cfg, problems = check(ctx, config)
    if cfg is None:
        listing = "\n".join(f"#  - {message}" for _, message in problems)
        text = t("msg-train-invalid-preview", lang, problems=listing)
        command = text.split("\n", 1)[0]
        config_text = text + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    else:
        job_dir = job_dir_placeholder(ctx)
        command, config_text = format_command(command_preview(cfg, job_dir / "config.yaml", job_dir)), to_yaml(cfg)
    if shown:
        marks = problem_updates(form, problems, lang)
    else:
        marks = [gr.skip()] * (len(form.errors) + len(form.accordions) + 1) + [shown]
    return [command, config_text, *marks]


def format_command(argv: list[str]) -> str:
    """The argv as a shell line, one option per line so it fits the box."""
    parts: list[str] = []
    for arg in argv:
        quoted = shlex.quote(arg)
        if arg.startswith("--") and parts:
            parts.append(" \\\n    " + quoted)
        else:
            parts.append((" " if parts else "") + quoted)
    return "".join(parts)


def _field_of(problem_key: str) -> str:
    return _INDEX.sub("", problem_key)


def problem_updates(form: Form, problems: list[tuple[str, str]], lang: str) -> list:
    """Error lines under the fields, accordions opened where a problem hides, the summary, and the
    keys now marked (for the session's state)."""
    by_field: dict[str, list[str]] = {}
    for key, message in problems:
        by_field.setdefault(_field_of(key), []).append(message)
    errors = [gr.update(value="\n".join(f"⚠ {m}" for m in by_field[key]), visible=True) if key in by_field
              else gr.update(value="", visible=False) for key in form.keys]
    to_open = {form.accordion_of[key] for key in by_field if key in form.accordion_of}
    to_open |= {name.removesuffix("-advanced") for name in to_open}
    accordions = [gr.update(open=True) if name in to_open else gr.skip() for name in form.accordions]
    summary = ""
    if problems:
        summary = t("msg-train-problems", lang, n=len(problems)) + "\n" + \
            "\n".join(f"- {message}" for _, message in problems)
    return [*errors, *accordions, summary, [key for key in form.keys if key in by_field]]


def fill_form(ctx: StudioContext, form: Form, mapping: dict, lang: str) -> list:
    """Widget values for `mapping` plus its problems shown next to their fields."""
    values = values_from_config(mapping, form.keys, lang)
    _, problems = check(ctx, mapping)
    return [*values, *problem_updates(form, problems, lang)]


def start(ctx: StudioContext, form: Form, values: list, name: str, lang: str) -> tuple[list, str | None]:
    """Validate and queue; returns (the fill_outputs updates except widget values, new job id or None)."""
    config = config_from_values(values, form.keys)
    cfg, problems = check(ctx, config)
    if cfg is None:
        return problem_updates(form, problems, lang), None
    clean = to_dict(cfg)
    job = ctx.store.create_job(clean, name=(name or "").strip() or None)
    ctx.scheduler.kick()
    updates = problem_updates(form, [], lang)
    updates[-2] = t("msg-train-queued", lang, name=job.name, id=job.id)
    return updates, job.id


def save_yaml(ctx: StudioContext, form: Form, values: list, name: str, lang: str):
    config = config_from_values(values, form.keys)
    cfg, problems = check(ctx, config)
    text = to_yaml(cfg) if cfg is not None else yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    directory = ctx.workdir / "configs"
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_stem((name or "").strip()) or time.strftime("run-%Y%m%d-%H%M%S")
    path = directory / f"{stem}.yaml"
    write_text_atomic(path, text)
    message = t("msg-train-saved", lang, file=path.name)
    if problems:
        message += "\n\n" + "\n".join(f"- {m}" for _, m in problems)
    return gr.update(value=str(path), visible=True), message


def load_yaml(ctx: StudioContext, form: Form, path: str | None, lang: str) -> list:
    name = os.path.basename(path or "")
    try:
        mapping = read_yaml_mapping(path)
    except ConfigError as e:
        return [*[gr.skip()] * _fill_count(form), t("msg-train-load-failed", lang, file=name, error=str(e))]
    filled = fill_form(ctx, form, mapping, lang)
    has_problems = bool(filled[-2])  # the summary
    return [*filled, t("msg-train-load-problems" if has_problems else "msg-train-loaded", lang, file=name)]


def import_yaml(ctx: StudioContext, form: Form, path: str | None, lang: str) -> list:
    name = os.path.basename(path or "")
    try:
        mapping, unmapped, notes = import_erniekit(path)
    except ConfigError as e:
        return [*[gr.skip()] * _fill_count(form), t("msg-train-load-failed", lang, file=name, error=str(e))]
    lines = [t("msg-train-imported", lang, file=name)]
    if unmapped:
        lines.append(t("msg-train-unmapped", lang, keys=", ".join(unmapped)))
    if notes:
        lines.append(t("msg-train-notes", lang, notes="; ".join(notes)))
    return [*fill_form(ctx, form, mapping, lang), "\n\n".join(lines)]


def relabel_tables(*values) -> list:
    """The dataset tables' values again, with headers in the new language."""
    *tables, lang = values
    specs = [spec for spec in FIELDS if spec.type == "datasets"]
    return [to_widget(spec, from_widget(spec, table), lang) for spec, table in zip(specs, tables)]


def _fill_count(form: Form) -> int:
    return len(form.inputs) + len(form.errors) + len(form.accordions) + 2


def connect(ctx: StudioContext, tab: TrainTab, lang: gr.Radio) -> None:
    form = tab.form
    fill = tab.fill_outputs()

    controllers = sorted({spec.depends_on[0] for spec in FIELDS if spec.depends_on})
    for controller in controllers:
        dependents = [spec.key for spec in FIELDS if spec.depends_on and spec.depends_on[0] == controller]
        form.widgets[controller].change(
            lambda value, c=controller, deps=tuple(dependents): [
                gr.update(visible=visibility({c: value})[d]) for d in deps],
            form.widgets[controller], [form.boxes[d] for d in dependents], show_progress="hidden", queue=False)

    gr.on([w.change for w in form.inputs], *tab.preview_event(ctx, lang), trigger_mode="always_last",
          show_progress="hidden")

    model = form.widgets[MODEL_KEY]
    model.change(lambda m, lg: (gr.update(choices=_presets(m), value=_default_preset(m)), model_info_text(m, lg),
                                gr.update(visible=has_experts(m))),
                 [model, lang], [tab.preset, tab.model_info, form.accordions["moe"]], show_progress="hidden")
    tab.apply_preset.click(lambda m, p, lg: apply_preset(form, m, p, lg), [model, tab.preset, lang],
                           [*form.inputs, tab.io_status]) \
        .then(*tab.preview_event(ctx, lang), show_progress="hidden")

    tab.save.click(lambda *v: save_yaml(ctx, form, list(v[:-2]), v[-2], v[-1]),
                   [*form.inputs, tab.job_name, lang], [tab.saved, tab.io_status])
    tab.load.upload(lambda p, lg: load_yaml(ctx, form, p, lg), [tab.load, lang], [*fill, tab.io_status]) \
        .then(*tab.preview_event(ctx, lang), show_progress="hidden")
    tab.importer.upload(lambda p, lg: import_yaml(ctx, form, p, lg), [tab.importer, lang], [*fill, tab.io_status]) \
        .then(*tab.preview_event(ctx, lang), show_progress="hidden")


def connect_start(ctx: StudioContext, tab: TrainTab, lang: gr.Radio, tabs: gr.Tabs, job_select: gr.Dropdown,
                  job_choices) -> None:
    """Start: validate, queue, then show the job in the Jobs tab. `job_choices()` lists the jobs."""
    form = tab.form
    outputs = [*tab.mark_outputs(), tabs, job_select]

    def on_start(*values):
        *widget_values, name, lang_value = values
        updates, job_id = start(ctx, form, widget_values, name, lang_value)
        if job_id is None:
            return [*updates, gr.skip(), gr.skip()]
        return [*updates, gr.Tabs(selected="jobs"), gr.update(choices=job_choices(lang_value), value=job_id)]

    tab.start.click(on_start, [*form.inputs, tab.job_name, lang], outputs)
