"""Hub downloads (models/hub.py, `python -m trainer model download`, the Train tab's Download) against
a Hugging Face hub served on 127.0.0.1 by tests/fake_hub.py, through the real huggingface_hub client:
progress, a connection dropped mid-file, a stopped download continued, no network, and a downloaded
repo id that validates, loads and is listed like any local checkpoint."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models import hub
from tests.conftest import ROOT
from tests.fake_hub import FakeHub

REPO = "studio-test/tiny-dense"
PADDING = "extra/padding.bin"
MIB = 2**20
# huggingface_hub 1.33 writes what arrives in 10 MiB pieces: a break after 12 MiB leaves one on disk.
BREAK_AT = 12 * MIB


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory, tiny_dense_dir) -> Path:
    """The tiny dense checkpoint as a hub repository, with a 24 MiB file in a subfolder (big enough
    for the client to write part of it before a break)."""
    folder = tmp_path_factory.mktemp("hub-repo")
    for path in tiny_dense_dir.iterdir():
        if path.is_file():
            shutil.copy(path, folder / path.name)
    (folder / "extra").mkdir()
    (folder / PADDING).write_bytes(random.Random(0).randbytes(24 * MIB))
    return folder


@pytest.fixture
def env(tmp_path) -> dict:
    """The environment of a download: its own HF_HOME, nothing inherited that points elsewhere."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**clean, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DOWNLOAD_TIMEOUT": "60"}


def cli(endpoint: str, workdir: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "model", "download", REPO, "--workdir", str(workdir),
                           *extra], cwd=ROOT, env={**env, "HF_ENDPOINT": endpoint}, capture_output=True, text=True,
                          timeout=180)


def validate(workdir: Path, model: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "config", "validate", "examples/tiny_sft_lora.yaml",
                           f"model.name_or_path={model}"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "ERNIE_STUDIO_HOME": str(workdir)})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_paths(requests) -> list[str]:
    return [r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in requests if "/resolve/" in r.path]


def test_repo_ids_and_where_they_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.is_repo_id("baidu/ERNIE-4.5-0.3B-Paddle")
    assert not hub.is_repo_id("ernie-4.5-tiny-moe")  # a built-in name
    for name in ("/abs/path", "./a/b", "a/b/c", "a/../b", "", None, "owner/"):
        assert not hub.is_repo_id(name), name
    (tmp_path / "runs" / "lora").mkdir(parents=True)
    assert not hub.is_repo_id("runs/lora")  # a directory that exists is a path
    assert hub.model_dir(tmp_path, "baidu/X") == tmp_path / "models" / "baidu" / "X"

    # a checkpoint copied into place by hand counts; one whose download is under way or failed does not
    manual = hub.model_dir(tmp_path, "someone/manual")
    manual.mkdir(parents=True)
    (manual / "config.json").write_text("{}")
    partial = hub.model_dir(tmp_path, "someone/partial")
    (partial / hub.STATE_DIR).mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    hub.state_file(tmp_path, "someone/partial").write_text('{"state": "failed", "error": "connection lost"}')
    assert hub.downloaded_models(tmp_path) == ["someone/manual"]
    assert "did not finish (connection lost)" in hub.not_downloaded("someone/partial", tmp_path)
    assert hub.not_downloaded("someone/manual", tmp_path) is None
    assert hub.not_downloaded("ernie-4.5-tiny-moe", tmp_path) is None
    message = hub.not_downloaded("baidu/ERNIE-4.5-0.3B-Paddle", tmp_path)
    assert "press Download" in message and "python -m trainer model download baidu/ERNIE-4.5-0.3B-Paddle" in message

    from models.checkpoints import ModelNotFound
    from models.registry import resolve_model_dir

    assert resolve_model_dir("someone/manual", tmp_path) == manual
    with pytest.raises(ModelNotFound, match="not downloaded yet"):
        resolve_model_dir("baidu/ERNIE-4.5-0.3B-Paddle", tmp_path)
    with pytest.raises(hub.HubError, match="not a hub repo id"):
        hub.download("no-slash", tmp_path)
    with pytest.raises(hub.HubError, match="unknown hub"):
        hub.download("a/b", tmp_path, hub="github")


