"""The studio in a real browser (Playwright driving Debian's chromium) against `python app.py`.

One server and one page walk the user's path in order: upload a good file with the file chooser
and a bad one by drag and drop, switch the language, see a refused Start, keep two tabs' forms
apart, train an SFT-LoRA job on the tiny model while watching it, reload the page and open a second
browser mid-run, restart app.py mid-run, export the finished job, delete it. Screenshots of each
step go to tests/artifacts/.

The tests after the restart use the finished job through the `trained_job` fixture: it is the job
the page trained when that went well, and one the fixture trains through the app's queue when it did
not, so one failure does not fail every test after it. Waits follow what the page or the app
reports; their limits only catch a hang and are generous for a slow, busy machine.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import psutil
import pytest

from plumbing.files import tail_text
from tests.browser_helpers import chromium, new_page, reload_page, shot, studio_running, wait_http, wait_until
from tests.conftest import SAMPLE_SFT
from trainer.jobfiles import COMPLETED, FAILED, STOPPED, read_status
from trainer.jobs import JobStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

JOB_NAME = "browser-lora"
# Long enough to reload the page and restart the app while it runs (on a quiet machine the page shows
# it running again after the restart near step 150), short enough for CI.
MAX_STEPS = 300
# What the page sets on top of the model's sft-lora preset before it starts the job.
JOB_CHANGES = {"optim.max_steps": MAX_STEPS, "data.eval_split": 0.1, "logging.eval_steps": MAX_STEPS // 4}
# The longest a training job may take here before a wait calls it a hang (a few minutes normally).
TRAINING_LIMIT_S = 600
# A test that may have to train the job first (the trained_job fixture) gets time for that too.
may_train = pytest.mark.timeout(3 * TRAINING_LIMIT_S)
BAD_JSONL = "\n".join([
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
    '{"messages": [{"role": "user", "content": "no answer"}]}',
    "not json",
    '{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": ""}]}',
]) + "\n"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_running(tmp_path_factory.mktemp("browser-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page(browser, studio):
    pg = new_page(browser)
    open_studio(pg, studio)
    yield pg
    pg.context.close()


def job_named(store: JobStore, name: str):
    return next((job for job in store.list_jobs() if job.name == name), None)


def fallback_config() -> dict:
    """The config the page builds for JOB_NAME: the default model's sft-lora preset, the sample
    set, and JOB_CHANGES, validated as Start validates it."""
    from models.registry import DEFAULT_MODEL, MODELS
    from trainer.config import from_dict, set_key, to_dict

    config: dict = {"model": {"name_or_path": DEFAULT_MODEL},
                    "data": {"train": [{"path": str(SAMPLE_SFT), "format": "messages"}]}}
    for key, value in {**MODELS[DEFAULT_MODEL].presets["sft-lora"], **JOB_CHANGES}.items():
        set_key(config, key, value)
    return to_dict(from_dict(config))


@pytest.fixture(scope="module")
def trained_job(page, studio):
    """JOB_NAME, completed: the job the page trained, or, when the tests that train it failed or did
    not run, one trained here through the app's queue (the app's scheduler starts it)."""
    restarted = not studio.running
    if restarted:  # the restart test may have left the app down
        studio.start()
    store = JobStore(studio.workdir)

    def finished(job_id: str):
        job = store.refresh(job_id)
        return job.state in (COMPLETED, FAILED, STOPPED) and job

    job = job_named(store, JOB_NAME)
    if job is not None:  # a test failed while the job was queued or training: it still finishes
        job = wait_until(lambda: finished(job.id), TRAINING_LIMIT_S, f"job {JOB_NAME} to finish")
    if job is None or job.state != COMPLETED:
        for leftover in [j for j in store.list_jobs() if j.name == JOB_NAME]:
            store.delete_job(leftover.id)
        job = store.create_job(fallback_config(), name=JOB_NAME)
        job = wait_until(lambda: finished(job.id), TRAINING_LIMIT_S, f"the app to train job {JOB_NAME}")
        assert job.state == COMPLETED, f"{job.error}\n{tail_text(job.paths.log, max_lines=40)}"
    # a page whose app was restarted here reloads itself at some point; a failed test may have left
    # an error page: either way, a fresh page
    if restarted or page.locator("#data-upload").count() == 0:
        reload_page(page, studio.url)
        wait_loaded(page)
    return job


@pytest.fixture(autouse=True)
def evidence_on_failure(request, page, studio):
    """When a test fails, keep a screenshot of the page and print the end of the server's log."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        shot(page, f"FAILED-{request.node.name}")
        print(f"--- end of {studio.log_path} ---\n{studio.log()[-4000:]}")


