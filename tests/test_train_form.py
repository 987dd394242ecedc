"""The Train tab's form without a browser: stored datasets shown by name in the data tables and read
back as their paths, the preset the form is shown against, and the line beside Start."""

from __future__ import annotations

import pandas as pd
import pytest

from models.registry import DEFAULT_MODEL, MODELS
from tests.conftest import SAMPLE_SFT


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio")


@pytest.fixture(scope="module")
def train_ui(tmp_path_factory):
    import gradio as gr

    from webui import train_tab
    from webui.context import make_context

    with gr.Blocks():
        return train_tab.build(make_context(tmp_path_factory.mktemp("train-form")))


def _copy(tmp_path, name: str, lines: int):
    """A file named `name` with the first `lines` rows of the sample set (different content, new id)."""
    path = tmp_path / f"{lines}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(SAMPLE_SFT.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]))
    return path


def _flat(values: dict) -> dict:
    """Config values of a fresh form (the schema's defaults) with `values` on top."""
    from webui.form import FIELDS

    return {**{spec.key: spec.default for spec in FIELDS}, **values}


def test_a_stored_dataset_is_shown_by_name_and_read_back_as_its_path(ctx, tmp_path):
    from webui.form import BY_KEY, StoredNames, files_note, from_widget, to_widget

    stored = ctx.datasets.add(SAMPLE_SFT, "sample_sft.jsonl")
    names = StoredNames(ctx.datasets.list())
    spec = BY_KEY["data.train"]
    entries = [{"path": str(stored.path), "format": "messages", "probability": 0.5},
               {"path": "/data/mine.jsonl", "format": "auto", "probability": 1.0}]
    table = to_widget(spec, entries, "en", names)
    assert table.values.tolist() == [["sample_sft.jsonl", "messages", 0.5], ["/data/mine.jsonl", "auto", 1.0]]
    assert list(table.columns) == ["File", "Format", "Probability"]
    assert from_widget(spec, table, names) == entries
    # a path typed by hand is kept as typed, and so is a name the store does not know
    typed = pd.DataFrame([["  other.jsonl ", "auto", 1.0]])
    assert from_widget(spec, typed, names) == [{"path": "other.jsonl", "format": "auto", "probability": 1.0}]
    note = files_note(entries, names, "en")
    assert note == f"- **sample_sft.jsonl** · 60 rows · `{stored.path}`"
    assert "60 行" in files_note(entries, names, "zh")


def test_stored_datasets_sharing_a_name_are_told_apart_by_their_id(ctx, tmp_path):
    from webui.form import BY_KEY, StoredNames, from_widget, to_widget

    first = ctx.datasets.add(_copy(tmp_path, "data.jsonl", 10), "data.jsonl")
    second = ctx.datasets.add(_copy(tmp_path, "data.jsonl", 20), "data.jsonl")
    names = StoredNames(ctx.datasets.list())
    spec = BY_KEY["data.train"]
    entries = [{"path": str(d.path), "format": "auto", "probability": 1.0} for d in (first, second)]
    table = to_widget(spec, entries, "en", names)
    shown = [row[0] for row in table.values.tolist()]
    assert shown == [f"data.jsonl · {first.id[:8]}", f"data.jsonl · {second.id[:8]}"]
    assert from_widget(spec, table, names) == entries
    # the bare name fits both: it is no stored dataset's, and validation says no such file exists
    assert from_widget(spec, [["data.jsonl", "auto", 1.0]], names)[0]["path"] == "data.jsonl"


def test_adding_from_the_data_tab_and_starting_keeps_the_stored_path(ctx, train_ui):
    import yaml

    from webui import data_tab, train_tab
    from webui.form import BY_KEY, to_widget

    stored = ctx.datasets.add(SAMPLE_SFT, "sample_sft.jsonl")
    form = train_ui.form
    values = [to_widget(BY_KEY[key], BY_KEY[key].default) for key in form.keys]
    values[form.keys.index("data.train")] = data_tab.add_to(ctx, stored.id, None, "train", "en").entries
    assert values[form.keys.index("data.train")].iloc[0, 0] == "sample_sft.jsonl"
    shown = train_tab.preview(ctx, train_ui, values, "en", [])
    assert str(stored.path) in shown[form.notes["data.train"]] and shown[form.notes["data.eval"]] == ""
    _, job_id = train_tab.start(ctx, train_ui, values, "", "en")
    config = yaml.safe_load(ctx.store.get_job(job_id).paths.config.read_text())
    assert config["data"]["train"][0]["path"] == str(stored.path)