def test_download_shows_progress_survives_a_dropped_connection_then_validates_and_loads(
        repo_folder, tmp_path, env):
    fake = FakeHub.from_folder(REPO, repo_folder, bytes_per_s=12e6)
    fake.drop_once[PADDING] = BREAK_AT  # the server closes the connection mid-file, once
    url = fake.start()
    workdir = tmp_path / "studio"
    try:
        refused = validate(workdir, REPO)
        result = cli(url, workdir, env)
    finally:
        fake.stop()
    assert refused.returncode == 1
    assert "not downloaded yet" in refused.stderr and f"python -m trainer model download {REPO}" in refused.stderr
    assert result.returncode == 0, result.stdout + result.stderr

    target = workdir / "models" / "studio-test" / "tiny-dense"
    lines = result.stdout.splitlines()
    assert lines[-1] == str(target)
    shares = [float(m.group(1)) for line in lines if (m := re.match(r"\[download\]\s+([\d.]+)%", line))]
    assert any(0 < share < 100 for share in shares) and shares[-1] == 100.0 and shares == sorted(shares), lines
    for name, data in fake.files.items():
        assert (target / name).read_bytes() == data, name

    # The client picked the broken file up where its last written piece ended, with a range request,
    # and fetched every other file once.
    first, again = fake.gets(PADDING)
    assert first.range is None and again.range.startswith("bytes=")
    assert 0 < int(again.range[len("bytes="):-1]) <= BREAK_AT
    assert all(len(fake.gets(name)) == 1 for name in fake.files if name != PADDING)
    state = hub.read_state(workdir, REPO)
    assert state["state"] == hub.DONE and state["files_done"] == state["files_total"] == len(fake.files)
    assert state["bytes_done"] == state["bytes_total"] == sum(len(d) for d in fake.files.values())

    accepted = validate(workdir, REPO)
    assert accepted.returncode == 0, accepted.stderr
    from models.loader import load_checkpoint

    model, tokenizer = load_checkpoint(REPO, workdir=workdir)
    assert model.config.model_type == "ernie4_5" and tokenizer("hello")["input_ids"]


def test_a_stopped_download_continues_without_fetching_finished_files_again(repo_folder, tmp_path, env):
    fake = FakeHub.from_folder(REPO, repo_folder)
    fake.stall_once[PADDING] = BREAK_AT  # the server stops sending mid-file until released
    url = fake.start()
    workdir = tmp_path / "studio"
    target = hub.model_dir(workdir, REPO)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "trainer", "model", "download", REPO, "--workdir",
                                 str(workdir)], cwd=ROOT, env={**env, "HF_ENDPOINT": url}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert fake.stalled.wait(120), "the download never reached the big file"
        deadline = time.monotonic() + 60

        def under_way(state: dict) -> bool:  # the other files, fetched beside the big one, may end later
            return state.get("bytes_done", 0) < 10 * MIB or state.get("files_done") != len(fake.files) - 1

        while under_way(hub.read_state(workdir, REPO)) and time.monotonic() < deadline:
            time.sleep(0.1)
        state = hub.read_state(workdir, REPO)
        assert state["state"] == hub.DOWNLOADING and state["files_done"] == len(fake.files) - 1, state
        assert "is being downloaded" in hub.not_downloaded(REPO, workdir)

        proc.send_signal(signal.SIGTERM)  # what the Train tab's Stop does
        _, err = proc.communicate(timeout=60)
        fake.release.set()
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert hub.read_state(workdir, REPO)["error"] == "stopped (SIGTERM)"
        assert "did not finish (stopped (SIGTERM))" in validate(workdir, REPO).stderr
        assert sum(p.stat().st_size for p in target.rglob("*.incomplete")) >= 10 * MIB

        before = len(fake.requests)
        result = cli(url, workdir, env)
        second = fake.requests[before:]
    finally:
        fake.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    # Finished files are neither asked about nor fetched again; the file that was under way starts
    # over (huggingface_hub 1.33 never reuses another process's partial file), and that leftover is gone.
    assert set(resolve_paths(second)) == {PADDING}
    assert not list(target.rglob("*.incomplete"))
    for name, data in fake.files.items():
        assert (target / name).read_bytes() == data, name
    assert hub.read_state(workdir, REPO)["state"] == hub.DONE


