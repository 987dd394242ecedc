"""The web UI without a browser: what the handlers do, the form generated from the schema, the
catalogue, the dataset and export stores, app.py's command line. Browser tests are in
test_webui_browser.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import EXAMPLES, ROOT, SAMPLE_SFT, shown
from trainer.config import from_dict, iter_fields
from trainer.jobfiles import append_metrics, write_status

BAD_ROWS = [
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
    '{"messages": [{"role": "user", "content": "no answer"}]}',
    "not json",
    '{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": ""}]}',
]


@pytest.fixture
def ctx(tmp_path):
    from webui.context import make_context

    return make_context(tmp_path / "studio", max_upload_mb=1)


@pytest.fixture(scope="module")
def app_parts(tmp_path_factory):
    """One built Blocks (no server) with its context, for tests that need the wired components."""
    from webui.app import build_app
    from webui.context import make_context

    ctx = make_context(tmp_path_factory.mktemp("studio-ui"))
    return ctx, build_app(ctx)


@pytest.fixture(scope="module")
def train_ui(tmp_path_factory):
    """A built Train tab (no server): its handlers key what they return by its components."""
    import gradio as gr

    from webui import train_tab
    from webui.context import make_context

    with gr.Blocks():
        return train_tab.build(make_context(tmp_path_factory.mktemp("train-ui")))


def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD_ROWS) + "\n", encoding="utf-8")
    return path


# -- process model -----------------------------------------------------------------------------------

def test_importing_app_and_building_the_ui_does_not_import_paddle(tmp_path):
    code = (
        "import sys, app\n"
        "from webui.app import build_app\n"
        "from webui.context import make_context\n"
        f"build_app(make_context({str(tmp_path)!r}))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'paddleformers'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_non_loopback_host_needs_auth_or_an_explicit_opt_out(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "app.py", "--workdir", str(tmp_path), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    refused = run("--host", "0.0.0.0")
    assert refused.returncode == 2 and "--auth-file" in refused.stderr and "--insecure-no-auth" in refused.stderr
    broken = tmp_path / "users.txt"
    broken.write_text("# users\nalice\n")
    bad_auth = run("--host", "0.0.0.0", "--auth-file", str(broken))
    assert bad_auth.returncode == 2 and "users.txt:2: expected user:password" in bad_auth.stderr
    missing = run("--auth-file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read it" in missing.stderr


def test_served_with_an_auth_file_the_studio_asks_for_a_login(tmp_path):
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.browser_helpers import Studio

    users = tmp_path / "users.txt"
    users.write_text("alice:pw1\n")
    os.chmod(users, 0o600)
    studio = Studio(tmp_path / "studio", extra=["--host", "0.0.0.0", "--auth-file", str(users)]).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(studio.url + "config", timeout=10)
        assert refused.value.code == 401

        def login(password: str) -> int:
            body = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            try:
                with urllib.request.urlopen(studio.url + "login", data=body, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as e:
                return e.code

        assert login("wrong") == 400 and login("pw1") == 200
    finally:
        studio.stop()


def test_auth_file_and_check(tmp_path):
    import app

    users = tmp_path / "users.txt"
    users.write_text("# comment\n\nalice:s3cr:et\nbob:pw\n")
    os.chmod(users, 0o600)
    check = app.make_auth(app.read_auth_file(str(users)))
    assert check("alice", "s3cr:et") and check("bob", "pw")
    assert not check("alice", "pw") and not check("carol", "pw") and not check("bob", "")
    from plumbing.network import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


# -- i18n and the form -------------------------------------------------------------------------------

def test_catalogue_has_both_languages_for_every_entry_and_every_schema_key():
    from webui.field_texts import FIELD_ZH
    from webui.i18n import CATALOGUE, LANGUAGES

    assert set(FIELD_ZH) == {spec.key for spec in iter_fields()}
    for key, entry in CATALOGUE.items():
        assert set(entry) == set(LANGUAGES), key
        assert set(entry["en"]) == set(entry["zh"]), key
        for lang in LANGUAGES:
            assert all(entry[lang].values()), (key, lang)


def test_every_component_text_comes_from_the_catalogue_and_relabels(app_parts):
    from webui.i18n import CATALOGUE, props

    ctx, _ = app_parts
    keys = ctx.texts.keys
    assert len(keys) == len(set(keys)), "an element id is used twice"
    assert all(key in CATALOGUE for key in keys)
    components = dict(zip(keys, ctx.texts.components))
    updates = ctx.texts.updates("zh")
    assert list(updates) == ctx.texts.components
    by_key = {key: updates[component] for key, component in components.items()}
    assert by_key["tab-train"]["label"] == "训练"
    assert by_key["train-start"]["value"] == "开始训练"
    assert by_key["train-load"]["label"] == "加载 YAML"  # an upload button shows its label
    assert by_key["cfg-optim-learning_rate"]["label"] == "学习率"
    assert by_key["data-hint"]["value"].startswith("支持 JSONL")
    for key, update in by_key.items():
        zh = props(key, "zh")
        sent = [v for k, v in update.items() if k != "__type__"]
        assert sent and all(v in zh.values() or any("{" in str(z) for z in zh.values()) for v in sent), key
    assert ctx.texts.updates("en")[components["tab-train"]]["label"] == "Train"


def test_form_has_one_widget_per_schema_key_with_the_schema_text(app_parts):
    from webui.form import field_id

    ctx, demo = app_parts
    specs = iter_fields()
    ids = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    for spec in specs:
        widget = ids[field_id(spec.key)]
        assert widget.label == spec.label
    form_ids = {i for i in ids if i.startswith("cfg-") and not i.endswith("-error")}
    assert form_ids == {field_id(spec.key) for spec in specs}


def test_form_values_round_trip_the_example_config():
    from webui.form import FIELDS, config_from_values, values_from_config

    keys = [spec.key for spec in FIELDS]
    original = from_dict(yaml.safe_load((EXAMPLES / "tiny_sft_lora.yaml").read_text()))
    from trainer.config import to_dict

    values = values_from_config(to_dict(original), keys)
    assert from_dict(config_from_values(values, keys)) == original
    # What the browser sends back: numbers as floats, tables as frames, lists as text.
    train = values[keys.index("data.train")]
    assert isinstance(train, pd.DataFrame) and train.iloc[0, 0] == "assets/sample_sft.jsonl"
    assert values[keys.index("finetuning.lora.target_modules")] == "all-linear"


def test_invalid_yaml_still_fills_what_it_can_and_marks_the_rest(ctx, train_ui, tmp_path):
    from webui import train_tab
    from webui.form import BY_KEY

    form = train_ui.form
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  learning_rate: fast\n  max_steps: 7\nmethod: sft\nbogus: 1\n")
    out = train_tab.load_yaml(ctx, train_ui, str(path), "en")
    values = {key: out[widget] for key, widget in form.widgets.items()}
    assert values["optim.max_steps"] == 7
    assert values["optim.learning_rate"] is None
    assert values["optim.seed"] == BY_KEY["optim.seed"].default
    errors = {key: out[line] for key, line in form.errors.items()}
    assert "learning_rate: expected a number" in errors["optim.learning_rate"]["value"]
    assert errors["optim.max_steps"]["visible"] is False
    summary, marked, message = out[train_ui.problems], out[train_ui.shown_errors], out[train_ui.io_status]
    assert "unknown key 'bogus'" in summary and "optim.learning_rate" in marked
    assert shown(message) == "Loaded run.yaml, with problems shown next to their fields."


def test_yaml_is_loaded_safely(ctx, train_ui, tmp_path):
    from webui import train_tab

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    out = train_tab.load_yaml(ctx, train_ui, str(path), "en")
    assert shown(out[train_ui.io_status]).startswith("Cannot load evil.yaml") and not marker.exists()


def test_erniekit_import_fills_the_form_and_lists_what_it_could_not_map(ctx, train_ui):
    from webui import train_tab

    fixture = str(ROOT / "tests" / "fixtures" / "erniekit_sft_lora_0p3b.yaml")
    out = train_tab.import_yaml(ctx, train_ui, fixture, "en")
    assert out[train_ui.form.widgets["finetuning.type"]] == "lora"
    assert shown(out[train_ui.io_status]).startswith("Imported ERNIEKit config erniekit_sft_lora_0p3b.yaml")


def test_start_marks_each_problem_next_to_its_field_and_queues_nothing(ctx, train_ui):
    from webui import train_tab

    form = train_ui.form
    values = _default_values(form)
    values[form.keys.index("optim.learning_rate")] = -1.0
    values[form.keys.index("data.train")] = pd.DataFrame([["/nowhere/x.jsonl", "auto", 1.0]])
    updates, job_id = train_tab.start(ctx, train_ui, values, "", "en")
    assert job_id is None and ctx.store.list_jobs() == []
    errors = {key: updates[line] for key, line in form.errors.items()}
    assert errors["optim.learning_rate"]["visible"] and "must be > 0" in errors["optim.learning_rate"]["value"]
    assert "data.train[0].path: file not found: /nowhere/x.jsonl" in errors["data.train"]["value"]
    assert not errors["optim.seed"]["visible"]
    assert set(updates[train_ui.shown_errors]) == {"optim.learning_rate", "data.train"}


def test_start_refuses_a_stored_dataset_with_invalid_rows_unless_skipped(ctx, train_ui, tmp_path):
    from webui import train_tab

    form = train_ui.form
    stored = ctx.datasets.add(bad_file(tmp_path), "bad.jsonl")
    values = _default_values(form)
    values[form.keys.index("data.train")] = pd.DataFrame([[str(stored.path), "messages", 1.0]])
    updates, job_id = train_tab.start(ctx, train_ui, values, "", "en")
    assert job_id is None
    assert "bad.jsonl has 3 invalid row(s)" in updates[form.errors["data.train"]]["value"]
    values[form.keys.index("data.skip_invalid")] = True
    updates, job_id = train_tab.start(ctx, train_ui, values, "mine", "en")
    assert job_id is not None


def test_start_queues_a_valid_config_and_the_preview_shows_its_command(ctx, train_ui):
    from webui import train_tab

    form = train_ui.form
    values = _default_values(form)
    values[form.keys.index("data.train")] = pd.DataFrame([[str(SAMPLE_SFT), "messages", 1.0]])
    values[form.keys.index("optim.max_steps")] = 5.0
    drawn = train_tab.preview(ctx, train_ui, values, "en", [])
    command, config_text = drawn[train_ui.command], drawn[train_ui.config_yaml]
    assert "-m trainer run" in command and "--job-dir" in command
    assert yaml.safe_load(config_text)["optim"]["max_steps"] == 5
    updates, job_id = train_tab.start(ctx, train_ui, values, "first run", "en")
    job = ctx.store.get_job(job_id)
    assert job.name == "first run" and job.state == "queued" and job.waiting
    assert yaml.safe_load(job.paths.config.read_text())["optim"]["max_steps"] == 5
    assert shown(updates[train_ui.problems]).startswith("Job **first run**")


def test_saved_yaml_loads_back_into_the_same_form(ctx, train_ui):
    from webui import train_tab

    form = train_ui.form
    values = _default_values(form)
    values[form.keys.index("data.train")] = pd.DataFrame([[str(SAMPLE_SFT), "messages", 0.5]])
    values[form.keys.index("optim.learning_rate")] = 3e-4
    values[form.keys.index("finetuning.lora.target_modules")] = "qkv_proj, o_proj"
    saved, message = train_tab.save_yaml(ctx, form, values, "../my run", "en")
    path = Path(saved["value"])
    assert path == ctx.workdir / "configs" / "my_run.yaml" and shown(message) == "Saved my_run.yaml; download it below."
    assert from_dict(yaml.safe_load(path.read_text())).optim.learning_rate == 3e-4
    loaded = train_tab.load_yaml(ctx, train_ui, str(path), "en")
    assert shown(loaded[train_ui.io_status]) == "Loaded my_run.yaml."
    again = {key: loaded[widget] for key, widget in form.widgets.items()}
    assert again["finetuning.lora.target_modules"] == "qkv_proj, o_proj"
    assert again["data.train"].values.tolist() == [[str(SAMPLE_SFT), "messages", 0.5]]


def test_preview_rechecks_marked_fields_as_they_change(ctx, train_ui):
    from webui import train_tab

    form = train_ui.form
    values = _default_values(form)
    values[form.keys.index("optim.learning_rate")] = -1.0
    out = train_tab.preview(ctx, train_ui, values, "en", [])
    # nothing shown yet: marks and state untouched
    assert not set(out) & set(train_ui.mark_outputs()) and train_ui.command in out
    marks = train_tab.preview(ctx, train_ui, values, "en", ["optim.learning_rate"])
    assert marks[form.errors["optim.learning_rate"]]["visible"]
    values[form.keys.index("optim.learning_rate")] = 1e-3
    marks = train_tab.preview(ctx, train_ui, values, "en", ["optim.learning_rate"])
    assert not marks[form.errors["optim.learning_rate"]]["visible"]
    assert "optim.learning_rate" not in marks[train_ui.shown_errors]


def test_presets_follow_the_model(train_ui):
    from webui import train_tab

    def preset(model, name):
        """(key -> widget value the preset sets, status line); a key left out keeps its value."""
        out = train_tab.apply_preset(train_ui, model, name, "en")
        return {key: out[w] for key, w in train_ui.form.widgets.items() if w in out}, out[train_ui.io_status]

    updates, message = preset("ernie-4.5-tiny-moe", "sft-full")
    assert updates["finetuning.type"] == "full" and updates["optim.learning_rate"] == 3e-3
    assert "optim.seed" not in updates
    assert "sft-full" in message
    big = preset("ERNIE-4.5-300B-A47B", "sft-full")[0]
    assert big["moe.freeze_router"] is True and big["moe.bias_update_rate"] == 1e-3
    assert preset("ERNIE-4.5-300B-A47B", "sft-lora")[0]["moe.train_experts"] == "shared"
    dense = preset("ERNIE-4.5-0.3B", "sft-full")[0]
    assert dense["moe.freeze_router"] is False and dense["moe.bias_update_rate"] == 0.0, \
        "a dense model's preset puts the MoE settings back"
    assert train_tab._presets("/some/dir") == [] and "local checkpoint" in train_tab.model_info_text("/x", "en")


# -- datasets ----------------------------------------------------------------------------------------

def test_upload_names_are_sanitised_and_types_checked():
    from webui.dataset_store import DatasetError, sanitise_name

    assert sanitise_name("../../etc/passwd.jsonl") == "passwd.jsonl"
    assert sanitise_name("..\\..\\x.JSON") == "x.json"
    assert sanitise_name("my data (v2).csv") == "my_data_v2.csv"
    assert sanitise_name(".hidden.parquet") == "hidden.parquet"
    assert sanitise_name("数据.jsonl") == "数据.jsonl"
    assert sanitise_name("$(rm -rf ~).jsonl") == "rm_-rf.jsonl"
    with pytest.raises(DatasetError, match="unsupported file type .sh"):
        sanitise_name("run.sh")


def test_dataset_store_validates_keeps_one_copy_and_deletes(ctx, tmp_path):
    stored = ctx.datasets.add(SAMPLE_SFT, "../sample_sft.jsonl")
    assert stored.path.parent.parent == ctx.workdir / "datasets" and stored.path.name == "sample_sft.jsonl"
    assert stored.ok and stored.format == "messages" and stored.rows_valid == 60
    again = ctx.datasets.add(SAMPLE_SFT, "copy.jsonl")
    assert again.id == stored.id and len(ctx.datasets.list()) == 1
    bad = ctx.datasets.add(bad_file(tmp_path), "bad.jsonl")
    assert not bad.ok and (bad.rows_valid, bad.rows_invalid) == (1, 3)
    meta = ctx.datasets.meta(bad)
    assert [(i["line"], i["field"]) for i in meta["issues"]] == [(2, "messages"), (3, ""), (4, "messages[0].role"),
                                                                 (4, "messages[1].content")]
    assert ctx.datasets.by_path(bad.path) == bad and ctx.datasets.by_path(SAMPLE_SFT) is None
    ctx.datasets.delete(bad.id)
    assert not bad.path.exists() and [d.id for d in ctx.datasets.list()] == [stored.id]
    assert not list((ctx.workdir / "datasets" / ".incoming").iterdir())


def test_upload_over_the_limit_is_refused_with_a_clear_error(ctx, tmp_path):
    from webui.data_tab import store_uploads

    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"messages": [{"role": "user", "content": "x" * 2_000_000}]}) + "\n")
    status, *_ = store_uploads(ctx, [str(big)], "en")
    assert "Refused big.jsonl" in status and "over the upload limit of 1.0 MB" in status
    assert "--max-upload-mb" in status and ctx.datasets.list() == []


def test_data_views_name_file_line_and_field(ctx, tmp_path):
    from webui import data_tab

    stored = ctx.datasets.add(bad_file(tmp_path), "bad.jsonl")
    report = data_tab.show_dataset(ctx, stored.id, "en")
    assert "4 rows: 1 valid, 3 invalid" in report.summary
    frame = report.errors["value"]
    assert list(frame.columns) == ["File", "Line", "Field", "Problem"]
    assert frame.values.tolist()[2] == ["bad.jsonl", 4, "messages[0].role",
                                        "unknown role 'robot'; expected system, user, assistant or tool"]
    assert list(report.preview["OK"]) == ["✓", "✗", "✗", "✗"] and report.page_label == "Page 1 of 1"
    assert report.page == 0 and "**Rows** 1" in report.stats
    # a line that is not JSON shows as written, next to what is wrong with it
    malformed = report.preview.iloc[2]
    assert malformed["Prompt"] == "not json" and "malformed JSON" in malformed["Response"]


def test_preview_pages(ctx):
    from webui import data_tab

    stored = ctx.datasets.add(SAMPLE_SFT, "sample_sft.jsonl")
    frame, label, page = data_tab.turn_page(ctx, stored.id, 0, 1, "en")
    assert label == "Page 2 of 6" and page == 1 and list(frame["Line"]) == list(range(11, 21))
    _, label, page = data_tab.turn_page(ctx, stored.id, 5, 1, "zh")
    assert label == "第 6 / 6 页" and page == 5


def test_preference_preview_shows_chosen_beside_rejected(ctx):
    from webui import data_tab

    stored = ctx.datasets.add(SAMPLE_SFT.with_name("sample_dpo.jsonl"), "sample_dpo.jsonl")
    frame, _, _ = data_tab.turn_page(ctx, stored.id, 1, -1, "en")
    assert list(frame.columns) == ["Line", "OK", "System", "Prompt", "Chosen", "Rejected"]
    first = frame.iloc[0]
    assert first["Prompt"] == "user: What is your name?" and first["Chosen"] == "I am ERNIE Studio's tiny model."
    assert first["Rejected"] == "Paris."


def test_reward_curves_of_a_dpo_job(ctx):
    from webui import jobs_tab, monitor

    job = ctx.store.create_job({"method": "dpo"}, name="pairs")
    lines = [{"step": step, "loss": 0.7 - step / 100, "lr": 1e-3, "reward_chosen": step / 10,
              "reward_rejected": -step / 10, "reward_margin": step / 5, "reward_accuracy": min(1.0, step / 20)}
             for step in (5, 10, 15, 20)] + [{"step": 20, "eval_loss": 0.5, "eval_reward_accuracy": 0.9}]
    job.paths.metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    watch = monitor.new_watch(ctx.store.get_job(job.id))
    frame = monitor.reward_frame(watch)
    accuracy = frame[frame["series"] == "accuracy"].dropna()
    assert list(accuracy["step"]) == [5, 10, 15, 20] and list(accuracy["value"]) == [0.25, 0.5, 0.75, 1.0]
    assert set(frame["series"]) == {"chosen", "rejected", "margin", "accuracy"}
    out = jobs_tab.render(ctx, job.id, None, "en")
    assert out.rewards["visible"] is True and "reward accuracy" in out.stats and "100%" in out.stats
    plain = ctx.store.create_job({"method": "sft"}, name="plain")
    plain.paths.metrics.write_text(json.dumps({"step": 1, "loss": 1.0, "lr": 1e-3}) + "\n")
    assert jobs_tab.render(ctx, plain.id, None, "en").rewards["visible"] is False


def test_add_to_training_data_appends_once(ctx):
    from webui import data_tab
    from webui.form import BY_KEY, StoredNames, from_widget

    stored = ctx.datasets.add(SAMPLE_SFT, "sample_sft.jsonl")
    table, message = data_tab.add_to(ctx, stored.id, None, "train", "en")
    assert from_widget(BY_KEY["data.train"], table, StoredNames(ctx.datasets.list())) == [
        {"path": str(stored.path), "format": "messages", "probability": 1.0}]
    assert shown(message) == "Added sample_sft.jsonl to the training data in the Train tab."
    assert shown(message, "zh").startswith("已将 sample_sft.jsonl")
    skipped, message = data_tab.add_to(ctx, stored.id, table, "train", "en")
    assert skipped == {"__type__": "update"} and "already" in message


def test_token_statistics_come_from_the_trainer_subprocess(workdir, tiny_moe_dir):
    from webui.dataset_store import DatasetStore, count_tokens

    store = DatasetStore(workdir, max_bytes=2**30)
    stored = store.add(SAMPLE_SFT, "sample_sft.jsonl")
    tokens = count_tokens(store, stored, "ernie-4.5-tiny-moe", 32)
    assert tokens["max_seq_len"] == 32 and 0 < tokens["min"] <= tokens["max"]
    assert sum(tokens["histogram"]["counts"]) == 60 and tokens["over_max_seq_len"] > 0
    assert store.meta(stored)["tokens"]["ernie-4.5-tiny-moe|32"] == tokens
    from webui.dataset_store import DatasetError

    with pytest.raises(DatasetError, match="model directory not found"):
        count_tokens(store, stored, "/no/such/model", 32)


def test_the_same_file_uploaded_twice_at_once_is_stored_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from webui.dataset_store import DatasetStore

    store = DatasetStore(tmp_path / "studio", max_bytes=2**30)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: store.add(SAMPLE_SFT, f"copy{i}.jsonl"), range(4)))
    assert len({d.id for d in results}) == 1 and len(store.list()) == 1
    stored = store.list()[0]
    assert stored.path.read_bytes() == SAMPLE_SFT.read_bytes() and stored.ok
    assert sorted(p.name for p in stored.path.parent.iterdir()) == sorted([stored.path.name, "meta.json"])


# -- jobs and export ---------------------------------------------------------------------------------

def test_monitor_reads_only_what_was_appended(ctx):
    from webui import monitor

    job = ctx.store.create_job({"method": "sft"})
    append_metrics(job.job_dir, {"step": 1, "loss": 2.0, "lr": 1e-3, "eta_s": 9})
    job.paths.log.write_text("a\nb\n")
    watch = monitor.new_watch(job)
    assert watch["loss"] == [[1, 2.0]] and watch["log"] == ["a", "b"]
    assert not monitor.read_new_metrics(watch, job) and not monitor.read_new_log(watch, job)
    append_metrics(job.job_dir, {"step": 2, "loss": 1.5, "lr": 9e-4})
    append_metrics(job.job_dir, {"step": 2, "eval_loss": 1.7})
    with open(job.paths.log, "a") as f:
        f.write("c\n")
    assert monitor.read_new_metrics(watch, job) and monitor.read_new_log(watch, job)
    assert watch["loss"] == [[1, 2.0], [2, 1.5]] and watch["eval"] == [[2, 1.7]] and watch["log"][-1] == "c"
    frame = monitor.loss_frame(watch)
    assert frame.dropna().values.tolist() == [[1.0, 2.0, "train"], [2.0, 1.5, "train"], [2.0, 1.7, "eval"]]
    write_status(job.job_dir, state="completed", step=2, total_steps=2, started=time.time() - 5, ended=time.time())
    p = monitor.progress(ctx.store.get_job(job.id), watch)
    assert p["pct"] == 100 and p["eta_s"] == 0 and 4 < p["elapsed_s"] < 7


def test_jobs_view_and_actions(ctx):
    from webui import jobs_tab

    job = ctx.store.create_job({"method": "sft", "model": {"name_or_path": "m"}}, name="one")
    listing, chosen = jobs_tab.list_view(ctx, None, None, "en")
    assert chosen == job.id and listing.table.values.tolist()[0][:2] == ["one", "queued"]
    assert jobs_tab.list_view(ctx, chosen, listing.table_sig, "en")[0].table == {"__type__": "update"}
    out = jobs_tab.render(ctx, job.id, None, "en")
    assert "number 1 in the queue, waiting for cpu" in out.header
    assert "waiting to start" in out.progress
    assert shown(jobs_tab.resume(ctx, job.id)).startswith("Cannot do that: ")
    assert shown(jobs_tab.stop(ctx, job.id)) == f"Stopping {job.id}: it finishes its step and saves a checkpoint."
    assert ctx.store.get_job(job.id).state == "stopped"
    deleted = jobs_tab.delete(ctx, job.id, "en")
    assert ctx.store.list_jobs() == [] and deleted.select["value"] is None


def test_expert_load_heatmap_and_imbalance_of_an_moe_job(ctx):
    from webui import jobs_tab

    job = ctx.store.create_job({"method": "sft"}, name="moe")
    job.paths.metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0, "lr": 1e-3, "expert_imbalance": i}) + "\n"
                                         for s, i in ((5, 3.5), (10, 2.0))))
    job.paths.expert_load.write_text(json.dumps({"step": 10, "layers": [1, 2], "tokens": [[30, 10, 0, 0], [10, 10, 10, 10]],
                                                 "imbalance": [3.0, 1.0]}) + "\n")
    out = jobs_tab.render(ctx, job.id, None, "en")
    heatmap, imbalance = out.experts, out.imbalance
    assert heatmap["visible"] and 'data-step="10"' in heatmap["value"]
    assert "<th>L1</th>" in heatmap["value"] and "75%" in heatmap["value"] and "3.00" in heatmap["value"]
    assert imbalance["visible"] and list(imbalance["value"]["imbalance"]) == [3.5, 2.0]
    dense = ctx.store.create_job({"method": "sft"}, name="dense")
    dense.paths.metrics.write_text(json.dumps({"step": 1, "loss": 1.0, "lr": 1e-3}) + "\n")
    assert jobs_tab.render(ctx, dense.id, None, "en").experts["visible"] is False


def test_a_failed_job_shows_its_error(ctx):
    from webui import jobs_tab

    job = ctx.store.create_job({"method": "sft"}, name="broken")
    error = "the trainer exited with code 1 without reporting a final state; last lines of train.log:\n" \
            "ValueError: data.train[0]: no such file"
    write_status(job.job_dir, state="failed", error=error, started=time.time() - 3, ended=time.time())
    out = jobs_tab.render(ctx, job.id, None, "en")
    assert "**failed**" in out.header
    assert out.error == {"__type__": "update", "value": error, "visible": True}
    assert [b["interactive"] for b in (out.stop, out.resume, out.clone, out.delete)] == [False, False, True, True]


def test_export_output_directory_is_guarded(ctx, tmp_path):
    from webui.exports import ExportError

    job = ctx.store.create_job({"method": "sft"})
    runner = ctx.exports
    assert runner.resolve_output(job.id, "") == job.job_dir / "export"
    assert runner.resolve_output(job.id, "exports/a") == ctx.workdir / "exports" / "a"
    for bad, reason in [(str(ctx.workdir), "holds"), ("/", "holds"), (str(job.paths.output / "x"), "inside"),
                        (str(ROOT), "holds")]:
        with pytest.raises(ExportError, match=reason):
            runner.resolve_output(job.id, bad)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty and is not an earlier export"):
        runner.resolve_output(job.id, str(occupied))
    with pytest.raises(ExportError, match="only a completed job"):
        runner.start(job.id, "")


# -- helpers -----------------------------------------------------------------------------------------

def _default_values(form) -> list:
    from webui.form import BY_KEY, to_widget

    return [to_widget(BY_KEY[key], BY_KEY[key].default) for key in form.keys]