def test_the_form_starts_with_the_default_models_preset(train_ui):
    from webui.train_tab import differences

    form = train_ui.form
    preset = MODELS[DEFAULT_MODEL].presets["sft-lora"]
    starting = {key: widget.value for key, widget in form.widgets.items()}
    for key, value in preset.items():
        assert starting[key] == value, key
    assert train_ui.preset.value == "sft-lora"
    assert differences(DEFAULT_MODEL, "sft-lora", _flat(preset)) == []


def test_the_preset_shown_trains_the_way_the_form_does_and_edits_are_named():
    from webui.train_tab import matching_preset, preset_settings, preset_status_text

    model = "ERNIE-4.5-0.3B"
    dpo = _flat(preset_settings(model, "dpo-lora"))
    assert matching_preset(model, dpo) == "dpo-lora"
    assert preset_status_text(model, "dpo-lora", dpo, "en") == "✓ The form holds preset **dpo-lora**."
    edited = {**dpo, "optim.learning_rate": 7e-4, "optim.max_steps": 30}
    assert matching_preset(model, edited) == "dpo-lora"
    assert preset_status_text(model, "dpo-lora", edited, "en") == \
        "**dpo-lora (modified)** · changed: Learning rate, Max steps"
    assert "学习率" in preset_status_text(model, "dpo-lora", edited, "zh")
    assert matching_preset(model, {**dpo, "finetuning.type": "full"}) == "dpo-full"
    assert matching_preset("/my/checkpoint", dpo) is None


def test_a_preset_resets_what_an_earlier_preset_set():
    from webui.train_tab import preset_settings

    tiny = preset_settings("ernie-4.5-tiny-dense", "sft-lora")
    assert tiny["devices.device"] == "cpu" and tiny["precision"] == "fp32" and tiny["devices.gpu_ids"] == ""
    assert "data.max_seq_len" not in tiny and "optim.max_steps" not in tiny, "lengths and steps are the user's"
    assert preset_settings("/my/checkpoint", "sft-lora") == {}


def test_the_line_beside_start_says_what_will_train(ctx, tmp_path):
    from webui.form import StoredNames
    from webui.train_tab import run_summary

    stored = ctx.datasets.add(SAMPLE_SFT, "sample_sft.jsonl")
    names = StoredNames(ctx.datasets.list())
    train = [{"path": str(stored.path)}]
    flat = _flat({**MODELS[DEFAULT_MODEL].presets["sft-lora"], "model.name_or_path": DEFAULT_MODEL,
                  "data.train": train})
    assert run_summary(flat, names, "en") == \
        "**Will train** `ernie-4.5-tiny-moe` · sft · LoRA rank 16 · lr 0.002 · epochs 30 · 60 rows"
    assert run_summary({**flat, "optim.max_steps": 300}, names, "en").endswith("· steps 300 · 60 rows")
    full = run_summary({**flat, "finetuning.type": "full", "data.train": [*train, {"path": "/x.jsonl"}]}, names, "en")
    assert "· full fine-tuning ·" in full and full.endswith("· 60 + ? rows")
    assert run_summary({**flat, "data.train": [{"path": "/x.jsonl"}]}, names, "en").endswith("· ? rows")
    assert run_summary({**flat, "data.train": [], "optim.learning_rate": None}, names, "en").endswith(
        "· lr ? · epochs 30 · no training data yet")
    assert run_summary(flat, names, "zh") == \
        "**将训练** `ernie-4.5-tiny-moe` · sft · LoRA 秩 16 · 学习率 0.002 · 30 轮 · 60 行"