def open_studio(pg, studio) -> None:
    pg.goto(studio.url)
    wait_loaded(pg)


def wait_loaded(pg) -> None:
    """Until the page-load handler has filled the page: the dataset list has its columns (before,
    it shows Gradio's placeholder ones) and, when it chose a dataset, that dataset's report is shown.
    Acting earlier would race the handler, which sets the language, the lists and the report."""
    from webui.i18n import LANGUAGES, t

    headers = [t("msg-col-uploaded", lang) for lang in LANGUAGES]
    pg.wait_for_function(
        """(headers) => {
            const list = document.querySelector('#data-list');
            if (!list || !headers.some(h => list.textContent.includes(h))) return false;
            const chosen = document.querySelector('#data-select input')?.value;
            const report = document.querySelector('#data-summary [data-testid=markdown]');
            return !chosen || (report && report.textContent.trim() !== '');
        }""", arg=headers, timeout=120_000)


def go(pg, tab: str) -> None:
    # a page that is not in front may have its timers throttled, and the monitor ticks on a timer
    pg.bring_to_front()
    button = pg.get_by_role("tab", name=tab)
    button.click()
    # a tab's content is drawn when the tab is chosen; its panel shows once it is
    pg.locator("#" + button.get_attribute("aria-controls")).wait_for(state="visible")


def wait_text(pg, selector: str, text: str, timeout_s: float = 60) -> str:
    """Wait until the element's text contains `text`; return the text it had then (read in the same
    look: Gradio may redraw the element between two reads)."""
    found = pg.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel);"
        " return e && e.textContent.includes(text) ? e.textContent : null; }",
        arg=[selector, text], timeout=timeout_s * 1000)
    return found.json_value()


def set_number(pg, key_id: str, value) -> None:
    box = pg.locator(f"#{key_id} input")
    box.fill(str(value))
    box.press("Tab")


def set_slider(pg, slider_id: str, value: str) -> None:
    """Move a slider to `value` until its number box shows it: a slider drawn a moment ago (an
    accordion just opened) can still take its initial value over one set right away."""
    slider = pg.locator(f"#{slider_id} input[type=range]")
    slider.wait_for(state="visible")

    looks = []

    def kept_value() -> bool:  # shown at two looks in a row, so no late initial value undid it
        looks.append(pg.locator(f"#{slider_id} input[type=number]").input_value() == value)
        if not looks[-1]:
            slider.fill(value)
        return looks[-2:] == [True, True]

    wait_until(kept_value, 60, f"{slider_id} to read {value}", interval_s=0.5)


def choose(pg, dropdown_id: str, option: str) -> None:
    pg.locator(f"#{dropdown_id} input").click()
    pg.get_by_role("option", name=re.compile(re.escape(option))).first.click()


def loss_points(pg) -> int:
    """Points drawn on the loss curve: the plot labels every point it draws."""
    return pg.evaluate("[...document.querySelectorAll('#jobs-loss [aria-label]')]"
                       ".filter(e => e.getAttribute('aria-label').startsWith('step: ')).length")


def progress(pg) -> tuple[str, float]:
    el = pg.locator("#jobs-progress .studio-progress")
    if el.count() == 0:
        return "", 0.0
    return el.get_attribute("data-state") or "", float(el.get_attribute("data-pct") or 0)


def table_rows(pg, selector: str) -> list[list[str]]:
    """The cells of a table's body rows, as shown."""
    return pg.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' div[role=row]')].map(
            row => [...row.querySelectorAll('[role=gridcell]')].map(cell => cell.textContent.trim()))""", selector)


def shown_text(props: dict) -> str:
    """The start of the text a catalogue entry puts on the page, without markdown marks or fields."""
    text = props.get("label") or props["value"]
    text = re.sub(r"^#+\s*", "", text.split("{")[0].split("\n")[-1 if text.startswith("#") else 0])
    return text.replace("`", "")[:12]


def drop_file(pg, selector: str, name: str, content: bytes) -> None:
    """Drag and drop a file onto an element, as a desktop file manager does."""
    data = pg.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "application/jsonl"}));
            return dt;
        }""", [name, base64.b64encode(content).decode()])
    for event in ("dragenter", "dragover", "drop"):
        pg.dispatch_event(selector, event, {"dataTransfer": data})


