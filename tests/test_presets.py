"""Every preset of every registry model is a valid run config once the Train tab applies it.

The tab sets only the preset keys it has a widget for, so a mistyped key would be dropped without a
word; here such a key fails the suite, and so does a preset whose values the config refuses.
"""

from __future__ import annotations

import pytest

from models.registry import MODELS
from tests.conftest import SAMPLE_SFT
from trainer.config import ConfigError, from_dict, iter_fields

SCHEMA_KEYS = {spec.key for spec in iter_fields()}
PRESETS = [(model, name) for model, spec in MODELS.items() for name in spec.presets]


def test_every_model_has_presets():
    # guards the parametrisation below: an empty list would make every check pass
    assert len(PRESETS) >= 2 * len(MODELS)


@pytest.mark.parametrize("model,preset", PRESETS, ids=[f"{m}:{p}" for m, p in PRESETS])
def test_a_preset_sets_only_schema_keys(model, preset):
    unknown = sorted(set(MODELS[model].presets[preset]) - SCHEMA_KEYS)
    assert not unknown, f"{model} preset {preset} sets keys the run config does not have: {unknown}"


@pytest.fixture(scope="module")
def train_ui(tmp_path_factory):
    """A built Train tab (no server): apply_preset answers with values keyed by its widgets."""
    import gradio as gr

    from webui import train_tab
    from webui.context import make_context

    with gr.Blocks():
        return train_tab.build(make_context(tmp_path_factory.mktemp("presets-ui")))


@pytest.mark.parametrize("model,preset", PRESETS, ids=[f"{m}:{p}" for m, p in PRESETS])
def test_a_preset_applied_as_the_train_tab_does_is_a_valid_config(train_ui, model, preset):
    from webui.form import BY_KEY, config_from_values, to_widget
    from webui.train_tab import MODEL_KEY, apply_preset

    # A fresh form (every widget at its default) with the model chosen and a training file added,
    # as a user has it before pressing Apply preset.
    keys = train_ui.form.keys
    values = {key: to_widget(BY_KEY[key], BY_KEY[key].default) for key in keys}
    values[MODEL_KEY] = model
    values["data.train"] = to_widget(BY_KEY["data.train"], [{"path": str(SAMPLE_SFT), "format": "messages"}])
    out = apply_preset(train_ui, model, preset, "en")
    assert preset in out[train_ui.io_status]
    changed = {key: out[widget] for key, widget in train_ui.form.widgets.items() if widget in out}
    assert set(MODELS[model].presets[preset]) <= set(changed), "the form set every key of the preset"
    values.update(changed)

    if values["devices.nnodes"] > 1:
        values["devices.master"] = "10.0.0.1:8090"  # the first node's address is the user's to give
    config = config_from_values([values[key] for key in keys], keys)
    try:
        # a real model's preset is for the GPU machine that holds its checkpoint, not for this one
        cfg = from_dict(config, local=False)
    except ConfigError as e:
        pytest.fail(f"{model} preset {preset} gives an invalid config:\n{e}")
    assert cfg.model.name_or_path == model
