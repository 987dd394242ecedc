"""The run-config form, generated from the schema in trainer/config.py.

Every widget comes from a FieldSpec (key, type, default, choices, group, advanced, depends_on), so a
key added to the schema appears here without a second list of keys; its element id is
`field_id(key)` (defined in webui.i18n, whose catalogue is keyed by the same ids). This module draws
the widgets and converts between widget values and the config mapping in both directions;
trainer.config does all validation.

The data tables show a stored dataset by its name (`StoredNames`, made from the dataset store's
list, which stays the one record of which name is which file) and list the stored files under the
table; the config they give holds the file's path.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import gradio as gr
import pandas as pd

from models.registry import MODELS
from trainer.config import ConfigError, FieldSpec, RunConfig, from_dict, get, iter_fields, set_key
from webui.dataset_store import Dataset
from webui.i18n import DEFAULT_LANG, Texts, field_id, group_id, props, t

FIELDS: list[FieldSpec] = iter_fields()
BY_KEY = {spec.key: spec for spec in FIELDS}
GROUPS: list[str] = list(dict.fromkeys(spec.group for spec in FIELDS))
MODEL_KEY = "model.name_or_path"
_DATASET_SPEC = next(s for s in FIELDS if s.type == "datasets")
# a dataset entry's columns in the table widget, in schema order
ENTRY_COLUMNS = [item.key for item in _DATASET_SPEC.item_fields]
ENTRY_DEFAULTS = {item.key: item.default for item in _DATASET_SPEC.item_fields}


@dataclass
class Form:
    widgets: dict[str, gr.components.Component] = field(default_factory=dict)
    # the Column around each widget: depends_on hides it, and it carries the widget's error line
    boxes: dict[str, gr.Column] = field(default_factory=dict)
    errors: dict[str, gr.Markdown] = field(default_factory=dict)
    accordions: dict[str, gr.Accordion] = field(default_factory=dict)
    accordion_of: dict[str, str] = field(default_factory=dict)  # key -> accordion name
    # under each dataset table: the stored files it names, with their rows and paths
    notes: dict[str, gr.Markdown] = field(default_factory=dict)
    # config values the widgets start with where they are not the schema's defaults (a preset's)
    initial: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.widgets)

    @property
    def inputs(self) -> list[gr.components.Component]:
        return list(self.widgets.values())

    def values(self, data: dict) -> list[Any]:
        """The widget values, in `keys` order, out of an event's inputs keyed by component."""
        return [data[widget] for widget in self.widgets.values()]


def _widget(texts: Texts, spec: FieldSpec, start: Any) -> gr.components.Component:
    key = field_id(spec.key)
    value = to_widget(spec, start)
    if spec.key == MODEL_KEY:
        return texts.make(gr.Dropdown, key, choices=list(MODELS), value=value, allow_custom_value=True)
    if spec.type == "datasets":
        kinds = ["number" if item.type in ("int", "float") else "str" for item in spec.item_fields]
        # the name or path takes what Format and Probability leave: they stay in view
        return texts.make(gr.Dataframe, key, value=value, interactive=True, datatype=kinds,
                          column_count=len(kinds), wrap=True, column_widths=["58%", "24%", "18%"],
                          elem_classes=["dataset-table"])
    if spec.choices:
        return texts.make(gr.Dropdown, key, choices=list(spec.choices), value=value)
    if spec.type == "bool":
        return texts.make(gr.Checkbox, key, value=value)
    if spec.type == "int":
        return texts.make(gr.Number, key, value=value, precision=0)
    if spec.type == "float":
        return texts.make(gr.Number, key, value=value)
    return texts.make(gr.Textbox, key, value=value, max_lines=1)