# -- data --------------------------------------------------------------------------------------------

def test_upload_good_file_with_the_file_chooser_shows_preview_and_statistics(page):
    with page.expect_file_chooser() as chooser:
        page.locator("#data-upload").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(SAMPLE_SFT))
    summary = wait_text(page, "#data-summary", "sample_sft.jsonl")
    assert "format messages" in summary and "60 rows: 60 valid, 0 invalid" in summary
    assert "What is your name?" in wait_text(page, "#data-preview", "What is your name?")
    assert "Page 1 of 6" in page.locator("#data-page").text_content()
    # token counts come from a `trainer data check` subprocess, which loads the tokenizer
    stats = wait_text(page, "#data-stats", "Tokens per row", timeout_s=300)
    assert "**" not in stats and "Rows 60" in stats
    page.wait_for_function("[...document.querySelectorAll('#data-histogram [aria-label]')]"
                           ".some(e => e.getAttribute('aria-label').startsWith('tokens: '))")
    shot(page, "01-data-good-file")
    page.click("#data-next")
    wait_text(page, "#data-page", "Page 2 of 6")
    assert "sample_sft.jsonl" in page.locator("#data-list").text_content()


def test_upload_bad_file_by_drag_and_drop_shows_line_numbered_errors(page):
    drop_file(page, "#data-upload button", "bad.jsonl", BAD_JSONL.encode())
    summary = wait_text(page, "#data-summary", "bad.jsonl")
    assert "4 rows: 1 valid, 3 invalid" in summary
    page.locator("#data-errors").wait_for(state="visible")
    rows = table_rows(page, "#data-errors")
    assert [row[:3] for row in rows] == [["bad.jsonl", "2", "messages"], ["bad.jsonl", "3", ""],
                                         ["bad.jsonl", "4", "messages[0].role"],
                                         ["bad.jsonl", "4", "messages[1].content"]]
    assert "must end with an assistant turn" in rows[0][3] and "malformed JSON" in rows[1][3]
    assert "unknown role 'robot'" in rows[2][3] and rows[3][3] == "empty assistant turn"
    shot(page, "02-data-bad-file")


# -- language ----------------------------------------------------------------------------------------

def test_language_switch_relabels_everything(page):
    from webui.i18n import CATALOGUE

    page.get_by_text("中文", exact=True).click()
    for tab in ("数据", "训练", "任务", "导出"):
        page.get_by_role("tab", name=tab).wait_for()
    wait_text(page, "#data-summary", "格式")
    go(page, "训练")
    missing = page.evaluate(
        """(entries) => entries.filter(([id, text]) => {
            const e = document.getElementById(id);
            return e && !e.textContent.includes(text);
        }).map(([id]) => id)""",
        [[key, shown_text(entry["zh"])] for key, entry in CATALOGUE.items() if not key.startswith(("msg-", "tab-"))])
    assert missing == []
    assert page.locator("#cfg-optim-learning_rate").get_by_text("学习率", exact=True).count() == 1
    assert "文件" in page.locator("#cfg-data-train").text_content()
    shot(page, "03-language-zh")
    page.get_by_text("English", exact=True).click()
    page.get_by_role("tab", name="Train").wait_for()
    wait_text(page, "#cfg-optim-learning_rate", "Learning rate")


# -- train form --------------------------------------------------------------------------------------

def test_start_without_data_shows_the_problem_next_to_its_field(page):
    go(page, "Train")
    page.click("#train-start")
    error = page.locator("#cfg-data-train-error")
    error.wait_for(state="visible")
    assert "data.train: needs at least one file" in error.text_content()
    assert "nothing was started" in page.locator("#train-problems").text_content()
    shot(page, "04-train-refused")