def test_without_network_the_download_fails_at_once_and_says_what_to_do(tmp_path, env, monkeypatch):
    workdir = tmp_path / "studio"
    port = closed_port()
    started = time.monotonic()
    result = cli(f"http://127.0.0.1:{port}", workdir, env)
    print(f"no network: failed in {time.monotonic() - started:.1f} s (process start included)")
    assert result.returncode == 1
    assert f"cannot reach Hugging Face at http://127.0.0.1:{port}" in result.stderr
    assert "HF_ENDPOINT" in result.stderr and "local directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert "did not finish (cannot reach Hugging Face" in hub.not_downloaded(REPO, workdir)

    # A host that takes the connection and drops it: one attempt per request, no retry loop.
    accepted = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def drop_all():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    try:
        dropped = cli(f"http://127.0.0.1:{listener.getsockname()[1]}", workdir, env)
    finally:
        listener.close()
    assert dropped.returncode == 1 and "cannot reach Hugging Face" in dropped.stderr
    assert len(accepted) <= 2, accepted  # the client's agent-registry look-up and the model listing

    # The other hubs say the same, naming the variable that points them elsewhere.
    monkeypatch.setenv("MODELSCOPE_DOMAIN", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("STUDIO_GIT_HOST", f"http://127.0.0.1:{port}")
    for name, variable in (("modelscope", "MODELSCOPE_DOMAIN"), ("aistudio", "STUDIO_GIT_HOST")):
        with pytest.raises(hub.HubError) as caught:
            hub.download("PaddlePaddle/ERNIE-4.5-0.3B-Paddle", workdir, hub=name)
        assert f"at http://127.0.0.1:{port}" in str(caught.value) and variable in str(caught.value)


def test_an_unknown_repo_is_named_and_a_complete_download_survives_a_lost_hub(repo_folder, tmp_path, monkeypatch):
    fake = FakeHub.from_folder(REPO, repo_folder)
    url = fake.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    try:
        with pytest.raises(hub.HubError, match="studio-test/missing was not found on Hugging Face"):
            hub.download("studio-test/missing", tmp_path)
        lines = []
        target = hub.download(REPO, tmp_path, revision="v1", echo=lambda line, live=False: lines.append(line))
    finally:
        fake.stop()
    assert hub.downloaded_models(tmp_path) == [REPO] and target == hub.model_dir(tmp_path, REPO)
    assert any(r.path == f"/api/models/{REPO}/revision/v1" for r in fake.requests)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert hub.download(REPO, tmp_path, echo=lambda line, live=False: lines.append(line)) == target
    assert "could not look for updates" in lines[-1]
    assert hub.read_state(tmp_path, REPO)["state"] == hub.DONE


def test_the_train_tabs_download_button_fetches_shows_progress_stops_and_lists_the_model(
        repo_folder, tmp_path, monkeypatch):
    import gradio as gr

    from webui import hub_panel
    from webui.context import make_context
    from webui.model_servers import list_checkpoints

    fake = FakeHub.from_folder(REPO, repo_folder, bytes_per_s=40e6)
    fake.stall_once[PADDING] = BREAK_AT
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    ctx = make_context(tmp_path / "studio")
    with gr.Blocks():
        panel = hub_panel.build(ctx)

    def wait_for(phase: str) -> str:
        deadline = time.monotonic() + 120
        while (now := hub_panel.status_text(ctx, REPO))[0] != phase and time.monotonic() < deadline:
            time.sleep(0.2)
        assert now[0] == phase, now
        return now[1]

    try:
        assert hub_panel.view(ctx, panel, "ernie-4.5-tiny-moe")[panel.row]["visible"] is False
        shown = hub_panel.view(ctx, panel, REPO)
        assert shown[panel.row]["visible"] is True and "not downloaded yet" in shown[panel.status]
        assert "尚未下载" in shown[panel.status]  # both languages are written

        hub_panel.start(ctx, REPO, "huggingface")
        with pytest.raises(hub.HubError, match="already being downloaded"):
            hub_panel.start(ctx, REPO, "huggingface")
        assert fake.stalled.wait(120)
        deadline = time.monotonic() + 60
        while hub.read_state(ctx.workdir, REPO).get("bytes_done", 0) < 10 * MIB and time.monotonic() < deadline:
            time.sleep(0.1)
        running = hub_panel.view(ctx, panel, REPO)
        assert running[panel.stop]["visible"] is True and running[panel.timer].active
        assert 'class="studio-fill' in running[panel.status] and "Downloading studio-test/tiny-dense" in \
            running[panel.status]

        hub_panel.stop(ctx, REPO)
        fake.release.set()
        assert "stopped (SIGTERM)" in wait_for(hub_panel.FAILED)
        assert REPO not in hub_panel.model_choices(ctx)

        hub_panel.start(ctx, REPO, "huggingface")  # continues
        done = wait_for(hub_panel.DONE)
    finally:
        fake.stop()
    assert "is downloaded" in done
    finished = hub_panel.view(ctx, panel, REPO)
    assert finished[panel.row]["visible"] is False and not finished[panel.timer].active
    assert REPO in hub_panel.model_choices(ctx)
    assert REPO in [c.value for c in list_checkpoints(ctx.store, ctx.workdir)]
    assert "launching" in hub.log_file(ctx.workdir, REPO).read_text()