def build_fields(texts: Texts, specs: list[FieldSpec], form: Form, accordion: str) -> None:
    """Widgets for `specs` in rows of up to three; datasets tables take a row of their own."""
    row: gr.Row | None = None
    in_row = 0
    start = {**{s.key: s.default for s in FIELDS}, **form.initial}
    for spec in specs:
        wide = spec.type == "datasets"
        if row is None or in_row == 3 or wide:
            row = gr.Row(equal_height=False)
            in_row = 0
        with row:
            visible = _depends_ok(spec, start)
            with gr.Column(min_width=220, visible=visible, elem_classes=["cfg-field"]) as box:
                form.widgets[spec.key] = _widget(texts, spec, start[spec.key])
                if wide:
                    form.notes[spec.key] = gr.Markdown(elem_classes=["dataset-files"],
                                                       elem_id="files-" + field_id(spec.key))
                form.errors[spec.key] = gr.Markdown(visible=False, elem_classes=["field-error"],
                                                    elem_id=field_id(spec.key) + "-error")
            form.boxes[spec.key] = box
            form.accordion_of[spec.key] = accordion
        in_row += 1
        if wide:
            row = None


def build_group(texts: Texts, group: str, form: Form, open: bool = True, visible: bool = True) -> None:
    """One schema group as an accordion, its advanced fields in a closed accordion inside."""
    specs = [s for s in FIELDS if s.group == group]
    basic = [s for s in specs if not s.advanced]
    advanced = [s for s in specs if s.advanced]
    with texts.make(gr.Accordion, group_id(group), open=open, visible=visible) as acc:
        form.accordions[group] = acc
        build_fields(texts, basic, form, group)
        if advanced:
            with texts.make(gr.Accordion, group_id(group, advanced=True), open=False) as adv:
                form.accordions[group + "-advanced"] = adv
                build_fields(texts, advanced, form, group + "-advanced")


def _depends_ok(spec: FieldSpec, values: dict[str, Any]) -> bool:
    if spec.depends_on is None:
        return True
    key, wanted = spec.depends_on
    return values.get(key) == wanted


def visibility(values: dict[str, Any]) -> dict[str, bool]:
    """Which fields with a depends_on condition are relevant for these values."""
    return {spec.key: _depends_ok(spec, values) for spec in FIELDS if spec.depends_on is not None}


# -- stored datasets by name --------------------------------------------------------------------------

class StoredNames:
    """How the data tables show stored datasets: by name, with the start of the id where several
    share one, so that every name shown leads back to one file. Anything else in a table (a path
    typed by hand, a file outside the store) is shown and read as it is."""

    def __init__(self, datasets: Iterable[Dataset] = ()):
        datasets = list(datasets)
        shared = Counter(d.name for d in datasets)
        self._shown = {d.name if shared[d.name] == 1 else f"{d.name} · {d.id[:8]}": d for d in datasets}
        self._by_path = {str(d.path): (shown, d) for shown, d in self._shown.items()}

    def find(self, path: Any) -> tuple[str, Dataset] | None:
        """(what the tables show, the stored dataset) for a config path, or None outside the store."""
        if not isinstance(path, str) or not path.strip():
            return None
        try:
            return self._by_path.get(str(Path(path.strip()).expanduser().resolve()))
        except (OSError, ValueError, RuntimeError):  # a path no file can have: validation names it
            return None

    def shown(self, path: Any) -> Any:
        """What a table shows for a config path."""
        found = self.find(path)
        return found[0] if found else path

    def path(self, shown: str) -> str:
        """The config path of what a table shows."""
        dataset = self._shown.get(shown)
        return str(dataset.path) if dataset else shown


NO_NAMES = StoredNames()


def files_note(entries: Any, names: StoredNames, lang: str) -> str:
    """The stored files of a dataset table's config value, one line each: name, rows, path."""
    lines = []
    for entry in entries if isinstance(entries, list) else []:
        found = names.find(entry.get("path")) if isinstance(entry, dict) else None
        if found is not None:
            shown, dataset = found
            lines.append("- " + t("msg-train-stored-file", lang, name=shown, rows=dataset.rows_valid,
                                  path=dataset.path))
    return "\n".join(lines)


# -- widget value <-> config value ------------------------------------------------------------------

