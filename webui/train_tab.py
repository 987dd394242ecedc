"""The Train tab: the run-config form (webui.form) with presets per model and method, YAML save and
load, ERNIEKit import, a live preview of the exact config and command that will run, and Start,
which validates first, shows each problem next to its field, and then queues the job.

The preset shown is always the one the form is closest to, and says when the form differs from it:
the form starts with the default model's preset, and choosing a preset, or a model, method or
fine-tuning type by hand, applies the model's preset for it. A whole-form fill (Clone, YAML load,
import) applies nothing; it only changes which preset is shown and how the form differs from it.

The form's values live in this browser session's components only; nothing here is shared between
sessions except the job store the queued job goes into.

Handlers return `{component: value}` (a component left out keeps its value), so no handler depends
on where a component sits in an output list. The tab owns its preview event: every change redraws
it, and `then_preview` chains it after anything that fills the whole form (preset, YAML load,
ERNIEKit import, Clone in webui.app).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import yaml

from models.hub import is_repo_id
from models.registry import DEFAULT_MODEL, MODELS, has_experts, is_vision
from plumbing.files import atomic_write_text
from trainer.config import ConfigError, command_preview, from_dict, read_yaml_mapping, to_dict, to_yaml
from trainer.erniekit_import import import_erniekit
from trainer.messages import Message
from webui.context import StudioContext
from webui import fit_panel, hub_panel
from webui import nodes_panel
from webui.dataset_store import safe_stem
from webui.form import BY_KEY, FIELDS, GROUPS, MODEL_KEY, Form, StoredNames, build_fields, build_group, \
    config_from_values, files_note, flat_from_values, from_widget, nest, to_widget, values_from_config, visibility
from webui.i18n import Phrase, both, field_id, group_id, message_text, props, said, t

_INDEX = re.compile(r"\[\d+\].*$")


@dataclass
class TrainTab:
    form: Form
    preset: gr.Dropdown
    apply_preset: gr.Button
    preset_status: gr.Markdown
    model_info: gr.Markdown
    job_name: gr.Textbox
    summary: gr.Markdown
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
    hub: hub_panel.HubPanel
    nodes: nodes_panel.NodesPanel  # the other nodes' commands, for devices.nnodes > 1
    fit: gr.Markdown  # the memory estimate beside the machine's (webui.fit_panel)

    def mark_outputs(self) -> list:
        """What `problem_updates` may return values for."""
        return [*self.form.errors.values(), *self.form.accordions.values(), self.problems, self.shown_errors]

    def fill_outputs(self) -> list:
        """What a whole-form fill (`fill_form`, `load_yaml`, `import_yaml`) may return values for."""
        return [*self.form.inputs, *self.mark_outputs(), self.io_status]


def build(ctx: StudioContext) -> TrainTab:
    T = ctx.texts
    start_values = {spec.key: spec.default for spec in FIELDS}
    first_preset = matching_preset(DEFAULT_MODEL, start_values)
    form = Form(initial=preset_settings(DEFAULT_MODEL, first_preset))
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            model_specs = [s for s in FIELDS if s.group == "model"]
            with T.make(gr.Accordion, group_id("model"), open=True) as acc:
                form.accordions["model"] = acc
                build_fields(T, [s for s in model_specs if not s.advanced], form, "model")
                hub = hub_panel.build(ctx)
                with gr.Row():
                    preset = T.make(gr.Dropdown, "train-preset", choices=_presets(DEFAULT_MODEL), value=first_preset)
                    apply_preset = T.make(gr.Button, "train-apply_preset", size="sm", scale=0, min_width=140)
                preset_status = gr.Markdown(
                    preset_status_text(DEFAULT_MODEL, first_preset, {**start_values, **form.initial}, "en"),
                    elem_id="train-preset_status")
                model_info = gr.Markdown(model_info_text(DEFAULT_MODEL, "en"), elem_id="train-model_info")
                advanced = [s for s in model_specs if s.advanced]
                if advanced:
                    with T.make(gr.Accordion, group_id("model", advanced=True), open=False) as adv:
                        form.accordions["model-advanced"] = adv
                        build_fields(T, advanced, form, "model-advanced")
            for group in GROUPS:
                if group != "model":
                    build_group(T, group, form, open=group in ("method", "data", "optim"),
                                visible=group != "vl" or is_vision(DEFAULT_MODEL))
        with gr.Column(scale=2, elem_id="train-run"):
            T.make(gr.Markdown, "train-run-title")
            job_name = T.make(gr.Textbox, "train-job_name", max_lines=1)
            summary = gr.Markdown(elem_id="train-summary")
            fit = fit_panel.build()
            start = T.make(gr.Button, "train-start", variant="primary", size="lg")
            problems = gr.Markdown(elem_id="train-problems")
            nodes = nodes_panel.build(ctx, "train")
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
    return TrainTab(form, preset, apply_preset, preset_status, model_info, job_name, summary, start, problems,
                    command, config_yaml, save, saved, load, importer, io_status, gr.State([]), hub=hub, nodes=nodes,
                    fit=fit)


# -- model facts and presets -----------------------------------------------------------------------

def _presets(model: str) -> list[str]:
    return list(_preset_table(model))


def _preset_table(model: Any) -> dict:
    spec = MODELS.get(model.strip()) if isinstance(model, str) else None
    return spec.presets if spec else {}


# Presets are named by how they train (the method, LoRA or full): choosing one of these by hand picks
# the model's preset that trains that way, and only such a preset is shown for the form.
_PRESET_KIND = ("method", "finetuning.type")
# what a preset is compared on: everything but the model itself and the data files
_COMPARED = [spec.key for spec in FIELDS if spec.key != MODEL_KEY and spec.type != "datasets"]
# What presets decide: every key some preset sets, and the whole `moe` section. Applying a preset
# sets all of them, those it leaves out to their defaults, so nothing of an earlier preset (a GPU,
# bf16, MoE options) sticks to the next one; the rest (lengths, steps, logging) is the user's.
_DECIDED = sorted({key for spec in MODELS.values() for preset in spec.presets.values() for key in preset} |
                  {key for key in BY_KEY if key.startswith("moe.")})


def preset_settings(model: str, preset: str | None) -> dict[str, Any]:
    """What applying `preset` sets (see _DECIDED); empty when the model has no such preset."""
    values = _preset_table(model).get(preset) if preset else None
    if not values:
        return {}
    return {**{key: BY_KEY[key].default for key in _DECIDED}, **values}


def _same(key: str, a: Any, b: Any) -> bool:
    normalize = BY_KEY[key].normalize
    if normalize:
        a, b = normalize(a), normalize(b)
    return a == b


def differences(model: str, preset: str, flat: dict[str, Any]) -> list[str]:
    """The keys where config values `flat` differ from a fresh form with `preset` applied."""
    expected = {**{key: BY_KEY[key].default for key in _COMPARED}, **preset_settings(model, preset)}
    return [key for key in _COMPARED if key in flat and not _same(key, flat[key], expected[key])]


def matching_preset(model: str, flat: dict[str, Any]) -> str | None:
    """The model's preset that trains the way `flat` says (method, fine-tuning type) and differs from
    it least; None when the model has none."""
    kind = [name for name, values in _preset_table(model).items()
            if all(_same(key, values[key], flat.get(key)) for key in _PRESET_KIND if key in values)]
    return min(kind, key=lambda name: len(differences(model, name, flat)), default=None)


def preset_status_text(model: str, preset: str | None, flat: dict[str, Any], lang: str) -> str:
    """Whether the form holds `preset`, or which fields differ from it."""
    if preset is None:
        return t("msg-train-no-presets", lang)
    changed = [props(field_id(key), lang)["label"] for key in differences(model, preset, flat)]
    if not changed:
        return t("msg-train-preset-same", lang, preset=preset)
    return t("msg-train-preset-modified", lang, preset=preset, fields=", ".join(changed))


def model_info_text(model: str, lang: str) -> str:
    spec = MODELS.get((model or "").strip())
    if spec is None:
        key = "msg-train-hub-model" if is_repo_id(model) else "msg-train-custom-model"
        return t(key, lang, path=(model or "").strip())
    experts = ""
    if spec.experts:
        shared = t("msg-train-shared", lang, n=spec.shared_experts) if spec.shared_experts else ""
        experts = t("msg-train-experts", lang, experts=spec.experts, top=spec.experts_per_token, shared=shared)
    return t("msg-train-model-info", lang, name=spec.name, kind=spec.kind, total=spec.total_params,
             active=spec.active_params, layers=spec.layers, context=f"{spec.context_length:,}", experts=experts,
             builtin=t("msg-train-builtin", lang) if spec.builtin else "")


def apply_preset(tab: TrainTab, model: str, preset: str | None, lang: str) -> dict:
    """Set the preset's values (`preset_settings`). Widgets the preset leaves alone, the data files
    among them, are not in the result, so they keep their values."""
    form = tab.form
    chosen = preset_settings(model, preset)
    if not chosen:
        return {tab.io_status: said("msg-train-no-presets")}
    updates = {form.widgets[key]: to_widget(BY_KEY[key], chosen[key], lang) for key in form.keys if key in chosen}
    changes = ", ".join(f"{k}={v}" for k, v in _preset_table(model)[preset].items())
    return {**updates, tab.io_status: said("msg-train-preset-applied", preset=preset, changes=changes)}


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "?"
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_summary(flat: dict[str, Any], names: StoredNames, lang: str) -> str:
    """One line on what Start trains: model, method, LoRA rank or full, learning rate, epochs or
    steps, and the rows of the training files (the store counts them; "?" for other files)."""
    if flat.get("finetuning.type") == "lora":
        tuning = t("msg-train-summary-lora", lang, rank=_shown(flat.get("finetuning.lora.rank")))
    else:
        tuning = t("msg-train-summary-full", lang)
    steps = flat.get("optim.max_steps")
    if isinstance(steps, (int, float)) and not isinstance(steps, bool) and steps > 0:
        length = t("msg-train-summary-steps", lang, n=_shown(steps))
    else:
        length = t("msg-train-summary-epochs", lang, n=_shown(flat.get("optim.num_train_epochs")))
    entries = [e for e in flat.get("data.train") or [] if isinstance(e, dict)]
    found = [names.find(entry.get("path")) for entry in entries]
    known = sum(f[1].rows_valid for f in found if f is not None)
    if not entries:
        rows = t("msg-train-summary-no-data", lang)
    else:
        count = str(known) if all(found) else "?" if not any(found) else f"{known} + ?"
        rows = t("msg-train-summary-rows", lang, n=count)
    return t("msg-train-summary", lang, model=_shown(flat.get(MODEL_KEY)), method=_shown(flat.get("method")),
             tuning=tuning, lr=_shown(flat.get("optim.learning_rate")), length=length, rows=rows)


def stored_names(ctx: StudioContext) -> StoredNames:
    return StoredNames(ctx.datasets.list())


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
                problems.append((key, Message("config-data-file-missing", key=key, path=path)))
                continue
            stored = ctx.datasets.by_path(resolved)
            if stored is not None and stored.rows_invalid and not skip_invalid:
                problems.append((key, Message("config-data-invalid-rows", key=key, name=stored.name,
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


def preview(ctx: StudioContext, tab: TrainTab, values: list, lang: str, shown: list | None) -> dict:
    """The command and config that would run, the line beside Start, the preset the form is closest
    to and the stored files of its data tables. While problems are shown (after a refused Start or a
    load), they are checked again on every change, so a fixed field loses its mark at once."""
    form = tab.form
    names = stored_names(ctx)
    flat = flat_from_values(values, form.keys, names)
    config = nest(flat)
    cfg, problems = check(ctx, config)
    if cfg is None:
        listing = "\n".join(f"#  - {message_text(message, lang)}" for _, message in problems)
        text = t("msg-train-invalid-preview", lang, problems=listing)
        command = text.split("\n", 1)[0]
        config_text = text + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    else:
        job_dir = job_dir_placeholder(ctx)
        command, config_text = format_command(command_preview(cfg, job_dir / "config.yaml", job_dir)), to_yaml(cfg)
    marks = problem_updates(tab, problems, lang) if shown else {}
    model = flat[MODEL_KEY]
    preset = matching_preset(model, flat)
    notes = {note: files_note(flat[key], names, lang) for key, note in form.notes.items()}
    return {tab.command: command, tab.config_yaml: config_text, tab.summary: run_summary(flat, names, lang),
            tab.preset: gr.update(choices=_presets(model), value=preset),
            tab.preset_status: preset_status_text(model, preset, flat, lang), **notes, **marks,
            tab.fit: fit_panel.text(config, ctx.workdir),
            **tab.nodes.updates(nodes_panel.train_view(cfg, job_dir_placeholder(ctx)))}


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


def problem_updates(tab: TrainTab, problems: list[tuple[str, str]], lang: str) -> dict:
    """Error lines under the fields, accordions opened where a problem hides (the others are left
    as the user has them), the summary, and the keys now marked (for the session's state)."""
    form = tab.form
    by_field: dict[str, list[str]] = {}
    for key, message in problems:
        by_field.setdefault(_field_of(key), []).append(message)
    errors = {form.errors[key]: gr.update(value=both(lambda lg, key=key: "\n".join(f"⚠ {message_text(m, lg)}"
                                                                                   for m in by_field[key])),
                                          visible=True)
              if key in by_field else gr.update(value="", visible=False) for key in form.keys}
    to_open = {form.accordion_of[key] for key in by_field if key in form.accordion_of}
    to_open |= {name.removesuffix("-advanced") for name in to_open}
    accordions = {accordion: gr.update(open=True) for name, accordion in form.accordions.items() if name in to_open}
    summary = ""
    if problems:
        summary = both(lambda lg: t("msg-train-problems", lg, n=len(problems)) + "\n"
                       + "\n".join(f"- {message_text(message, lg)}" for _, message in problems))
    return {**errors, **accordions, tab.problems: summary,
            tab.shown_errors: [key for key in form.keys if key in by_field]}


def fill_form(ctx: StudioContext, tab: TrainTab, mapping: dict, lang: str) -> dict:
    """Widget values for `mapping` plus its problems shown next to their fields."""
    form = tab.form
    values = values_from_config(mapping, form.keys, lang, stored_names(ctx))
    _, problems = check(ctx, mapping)
    return {**dict(zip(form.inputs, values)), **problem_updates(tab, problems, lang)}


def start(ctx: StudioContext, tab: TrainTab, values: list, name: str, lang: str) -> tuple[dict, str | None]:
    """Validate and queue; returns (the marks, with the summary saying where the job went; the new
    job's id, or None when a problem kept it out of the queue)."""
    config = config_from_values(values, tab.form.keys, stored_names(ctx))
    cfg, problems = check(ctx, config)
    if cfg is None:
        return problem_updates(tab, problems, lang), None
    clean = to_dict(cfg)
    job = ctx.store.create_job(clean, name=(name or "").strip() or None)
    ctx.scheduler.kick()
    updates = problem_updates(tab, [], lang)
    updates[tab.problems] = said("msg-train-queued", name=job.name, id=job.id)
    updates.update(tab.nodes.updates(nodes_panel.job_panel(job)))  # the new job's real paths
    return updates, job.id


class SavedConfig(NamedTuple):
    """What Save shows, by the name of the component it goes to."""
    saved: dict
    io_status: str


def save_yaml(ctx: StudioContext, form: Form, values: list, name: str, lang: str) -> SavedConfig:
    config = config_from_values(values, form.keys, stored_names(ctx))
    cfg, problems = check(ctx, config)
    text = to_yaml(cfg) if cfg is not None else yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    directory = ctx.workdir / "configs"
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_stem((name or "").strip()) or time.strftime("run-%Y%m%d-%H%M%S")
    path = directory / f"{stem}.yaml"
    atomic_write_text(path, text)
    message = both(lambda lg: t("msg-train-saved", lg, file=path.name)
                   + ("\n" if problems else "") + "".join(f"\n- {message_text(m, lg)}" for _, m in problems))
    return SavedConfig(gr.update(value=str(path), visible=True), message)


def load_yaml(ctx: StudioContext, tab: TrainTab, path: str | None, lang: str) -> dict:
    """The form filled from a run-config file; a file that cannot be read changes nothing but the
    status line."""
    name = os.path.basename(path or "")
    try:
        mapping = read_yaml_mapping(path)
    except ConfigError as e:
        return {tab.io_status: _load_failed(name, e)}
    filled = fill_form(ctx, tab, mapping, lang)
    loaded = "msg-train-load-problems" if filled[tab.problems] else "msg-train-loaded"
    return {**filled, tab.io_status: said(loaded, file=name)}


def import_yaml(ctx: StudioContext, tab: TrainTab, path: str | None, lang: str) -> dict:
    """The form filled from an ERNIEKit config, with what could not be mapped in the status line."""
    name = os.path.basename(path or "")
    try:
        mapping, unmapped, notes = import_erniekit(path)
    except ConfigError as e:
        return {tab.io_status: _load_failed(name, e)}
    lines = [Phrase("msg-train-imported", {"file": name})]
    if unmapped:
        lines.append(Phrase("msg-train-unmapped", {"keys": ", ".join(unmapped)}))
    status = both(lambda lg: "\n\n".join([line.text(lg) for line in lines] + (
        [t("msg-train-notes", lg, notes="; ".join(message_text(note, lg) for note in notes))] if notes else [])))
    return {**fill_form(ctx, tab, mapping, lang), tab.io_status: status}


def _load_failed(name: str, error: ConfigError) -> str:
    """Why a file could not be read, in every language (the file is named once, not by its path)."""
    return both(lambda lg: t("msg-train-load-failed", lg, file=name,
                             error="; ".join(message_text(m, lg) for _, m in error.problems)))


# -- events ------------------------------------------------------------------------------------------

def _preview_event(ctx: StudioContext, tab: TrainTab, lang: gr.Radio) -> tuple:
    """(fn, inputs, outputs) that redraw the preview from the form as it now is."""
    form = tab.form

    def redraw(data: dict) -> dict:
        return preview(ctx, tab, form.values(data), data[lang], data[tab.shown_errors])

    return redraw, {*form.inputs, lang, tab.shown_errors}, [tab.command, tab.config_yaml, tab.summary, tab.preset,
                                                             tab.fit, tab.preset_status, *form.notes.values(),
                                                             *tab.nodes.outputs(nodes_panel.NodesView),
                                                             *tab.mark_outputs()]


def then_preview(ctx: StudioContext, tab: TrainTab, lang: gr.Radio, fill):
    """Redraw the preview once `fill`, an event that sets the whole form, has finished: the many
    change events of its widgets can otherwise leave the preview one state behind. Returns the
    redraw, for more `.then`s."""
    return fill.then(*_preview_event(ctx, tab, lang), show_progress="hidden")


def then_relabel(ctx: StudioContext, tab: TrainTab, lang: gr.Radio, switch):
    """After a language switch (`switch`), redraw what this tab's handlers wrote in the old language:
    the preview, the model's facts and the dataset tables, whose headers are part of their value."""
    model = tab.form.widgets[MODEL_KEY]
    tables = {spec.key: tab.form.widgets[spec.key] for spec in FIELDS if spec.type == "datasets"}

    def relabel_tables(data: dict) -> dict:
        names = stored_names(ctx)
        return {widget: to_widget(BY_KEY[key], from_widget(BY_KEY[key], data[widget], names), data[lang], names)
                for key, widget in tables.items()}

    return then_preview(ctx, tab, lang, switch) \
        .then(model_info_text, [model, lang], tab.model_info) \
        .then(relabel_tables, {*tables.values(), lang}, list(tables.values()))


def connect(ctx: StudioContext, tab: TrainTab, lang: gr.Radio) -> None:
    form = tab.form

    controllers = sorted({spec.depends_on[0] for spec in FIELDS if spec.depends_on})
    for controller in controllers:
        boxes = {spec.key: form.boxes[spec.key] for spec in FIELDS if spec.depends_on and
                 spec.depends_on[0] == controller}
        form.widgets[controller].change(
            lambda value, c=controller, boxes=boxes: {
                box: gr.update(visible=visibility({c: value})[key]) for key, box in boxes.items()},
            form.widgets[controller], list(boxes.values()), show_progress="hidden", queue=False)

    gr.on([w.change for w in form.inputs], *_preview_event(ctx, tab, lang), trigger_mode="always_last",
          show_progress="hidden")

    model = form.widgets[MODEL_KEY]
    moe, vl = form.accordions["moe"], form.accordions["vl"]
    model.change(lambda m, lg: {tab.model_info: model_info_text(m, lg), moe: gr.update(visible=has_experts(m)),
                                vl: gr.update(visible=is_vision(m))},
                 [model, lang], [tab.model_info, moe, vl], show_progress="hidden")
    hub_panel.connect(ctx, tab.hub, model, lambda event: then_preview(ctx, tab, lang, event))
    then_preview(ctx, tab, lang, gr.on([tab.preset.input, tab.apply_preset.click],
                                       lambda m, p, lg: apply_preset(tab, m, p, lg), [model, tab.preset, lang],
                                       [*form.inputs, tab.io_status], show_progress="hidden"))

    # Only a choice made by hand applies a preset: a fill (Clone, load) changes these widgets too, and
    # must keep what it filled in.
    def follow(data: dict) -> dict:
        flat = flat_from_values(form.values(data), form.keys)
        return apply_preset(tab, flat[MODEL_KEY], matching_preset(flat[MODEL_KEY], flat), data[lang])

    chosen = [form.widgets[key].input for key in (MODEL_KEY, *_PRESET_KIND)]
    then_preview(ctx, tab, lang, gr.on(chosen, follow, {*form.inputs, lang}, [*form.inputs, tab.io_status],
                                       show_progress="hidden"))

    def save(data: dict) -> dict:
        saved = save_yaml(ctx, form, form.values(data), data[tab.job_name], data[lang])
        return {tab.saved: saved.saved, tab.io_status: saved.io_status}

    tab.save.click(save, {*form.inputs, tab.job_name, lang}, [tab.saved, tab.io_status])
    then_preview(ctx, tab, lang, tab.load.upload(lambda p, lg: load_yaml(ctx, tab, p, lg), [tab.load, lang],
                                                 tab.fill_outputs()))
    then_preview(ctx, tab, lang, tab.importer.upload(lambda p, lg: import_yaml(ctx, tab, p, lg),
                                                     [tab.importer, lang], tab.fill_outputs()))


def connect_start(ctx: StudioContext, tab: TrainTab, lang: gr.Radio, tabs: gr.Tabs, job_select: gr.Dropdown,
                  job_choices, job_timer: gr.Timer) -> None:
    """Start: validate, queue, then show the job in the Jobs tab. `job_choices(lang)` lists the jobs;
    `job_timer` drives the Jobs monitor, off while its tab is hidden."""
    form = tab.form

    def on_start(data: dict) -> dict:
        updates, job_id = start(ctx, tab, form.values(data), data[tab.job_name], data[lang])
        if job_id is not None:
            updates[tabs] = gr.Tabs(selected="jobs")  # which fires no select event to start the timer
            updates[job_timer] = gr.Timer(active=True)
            updates[job_select] = gr.update(choices=job_choices(data[lang]), value=job_id)
        return updates

    tab.start.click(on_start, {*form.inputs, tab.job_name, lang},
                    [*tab.mark_outputs(), *tab.nodes.outputs(nodes_panel.NodesView), tabs, job_timer, job_select])