def test_two_tabs_keep_their_own_form(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    first, second = context.new_page(), context.new_page()
    for pg, rate in ((first, "0.0042"), (second, "0.0007")):
        open_studio(pg, studio)
        go(pg, "Train")
        set_number(pg, "cfg-optim-learning_rate", rate)
    for pg, rate in ((first, "0.0042"), (second, "0.0007")):
        assert pg.locator("#cfg-optim-learning_rate input").input_value() == rate
    # the preview is each tab's own: it shows that tab's value only
    wait_text(first, "#train-config_yaml", "learning_rate: 0.0042")
    wait_text(second, "#train-config_yaml", "learning_rate: 0.0007")
    shot(first, "05-two-tabs-first")
    context.close()


def test_moe_options_are_in_the_form_for_moe_models_only(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    open_studio(pg, studio)
    go(pg, "Train")
    group = pg.locator("#group-moe")
    assert group.is_visible(), "the default model is an MoE model"
    group.get_by_text("Mixture of experts", exact=True).first.click()
    pg.locator("#group-moe-advanced").get_by_text("Mixture of experts: advanced").first.click()
    choose(pg, "cfg-moe-train_experts", "shared")
    wait_text(pg, "#train-config_yaml", "train_experts: shared")
    shot(pg, "15-moe-options")
    choose(pg, "cfg-model-name_or_path", "ernie-4.5-tiny-dense")
    group.wait_for(state="hidden")
    context.close()


# -- a job, watched ----------------------------------------------------------------------------------

@pytest.mark.timeout(2 * TRAINING_LIMIT_S)
def test_sft_lora_job_is_watched_live_and_a_reload_shows_it_again(page, browser, studio):
    go(page, "Data")
    choose(page, "data-select", "sample_sft.jsonl")
    wait_text(page, "#data-summary", "sample_sft.jsonl")
    page.click("#data-add_train")
    wait_text(page, "#data-status", "Added sample_sft.jsonl")
    go(page, "Train")
    page.click("#train-apply_preset")
    wait_text(page, "#train-io_status", "Applied preset sft-lora")
    set_number(page, "cfg-optim-max_steps", MAX_STEPS)
    set_number(page, "cfg-data-eval_split", 0.1)
    page.locator("#group-logging").get_by_text("Checkpoints and logging").click()
    set_number(page, "cfg-logging-eval_steps", MAX_STEPS // 4)
    page.locator("#train-job_name input, #train-job_name textarea").first.fill(JOB_NAME)
    wait_text(page, "#train-config_yaml", f"max_steps: {MAX_STEPS}")
    page.click("#train-start")

    # Start switches to the Jobs tab and shows the new job.
    wait_text(page, "#jobs-header", JOB_NAME)
    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'running'", timeout=300_000)
    first = wait_until(lambda: loss_points(page) >= 3 and loss_points(page), 300, "the first loss points")
    grown = wait_until(lambda: loss_points(page) >= first + 5 and loss_points(page), 180, "the loss curve to grow")
    state, pct = progress(page)
    assert state == "running" and 0 < pct < 100
    assert "ETA" in page.locator("#jobs-progress").text_content()
    stats = page.locator("#jobs-stats").text_content()
    assert "tokens/s" in stats and "CPU" in stats and "RAM" in stats
    page.locator("#jobs-experts table").wait_for(state="visible")
    assert [h.strip() for h in page.locator("#jobs-experts tr th").all_text_contents()][:4] == ["", "E0", "E1", "E2"]
    heat_step = int(page.locator("#jobs-experts .studio-experts").get_attribute("data-step"))
    page.wait_for_function("(s) => +document.querySelector('#jobs-experts .studio-experts')"
                           "?.getAttribute('data-step') > s", arg=heat_step, timeout=180_000)
    shot(page, "06-job-running")

    reload_page(page, studio.url)
    wait_loaded(page)
    go(page, "Jobs")
    wait_text(page, "#jobs-header", JOB_NAME)
    assert "running" in page.locator("#jobs-header").text_content()
    after = wait_until(lambda: loss_points(page) > grown and loss_points(page), 180, "the curve after the reload")
    wait_until(lambda: loss_points(page) > after, 180, "the curve to keep growing after the reload")
    assert page.locator("#jobs-stop").is_enabled()
    shot(page, "07-job-after-reload")

    # A second browser (its own session) sees the same running job.
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = other.new_page()
    open_studio(pg, studio)
    go(pg, "Jobs")
    wait_text(pg, "#jobs-header", JOB_NAME)
    assert "running" in pg.locator("#jobs-header").text_content()
    other.close()


@pytest.mark.timeout(2 * TRAINING_LIMIT_S)
def test_running_job_survives_an_app_restart(page, studio):
    store = JobStore(studio.workdir)
    job = job_named(store, JOB_NAME)
    assert job is not None, "needs the job test_sft_lora_job_is_watched_live_... starts"
    assert job.state == "running", f"the job is {job.state} already; raise MAX_STEPS"
    launcher = read_status(job.job_dir)["launcher_pid"]

    studio.stop()
    assert psutil.pid_exists(launcher) and read_status(job.job_dir)["state"] == "running"
    step_while_down = read_status(job.job_dir).get("step") or 0
    studio.start()

    # The restarted app must answer before the page is reloaded; the page may also reload itself
    # when it finds the app again, which reload_page survives.
    wait_http(studio.url + "config")
    reload_page(page, studio.url)
    wait_loaded(page)
    go(page, "Jobs")
    wait_text(page, "#jobs-header", JOB_NAME)
    assert "running" in page.locator("#jobs-header").text_content()
    wait_until(lambda: loss_points(page) >= step_while_down, 180, "the curve to show the steps trained before")
    shot(page, "08-job-after-app-restart")

    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'completed'", timeout=TRAINING_LIMIT_S * 1000)
    state, pct = progress(page)
    assert state == "completed" and pct == 100
    page.wait_for_function("(last) => [...document.querySelectorAll('#jobs-loss [aria-label]')]"
                           ".some(e => e.getAttribute('aria-label').startsWith(`step: ${last};`))", arg=MAX_STEPS)
    assert loss_points(page) >= MAX_STEPS
    eval_points = page.evaluate("[...document.querySelectorAll('#jobs-loss [aria-label]')]"
                                ".filter(e => e.getAttribute('aria-label').endsWith('series: eval')).length")
    assert eval_points >= 4
    assert "completed" in wait_text(page, "#jobs-header", "completed")
    assert "[studio] job completed" in wait_text(page, "#jobs-log", "[studio] job completed")
    shot(page, "09-job-completed")


@may_train
def test_export_merges_the_finished_job_and_shows_where_and_how_big(page, trained_job):
    go(page, "Export")
    # choosing the tab lists the completed jobs again (the job may have finished since the page loaded)
    wait_until(lambda: page.locator("#export-job input").input_value(), 60, "the Export tab to list a job")
    choose(page, "export-job", f"{JOB_NAME} · {trained_job.id}")
    # the tab's own refresh of its list, answered late on a busy machine, can set the choice back:
    # the job must stay chosen for two looks in a row before Start reads it
    looks = []
    wait_until(lambda: looks.append(trained_job.id in page.locator("#export-job input").input_value())
               or looks[-2:] == [True, True], 60, "the finished job to stay chosen")
    page.click("#export-start")
    status = wait_text(page, "#export-status", "Exported to", timeout_s=600)
    match = re.search(r"Exported to (\S+) \(([\d.]+ [KMG]?B)\)", status)
    assert match, status
    out = Path(match.group(1))
    assert out.is_dir() and (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert out.parent.name.startswith(time.strftime("%Y")) and out.name == "export"
    shot(page, "10-export-done")


def chat_replies(pg, side: str) -> list[str]:
    """The texts of a chatbot's assistant replies, in order."""
    return pg.evaluate("(id) => [...document.querySelectorAll(`#${id} .bot .message-content`)]"
                       ".map(e => e.textContent.trim())", f"chat-bot-{side}")


@may_train
def test_chat_with_the_tuned_model_beside_the_base(page, trained_job):
    conversations = [json.loads(line)["messages"] for line in SAMPLE_SFT.read_text(encoding="utf-8").splitlines()]
    singles = [c for c in conversations if len(c) == 2][:5]
    job_dir = trained_job.job_dir
    go(page, "Chat")
    choose(page, "chat-model-a", f"{JOB_NAME}")
    page.click("#chat-load-a")
    # a model server is a process of its own that imports paddle before it loads the model
    wait_text(page, "#chat-status-a", "Loaded", timeout_s=300)
    choose(page, "chat-model-b", "ernie-4.5-tiny-moe")
    page.click("#chat-load-b")
    wait_text(page, "#chat-status-b", "Loaded", timeout_s=300)
    assert page.locator("#chat-model-a input").input_value().endswith("output (LoRA adapter)")
    page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
    set_slider(page, "chat-temperature", "0")
    # room for every trained answer (17 tokens at most, its end included); the base never stops and
    # would otherwise stream the default 256 tokens each turn
    set_slider(page, "chat-max-tokens", "48")

    trained = 0
    for turn, conversation in enumerate(singles, 1):
        page.locator("#chat-input textarea").fill(conversation[0]["content"])
        page.click("#chat-send")
        wait_until(lambda: len(chat_replies(page, "a")) >= turn and len(chat_replies(page, "b")) >= turn, 180,
                   f"both replies to prompt {turn}")
        page.locator("#chat-send").wait_for(state="visible")  # it is back when the replies are whole
        tuned, base = chat_replies(page, "a")[turn - 1], chat_replies(page, "b")[turn - 1]
        assert base != conversation[1]["content"]
        trained += tuned == conversation[1]["content"]
        page.click("#chat-clear")
        wait_until(lambda: not chat_replies(page, "a"), 60, "the conversations to clear")
        if trained:
            page.locator("#chat-input textarea").fill(conversation[0]["content"])
            page.click("#chat-send")
            wait_until(lambda: chat_replies(page, "a") and chat_replies(page, "b"), 180, "the replies again")
            page.locator("#chat-send").wait_for(state="visible")
            shot(page, "12-chat-side-by-side")
            break
    assert trained, "the tuned model gave none of the trained answers"

    servers = [p for p in psutil.process_iter(["cmdline"]) if "models.serve" in " ".join(p.info["cmdline"] or [])
               and str(job_dir / "output") in " ".join(p.info["cmdline"] or [])]
    assert len(servers) == 1
    page.click("#chat-unload-a")
    wait_text(page, "#chat-status-a", "Not loaded")
    servers[0].wait(timeout=120)
    assert not servers[0].is_running()


@may_train
def test_a_quantized_export_shows_its_quality_and_chats_with_the_trained_answer(page, trained_job):
    conversations = [json.loads(line)["messages"] for line in SAMPLE_SFT.read_text(encoding="utf-8").splitlines()]
    singles = [c for c in conversations if len(c) == 2][:5]
    go(page, "Export")
    wait_until(lambda: page.locator("#export-job input").input_value(), 60, "the Export tab to list a job")
    choose(page, "export-job", f"{JOB_NAME} · {trained_job.id}")
    page.locator("#export-quant input").click()
    page.get_by_role("option", name="wint4/8", exact=True).click()  # choose() cannot: "/" breaks the regex
    page.click("#export-start")
    out = trained_job.job_dir / "export-wint4-8"
    wait_text(page, "#export-status", f"Exported to {out}", timeout_s=600)
    # measured on the rows the job held out (data.eval_split 0.1 of the 60 sample rows)
    quality = wait_text(page, "#export-quality", "wint4/8 (exported)")
    assert "6 rows the job held out" in quality and "full precision (float32)" in quality
    cells = page.evaluate("[...document.querySelectorAll('#export-quality [lang=en] table tr')]"
                          ".map(r => [...r.children].map(c => c.textContent.trim()))")
    assert [row[0] for row in cells] == ["weights", "full precision (float32)", "wint4/8 (exported)"]
    assert re.fullmatch(r"[+-]\d+\.\d+%", cells[2][2]) and re.fullmatch(r"\d of 6 \(\d+%\)", cells[2][3]), cells
    # FastDeploy is pointed at the full-precision export (the test before writes it), and quantizes it
    # itself; the note says when that export is not there yet
    command = wait_text(page, "#export-serve", "--quantization wint4")
    assert f"--model {trained_job.job_dir / 'export'} " in command
    missing = "holds no export yet" in page.locator("#export-serve_note").text_content()
    assert missing == (not (trained_job.job_dir / "export").is_dir())
    shot(page, "12-export-quantized")

    go(page, "Chat")
    if page.locator("#chat-status-b").text_content().find("Loaded") >= 0:
        page.click("#chat-unload-b")  # the base beside it would only slow each turn down
        wait_text(page, "#chat-status-b", "Not loaded")
    page.locator("#chat-model-a input").click()
    page.get_by_role("option", name=re.compile(r"export \(merged, wint4\/8\)")).click()
    page.click("#chat-load-a")
    wait_text(page, "#chat-status-a", "Loaded", timeout_s=300)
    if not page.locator("#chat-temperature").is_visible():
        page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
    set_slider(page, "chat-temperature", "0")
    set_slider(page, "chat-max-tokens", "48")
    trained = 0
    for turn, conversation in enumerate(singles, 1):
        page.locator("#chat-input textarea").fill(conversation[0]["content"])
        page.click("#chat-send")
        wait_until(lambda: len(chat_replies(page, "a")) >= turn, 180, f"the reply to prompt {turn}")
        page.locator("#chat-send").wait_for(state="visible")
        trained += chat_replies(page, "a")[turn - 1] == conversation[1]["content"]
        if trained:
            break
    shot(page, "12-chat-quantized-export")
    assert trained, "the wint4/8 export gave none of the trained answers"
    page.click("#chat-clear")
    page.click("#chat-unload-a")
    wait_text(page, "#chat-status-a", "Not loaded")


@may_train
def test_clone_puts_the_job_config_back_into_the_form(page, trained_job):
    go(page, "Jobs")
    choose(page, "jobs-select", JOB_NAME)
    wait_text(page, "#jobs-header", JOB_NAME)
    page.click("#jobs-clone")
    wait_text(page, "#train-io_status", "Loaded the config of job")
    assert page.locator("#cfg-optim-max_steps input").input_value() == str(MAX_STEPS)
    assert "sample_sft.jsonl" in page.locator("#cfg-data-train").text_content()
    wait_text(page, "#train-config_yaml", f"max_steps: {MAX_STEPS}")


@may_train
def test_delete_asks_first_and_removes_the_job(page, trained_job):
    go(page, "Jobs")
    choose(page, "jobs-select", JOB_NAME)
    wait_text(page, "#jobs-header", JOB_NAME)
    job_dir = trained_job.job_dir
    page.click("#jobs-delete")
    question = wait_text(page, "#jobs-delete_question", "Delete job")
    assert JOB_NAME in question
    shot(page, "11-delete-asks")
    page.click("#jobs-delete_cancel")
    page.locator("#jobs-delete_confirm").wait_for(state="hidden")
    assert job_dir.exists()
    page.click("#jobs-delete")
    page.click("#jobs-delete_confirm")
    wait_text(page, "#jobs-action_status", "Deleted job")
    assert not job_dir.exists()
    wait_text(page, "#jobs-header", "No jobs yet")


# -- preference tuning -------------------------------------------------------------------------------

@pytest.mark.timeout(2 * TRAINING_LIMIT_S)
def test_a_dpo_job_from_upload_to_its_reward_curves(page, studio):
    reload_page(page, studio.url)  # a fresh session: an empty form
    wait_loaded(page)
    go(page, "Data")
    with page.expect_file_chooser() as chooser:
        page.locator("#data-upload").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(SAMPLE_SFT.with_name("sample_dpo.jsonl")))
    summary = wait_text(page, "#data-summary", "sample_dpo.jsonl")
    assert "format messages_dpo" in summary and "60 rows: 60 valid, 0 invalid" in summary
    wait_text(page, "#data-preview", "Rejected")
    headers = page.evaluate("[...document.querySelectorAll('#data-preview th')].map(e => e.textContent.trim())")
    assert any("Chosen" in h for h in headers) and any("Rejected" in h for h in headers)
    assert "北京。" in page.locator("#data-preview").text_content()
    shot(page, "13-data-preference-pairs")
    page.click("#data-add_train")
    wait_text(page, "#data-status", "Added sample_dpo.jsonl")

    go(page, "Train")
    choose(page, "train-preset", "dpo-lora")
    page.click("#train-apply_preset")
    wait_text(page, "#train-io_status", "Applied preset dpo-lora")
    # one metrics line a step: 16 points on each curve, the first step's accuracy 0 (the policy is
    # still its reference)
    set_number(page, "cfg-optim-max_steps", 16)
    page.locator("#train-job_name input, #train-job_name textarea").first.fill("browser-dpo")
    wait_text(page, "#train-config_yaml", "method: dpo")
    page.click("#train-start")

    wait_text(page, "#jobs-header", "browser-dpo")
    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'completed'", timeout=TRAINING_LIMIT_S * 1000)
    page.locator("#jobs-rewards").wait_for(state="visible")
    page.wait_for_function("[...document.querySelectorAll('#jobs-rewards [aria-label]')]"
                           ".filter(e => e.getAttribute('aria-label').includes('series: accuracy')).length >= 8")
    assert "reward accuracy" in page.locator("#jobs-stats").text_content().lower()
    job = next(j for j in JobStore(studio.workdir).list_jobs() if j.name == "browser-dpo")
    metrics = [json.loads(line) for line in job.paths.metrics.read_text().splitlines()]
    assert metrics[-1]["reward_accuracy"] > metrics[0]["reward_accuracy"]
    shot(page, "14-dpo-reward-curves")
