"""Vision-language fine-tuning in a real browser (Playwright driving Debian's chromium) against
`python app.py`, the issue's path from images to image chat on one studio and one page:

1. the Data tab takes a zip of a small shapes set (trainer/data/shapes.py) and shows thumbnails
   beside its rows and the image statistics; the set goes into the training data;
2. the Train tab shows the Vision-language group for the tiny VL model only (and the VL preset's
   frozen vision transformer and adapter), and starts a one-epoch VL LoRA job on the set;
3. the Jobs tab draws its loss curve and the expert heatmap with text and vision experts apart;
4. the Chat tab, tuned beside base, is shown a shapes image no training saw: the tuned side names
   its colour, the base does not.

The tuned side is the session's VL LoRA example (the `vl_lora_job` fixture, which learns the shapes
set: tests/test_vl_training.py); the short job of step 2 is too short to learn it. The studio only
offers its own jobs' outputs to chat, so that finished job is entered into the studio's job store
before the studio starts (and is trained, when no other test has, before the browser opens).
Screenshots go to tests/artifacts/vl-*.png.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from bench.chat_ui import set_slider
from tests.browser_helpers import chromium, new_page, shot, studio_running, wait_until
from trainer.data.shapes import questions, write_shapes_dataset, zip_dataset
from trainer.jobfiles import COMPLETED, read_status
from trainer.jobs import JobStore

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian's chromium is not installed (make chromium)", allow_module_level=True)

from tests.test_browser_vl_chat import attach, bubbles, images_shown, load, send  # noqa: E402
from tests.test_webui_browser import choose, go, loss_points, set_number, table_rows, wait_loaded, wait_text  # noqa: E402

pytestmark = pytest.mark.timeout(1500)  # the vl_lora_job fixture may train first (minutes)
VL = "ernie-4.5-tiny-vl"
TEXT = "ernie-4.5-tiny-moe"
ROWS = 60
JOB_NAME = "browser-vl"
TUNED_NAME = "vl-lora-example"
# The longest the short job may take here before a wait calls it a hang (well under a minute alone).
JOB_LIMIT_S = 600


@pytest.fixture(scope="module")
def studio(tmp_path_factory, vl_lora_job):
    workdir = tmp_path_factory.mktemp("vl-studio")
    enter_finished_job(JobStore(workdir), vl_lora_job, TUNED_NAME)
    with studio_running(workdir) as server:
        yield server


@pytest.fixture(scope="module")
def page(studio):
    with chromium() as browser:
        pg = new_page(browser)
        pg.goto(studio.url)
        wait_loaded(pg)
        yield pg


@pytest.fixture(autouse=True)
def evidence_on_failure(request, page, studio):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        shot(page, f"vl-FAILED-{request.node.name}")
        print(f"--- end of {studio.log_path} ---\n{studio.log()[-4000:]}")


def checked(pg, key: str) -> bool:
    return pg.locator(f"#cfg-{key.replace('.', '-')} input[type=checkbox]").is_checked()


def open_group(pg, group: str, label: str) -> None:
    """Open a form group's accordion (a click on a closed one's label opens it)."""
    accordion = pg.locator(f"#group-{group}")
    if not accordion.locator(".label-wrap.open").count():
        accordion.get_by_text(label, exact=True).first.click()


def enter_finished_job(store: JobStore, job_dir: Path, name: str) -> None:
    """A job trained outside the studio (`trainer run` into `job_dir`), entered into the store of a
    studio not yet started as the finished job it is: a new row whose directory gets the run's files
    (no app is there to start the row while it is queued)."""
    assert read_status(job_dir)["state"] == COMPLETED
    job = store.create_job(yaml.safe_load((job_dir / "config.yaml").read_text()), name=name)
    shutil.copytree(job_dir, job.job_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    assert store.get_job(job.id).state == COMPLETED


def test_a_zip_of_the_shapes_set_shows_thumbnails_and_image_statistics(page, tmp_path):
    folder = tmp_path / "shapes"
    write_shapes_dataset(folder, ROWS, seed=3)
    archive = zip_dataset(folder, tmp_path / "shapes.zip")
    go(page, "Data")
    with page.expect_file_chooser() as chooser:
        page.locator("#data-upload").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(archive))
    assert f"with {ROWS} image files" in wait_text(page, "#data-status", "image files")
    summary = wait_text(page, "#data-summary", "shapes.jsonl")
    assert f"{ROWS} rows: {ROWS} valid, 0 invalid" in summary

    def thumbnails() -> set[str]:  # the alt texts (line.image) of the thumbnails the browser has drawn
        return set(page.evaluate("[...document.querySelectorAll('#data-preview img')]"
                                 ".filter(img => img.complete && img.naturalWidth > 0).map(img => img.alt)"))

    # each of the page's ten rows shows its image's thumbnail
    wait_until(lambda: len(thumbnails()) >= 10, 120, "the preview's ten thumbnails")
    assert thumbnails() == {f"{line}.1" for line in range(1, 11)}
    assert "What colour is the shape?" in page.locator("#data-preview").text_content()
    stats = wait_text(page, "#data-stats", "Images", timeout_s=300)
    assert f"Images {ROWS} in {ROWS} rows" in stats and "image tokens per row" in stats
    assert "112×112" in stats  # every shapes image is 112 pixels square
    page.locator("#data-preview").scroll_into_view_if_needed()
    shot(page, "vl-01-data-zip-thumbnails")
    page.click("#data-add_train")
    wait_text(page, "#data-status", "Added shapes.jsonl")


def test_the_vl_group_shows_for_vl_models_only_and_a_vl_lora_job_starts(page):
    go(page, "Train")
    group = page.locator("#group-vl")
    assert page.locator("#cfg-model-name_or_path input").input_value() == TEXT
    assert not group.is_visible(), "a text model's form has no vision-language group"
    choose(page, "cfg-model-name_or_path", VL)
    group.wait_for(state="visible")
    choose(page, "cfg-model-name_or_path", TEXT)
    group.wait_for(state="hidden")
    choose(page, "cfg-model-name_or_path", VL)
    group.wait_for(state="visible")
    open_group(page, "vl", "Vision-language")
    # choosing the model applies its sft-lora preset, which freezes the random vision side
    wait_until(lambda: checked(page, "vl.freeze_vision") and checked(page, "vl.freeze_adapter"), 60,
               "the VL preset's frozen vision transformer and adapter")
    assert not checked(page, "vl.freeze_lm")
    wait_text(page, "#train-preset_status", "The form holds preset sft-lora")
    assert table_rows(page, "#cfg-data-train")[0][0] == "shapes.jsonl", "a model's preset keeps the data"

    set_number(page, "cfg-optim-num_train_epochs", 1)
    open_group(page, "logging", "Checkpoints and logging")
    set_number(page, "cfg-logging-logging_steps", 1)
    page.locator("#train-job_name input, #train-job_name textarea").first.fill(JOB_NAME)
    for line in ("num_train_epochs: 1", "logging_steps: 1", "freeze_vision: true", "freeze_adapter: true",
                 f"name_or_path: {VL}"):
        wait_text(page, "#train-config_yaml", line)
    group.scroll_into_view_if_needed()
    shot(page, "vl-02-train-vl-group")
    page.click("#train-start")
    wait_text(page, "#jobs-header", JOB_NAME)


def test_the_job_shows_its_loss_curve_and_text_and_vision_experts_apart(page, studio):
    go(page, "Jobs")
    wait_text(page, "#jobs-header", JOB_NAME)
    wait_until(lambda: loss_points(page) >= 2, JOB_LIMIT_S, "the first loss points")
    page.locator("#jobs-experts .studio-expert-group").first.wait_for(timeout=JOB_LIMIT_S * 1000)
    groups = [h.strip() for h in page.locator("#jobs-experts .studio-expert-group").all_text_contents()]
    assert groups == ["text experts", "vision experts"]
    # the tiny VL model has 4 text and 4 vision experts: a column each, under their group
    assert [h.strip() for h in page.locator("#jobs-experts tr th").all_text_contents()][4:13] == \
        ["", *(f"E{i}" for i in range(8))]
    page.wait_for_function("document.querySelector('#jobs-progress .studio-progress')"
                           "?.getAttribute('data-state') === 'completed'", timeout=JOB_LIMIT_S * 1000)
    job = next(j for j in JobStore(studio.workdir).list_jobs() if j.name == JOB_NAME)
    steps = job.total_steps
    page.wait_for_function("(last) => [...document.querySelectorAll('#jobs-loss [aria-label]')]"
                           ".some(e => e.getAttribute('aria-label').startsWith(`step: ${last};`))", arg=steps)
    assert loss_points(page) >= steps
    assert "completed" in page.locator("#jobs-header").text_content()
    page.locator("#jobs-experts").scroll_into_view_if_needed()
    shot(page, "vl-03-job-curves-and-expert-groups")


def test_chat_with_an_unseen_image_the_tuned_side_answers_and_the_base_does_not(page, tmp_path):
    go(page, "Chat")
    # The list is read again as it opens, and now holds the job finished since the page loaded: its
    # rows move as it redraws, under a click made at once. Open it once first to let it settle.
    page.locator("#chat-model-a input").click()
    page.get_by_role("option", name=re.compile(re.escape(JOB_NAME))).first.wait_for()
    page.mouse.click(5, 5)  # away from the list, which closes
    load(page, "a", TUNED_NAME)
    chosen = page.locator("#chat-model-a input").input_value()
    assert chosen.startswith(TUNED_NAME) and chosen.endswith("output (LoRA adapter)"), chosen
    load(page, "b", VL)
    for side in "ab":
        assert "takes images" in page.locator(f"#chat-status-{side}").text_content()
    page.locator("#chat-settings").get_by_text("System prompt and sampling").click()
    set_slider(page, "chat-temperature", 0)
    set_slider(page, "chat-max-tokens", 8)
    # an image of a seed no training used, and its colour question
    image, question, answer, _ = next(q for q in questions(write_shapes_dataset(tmp_path, rows=4, seed=11))
                                      if q[3] == "colour")
    attach(page, Path(image))
    send(page, question)
    wait_until(lambda: all(bubbles(page, side, "bot") for side in "ab"), 180, "a reply on both sides")
    page.locator("#chat-send").wait_for(state="visible")  # the replies are whole
    for side in "ab":
        assert images_shown(page, side) == 1, f"side {side} shows no image"
    replies = {side: bubbles(page, side, "bot")[-1].strip() for side in "ab"}
    assert replies["a"] == answer, (question, answer, replies)
    assert replies["b"] != answer, (question, answer, replies)
    shot(page, "vl-04-chat-tuned-beside-base")
