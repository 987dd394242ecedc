"""Zip archives of a job's output or export (trainer/archive.py, and webui/downloads.py that offers
them): what they hold, that they are written whole or not at all, reused while fresh, and named
after the job. The jobs here are job directories written by hand; nothing is trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from trainer.archive import ArchiveError, archive_name, build, checkpoint_members, is_fresh, job_archive
from trainer.jobfiles import write_status

WEIGHTS = b"\x00" * 300_000  # zeros deflate to almost nothing: a stored member keeps its size


def make_base(root: Path) -> Path:
    base = root / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "ernie4_5_moe"}))
    (base / "tokenizer.model").write_bytes(b"spm")
    (base / "tokenizer_config.json").write_text("{}")
    return base


def make_job(root: Path, *, adapter: bool = True, tokenizer: bool = True, state: str = "completed") -> Path:
    """A job directory as the trainer leaves it: config.yaml, status.json and output/ (a LoRA
    adapter naming its base, or a full model)."""
    base = make_base(root)
    job = root / "jobs" / "20260101-000000-abcd"
    out = job / "output"
    out.mkdir(parents=True)
    (job / "config.yaml").write_text(yaml.safe_dump({"method": "sft", "model": {"name_or_path": "tiny"}}))
    write_status(job, state=state)
    (out / "config.json").write_text(json.dumps({"model_type": "ernie4_5_moe"}))
    (out / "model.safetensors").write_bytes(WEIGHTS)
    if adapter:
        (out / "lora_config.json").write_text(json.dumps({"r": 8}))
        (out / "adapter_info.json").write_text(json.dumps({"base_model": str(base), "base_model_name": "tiny",
                                                           "method": "sft"}))
    if tokenizer:
        for name in ("tokenizer.model", "tokenizer_config.json"):
            (out / name).write_bytes((base / name).read_bytes())
    return job


def names(zip_path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        return {info.filename: info for info in zf.infolist()}


def test_an_adapter_archive_holds_the_output_the_run_config_and_the_tokenizer(tmp_path):
    job = make_job(tmp_path)
    path = job_archive(job, tmp_path / "dl", name="my lora")
    assert path == tmp_path / "dl" / "my_lora-adapter.zip"
    members = names(path)
    assert set(members) == {f"my_lora-adapter/{n}" for n in (
        "config.json", "model.safetensors", "lora_config.json", "adapter_info.json", "config.yaml",
        "tokenizer.model", "tokenizer_config.json")}
    weights = members["my_lora-adapter/model.safetensors"]
    assert weights.compress_type == zipfile.ZIP_STORED and weights.compress_size == len(WEIGHTS)
    assert members["my_lora-adapter/lora_config.json"].compress_type == zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path) as zf:
        assert yaml.safe_load(zf.read("my_lora-adapter/config.yaml"))["method"] == "sft"
        assert zf.read("my_lora-adapter/model.safetensors") == WEIGHTS


def test_a_full_model_and_an_export_are_named_for_what_they_are(tmp_path):
    job = make_job(tmp_path, adapter=False)
    assert job_archive(job, tmp_path / "dl").name == "20260101-000000-abcd-model.zip"
    export = job / "export"
    export.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        (export / name).write_bytes((job / "output" / name).read_bytes())
    path = job_archive(job, tmp_path / "dl", name="full", export_dir=export)
    assert path.name == "full-export.zip"
    assert set(names(path)) == {f"full-export/{n}" for n in ("config.json", "model.safetensors", "tokenizer.model",
                                                            "config.yaml")}


def test_an_adapter_saved_without_a_tokenizer_takes_its_base_models(tmp_path):
    job = make_job(tmp_path, tokenizer=False)
    members = checkpoint_members(job / "output", job / "config.yaml")
    assert members["tokenizer.model"] == tmp_path / "base" / "tokenizer.model"
    assert set(members) >= {"tokenizer.model", "tokenizer_config.json"}
    (tmp_path / "base" / "config.json").unlink()
    with pytest.raises(ArchiveError, match="no tokenizer files and its base model cannot give them.*missing"):
        checkpoint_members(job / "output", job / "config.yaml")


def test_what_cannot_be_archived_is_refused_with_the_reason(tmp_path):
    running = make_job(tmp_path / "a", state="running")
    with pytest.raises(ArchiveError, match="is running, not completed"):
        job_archive(running, tmp_path / "dl")
    with pytest.raises(ArchiveError, match="is not a job directory"):
        job_archive(tmp_path / "nowhere", tmp_path / "dl")
    job = make_job(tmp_path / "b")
    with pytest.raises(ArchiveError, match="holds no finished export"):
        job_archive(job, tmp_path / "dl", export_dir=job / "export")
    (job / "config.yaml").unlink()
    with pytest.raises(ArchiveError, match="run config .* is missing"):
        job_archive(job, tmp_path / "dl")
    full = make_job(tmp_path / "c", adapter=False, tokenizer=False)
    with pytest.raises(ArchiveError, match="has no tokenizer files"):
        job_archive(full, tmp_path / "dl")
    assert not (tmp_path / "dl").exists(), "a refused archive leaves nothing behind"


def test_names_say_the_job_and_are_safe_file_names():
    assert archive_name("my job", "adapter") == "my_job-adapter.zip"
    assert archive_name("../../etc/passwd", "model") == "etc_passwd-model.zip"
    assert archive_name("微调 第一次", "export") == "微调_第一次-export.zip"
    assert archive_name("///", "adapter") == "job-adapter.zip"
    long = archive_name("长" * 200, "adapter")
    assert len(long.encode()) <= 120 and long.endswith("-adapter.zip")
    with pytest.raises(ValueError, match="unknown archive kind"):
        archive_name("x", "tarball")


def test_a_fresh_archive_is_reused_and_a_newer_output_rebuilds_it(tmp_path):
    job = make_job(tmp_path)
    first = job_archive(job, tmp_path / "dl")
    built = first.stat().st_mtime_ns
    inode = first.stat().st_ino
    time.sleep(0.01)
    assert job_archive(job, tmp_path / "dl") == first
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == (built, inode)
    # a new output (a job trained again into the same place) is newer than the archive
    later = time.time() + 5
    os.utime(job / "output" / "model.safetensors", (later, later))
    assert not is_fresh(first, checkpoint_members(job / "output", job / "config.yaml"))
    again = job_archive(job, tmp_path / "dl")
    assert again.stat().st_ino != inode and again.stat().st_mtime_ns > built
    # a copy keeps its source's file times, but the directory it lands in is new
    os.utime(job / "output", (later + 5, later + 5))
    assert not is_fresh(again, checkpoint_members(job / "output", job / "config.yaml"))


def test_a_failed_write_leaves_no_partial_archive_and_keeps_the_old_one(tmp_path, monkeypatch):
    job = make_job(tmp_path)
    old = job_archive(job, tmp_path / "dl")
    before = old.read_bytes()
    later = time.time() + 5
    os.utime(job / "output" / "model.safetensors", (later, later))  # stale: the next request rebuilds

    written = []
    original = zipfile.ZipFile.write

    def dies_midway(self, filename, arcname=None, *args, **kwargs):
        written.append(arcname)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return original(self, filename, arcname, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", dies_midway)
    with pytest.raises(ArchiveError, match="cannot write .*No space left on device"):
        job_archive(job, tmp_path / "dl")
    assert len(written) == 3
    assert old.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [old.name]

    monkeypatch.setattr(zipfile.ZipFile, "write", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        job_archive(job, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [old.name]


def test_a_killed_builders_leftover_is_cleared_by_the_next_build(tmp_path):
    job = make_job(tmp_path)
    dest = tmp_path / "dl"
    dest.mkdir()
    leftover = dest / ".x-adapter.zip.k3j2.partial"
    leftover.write_bytes(b"PK half")
    members = checkpoint_members(job / "output", job / "config.yaml")
    path = build(dest / "x-adapter.zip", members)
    assert sorted(p.name for p in dest.iterdir()) == [path.name]


def test_the_command_line_writes_the_archive(tmp_path):
    job = make_job(tmp_path)
    result = subprocess.run([sys.executable, "-m", "trainer", "export", str(job), "--zip", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out" / "20260101-000000-abcd-adapter.zip"
    assert f"archive written to {path}" in result.stdout
    assert "20260101-000000-abcd-adapter/adapter_info.json" in names(path)
    refused = subprocess.run([sys.executable, "-m", "trainer", "export", str(tmp_path / "nowhere"), "--zip",
                              str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "archive failed: " in refused.stderr


def test_the_studio_offers_a_jobs_archive_only_once_built_and_forgets_it_with_the_job(tmp_path, monkeypatch):
    from webui import downloads
    from webui.context import make_context

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "studio" / "tmp" / "uploads"))
    ctx = make_context(tmp_path / "studio")
    job = ctx.store.create_job({"method": "sft"}, name="first tune")
    hand_made = make_job(tmp_path / "hand")
    (job.paths.output).mkdir()
    for item in (hand_made / "output").iterdir():
        (job.paths.output / item.name).write_bytes(item.read_bytes())
    write_status(job.job_dir, state="completed")
    job = ctx.store.refresh(job.id)
    assert downloads.ready(ctx.store, job) is None
    path = downloads.archive(ctx.store, job.id)
    assert path == tmp_path / "studio" / "tmp" / "uploads" / "downloads" / job.id / f"first_tune-{job.id}-adapter.zip"
    assert downloads.ready(ctx.store, job) == path
    downloads.forget(ctx.workdir, job.id)
    assert not path.parent.exists()