def to_widget(spec: FieldSpec, value: Any, lang: str = DEFAULT_LANG, names: StoredNames = NO_NAMES) -> Any:
    """The widget value for a config value; a dataset table's headers are in `lang`, and it shows
    stored files by their `names`."""
    if spec.type == "list[str]":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))
    if spec.type == "datasets":
        rows = []
        for entry in value or []:
            if dataclasses.is_dataclass(entry):
                entry = dataclasses.asdict(entry)
            entry = entry if isinstance(entry, dict) else {}
            row = {col: entry.get(col, ENTRY_DEFAULTS[col]) for col in ENTRY_COLUMNS}
            row["path"] = names.shown(row["path"])
            rows.append([row[col] for col in ENTRY_COLUMNS])
        return pd.DataFrame(rows, columns=props(field_id(spec.key), lang)["headers"])
    return value


def _blank(cell: Any) -> bool:
    if isinstance(cell, float):
        return math.isnan(cell)
    return cell is None or (isinstance(cell, str) and not cell.strip())


def from_widget(spec: FieldSpec, value: Any, names: StoredNames = NO_NAMES) -> Any:
    """The config value for a widget value, a stored file's name read back as its path; anything odd
    is passed on for validation to name."""
    if spec.type == "list[str]":
        return [part.strip() for part in str(value or "").split(",") if part.strip()]
    if spec.type == "datasets":
        rows = value.values.tolist() if isinstance(value, pd.DataFrame) else (value or [])
        entries = []
        for row in rows:
            cells = list(row) + [None] * (len(ENTRY_COLUMNS) - len(row))
            if all(_blank(c) for c in cells):
                continue
            entry = {}
            for col, cell in zip(ENTRY_COLUMNS, cells):
                if _blank(cell):
                    continue
                entry[col] = cell.strip() if isinstance(cell, str) else cell
                if col == "path" and isinstance(cell, str):
                    entry[col] = names.path(entry[col])
                if col == "probability" and isinstance(cell, str):
                    try:
                        entry[col] = float(cell)
                    except ValueError:
                        pass
            entries.append(entry)
        return entries
    if spec.type == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if spec.type == "str" and value is None:
        return ""
    return value


def flat_from_values(values: list[Any], keys: list[str], names: StoredNames = NO_NAMES) -> dict[str, Any]:
    """Dotted key -> config value for the form's widget values (in `keys` order)."""
    return {key: from_widget(BY_KEY[key], value, names) for key, value in zip(keys, values)}


def nest(flat: dict[str, Any]) -> dict:
    """The nested config mapping of dotted keys and values."""
    config: dict = {}
    for key, value in flat.items():
        set_key(config, key, value)
    return config


def config_from_values(values: list[Any], keys: list[str], names: StoredNames = NO_NAMES) -> dict:
    """The nested config mapping for the form's widget values (in `keys` order)."""
    return nest(flat_from_values(values, keys, names))


def flat_values(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> raw value for every schema key in a (nested or dotted) mapping."""
    out: dict[str, Any] = {}
    for raw_key, value in mapping.items():
        key = f"{prefix}{raw_key}"
        if key in BY_KEY:
            out[key] = value
        elif isinstance(value, dict):
            out.update(flat_values(value, key + "."))
    return out


def values_from_config(mapping: dict, keys: list[str], lang: str = DEFAULT_LANG,
                       names: StoredNames = NO_NAMES) -> list[Any]:
    """Widget values for a config mapping: validated values where the mapping is valid, else the
    raw value where a widget can show it, else the default (the problems are reported separately)."""
    try:
        cfg: RunConfig | None = from_dict(mapping, local=False)  # values only; train_tab.check reports problems
    except ConfigError:
        cfg = None
    raw = flat_values(mapping)
    out = []
    for key in keys:
        spec = BY_KEY[key]
        if cfg is not None:
            out.append(to_widget(spec, get(cfg, key), lang, names))
        elif key in raw:
            out.append(_raw_widget_value(spec, raw[key], lang, names))
        else:
            out.append(to_widget(spec, spec.default, lang))
    return out


def _raw_widget_value(spec: FieldSpec, value: Any, lang: str, names: StoredNames) -> Any:
    if spec.type in ("int", "float"):
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if spec.type == "bool":
        return value if isinstance(value, bool) else spec.default
    if spec.type == "datasets":
        return to_widget(spec, value if isinstance(value, list) else [], lang, names)
    if spec.type == "list[str]":
        return to_widget(spec, value)
    return "" if value is None else str(value)
