"""Zip archives of a finished job's checkpoint, to take it to another machine: the job's output (a
LoRA adapter or a full model) or an export, with the job's config.yaml and the tokenizer files.

An archive is written under a temporary name beside its target and renamed into place once
complete, so nobody ever sees half of one, and an archive newer than everything it holds is reused
instead of rebuilt. Weights go in uncompressed (ZIP_STORED): safetensors hardly compress, and
storing copies a many-GB model at disk speed; the small text files are deflated. Every file is
streamed into the archive in chunks, never held in memory. No paddle: the UI builds these too.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path

from models.checkpoints import PROCESSOR_FILES, TOKENIZER_FILES, ModelNotFound, adapter_base, adapter_info, is_adapter
from plumbing.files import fsync_dir
from plumbing.locking import exclusive
from trainer.jobfiles import COMPLETED, JobFileError, JobPaths, read_status

KINDS = ("adapter", "model", "export")
STORED_SUFFIXES = (".safetensors", ".pdparams", ".bin")
PARTIAL_SUFFIX = ".partial"
_NAME_BYTES = 100  # of UTF-8, leaving room for the kind and the temporary prefix in a 255-byte name


class ArchiveError(Exception):
    """An archive that cannot be built, and why."""


def archive_name(job_name: str, kind: str) -> str:
    """`<job name>-<kind>.zip`, the name made safe for a file system and a download."""
    if kind not in KINDS:
        raise ValueError(f"unknown archive kind {kind!r}; expected one of {', '.join(KINDS)}")
    stem = re.sub(r"[^\w.\-]+", "_", str(job_name)).strip("._-")
    stem = stem.encode()[:_NAME_BYTES].decode(errors="ignore") or "job"
    return f"{stem}-{kind}.zip"


def checkpoint_members(checkpoint_dir: Path, config_yaml: Path) -> dict[str, Path]:
    """Name in the archive -> file: every file of the checkpoint, the run config as config.yaml, and
    the tokenizer (and a VL model's processor configs). An adapter saved without them gets its base
    model's, so the archive chats on its own wherever that base is."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise ArchiveError(f"{checkpoint_dir} does not exist; nothing to archive")
    members = {path.relative_to(checkpoint_dir).as_posix(): path
               for path in sorted(checkpoint_dir.rglob("*")) if path.is_file()}
    if not members:
        raise ArchiveError(f"{checkpoint_dir} is empty; nothing to archive")
    if not Path(config_yaml).is_file():
        raise ArchiveError(f"the job's run config {config_yaml} is missing")
    members["config.yaml"] = Path(config_yaml)
    has_tokenizer = any(name in members for name in TOKENIZER_FILES)
    if not is_adapter(checkpoint_dir):
        if not has_tokenizer:
            raise ArchiveError(f"{checkpoint_dir} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        return members
    try:
        base = adapter_base(checkpoint_dir)
    except (ModelNotFound, OSError, ValueError, KeyError) as e:
        if has_tokenizer:
            return members
        raise ArchiveError(f"{checkpoint_dir} has no tokenizer files and its base model cannot give "
                           f"them: {e}") from None
    # the base's fill in an adapter saved without its tokenizer, or a VL one without its processor's settings
    wanted = PROCESSOR_FILES + (() if has_tokenizer else TOKENIZER_FILES)
    members.update({name: base / name for name in wanted if name not in members and (base / name).is_file()})
    return members


def describe(checkpoint_dir: Path) -> tuple[str, str]:
    """The archive kind of a job's output ('adapter' or 'model') and, for an adapter, the name of
    the base model it was trained on ('' for a full model)."""
    if not is_adapter(checkpoint_dir):
        return "model", ""
    try:
        info = adapter_info(checkpoint_dir)
    except (OSError, ValueError):
        return "adapter", "?"
    return "adapter", str(info.get("base_model_name") or info.get("base_model") or "?")


def is_fresh(target: Path, members: dict[str, Path]) -> bool:
    """The archive exists and is newer than every file it holds and the directories holding them
    (a copy keeps its source's file times, but the directory it lands in changes)."""
    try:
        built = target.stat().st_mtime_ns
        sources = set(members.values()) | {path.parent for path in members.values()}
        return all(path.stat().st_mtime_ns < built for path in sources)
    except OSError:
        return False


def write_archive(target: Path, members: dict[str, Path]) -> Path:
    """Write `members` into the zip `target`, under a folder named after it, atomically: under a
    temporary name in the same directory, renamed into place once complete and flushed to disk; a
    failure removes the temporary file and leaves any earlier archive as it was."""
    target = Path(target)
    folder = target.name.removesuffix(".zip")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", allowZip64=True) as zf:
                for name, path in members.items():
                    method = zipfile.ZIP_STORED if path.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                    zf.write(path, f"{folder}/{name}", compress_type=method)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def build(target: Path, members: dict[str, Path]) -> Path:
    """The archive `target` of `members`: reused when fresh, else (re)built. One builder at a time
    per directory: a second request waits and then finds the first one's archive."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent):
        if is_fresh(target, members):
            return target
        # a builder that was killed left its temporary file; under the lock no other one is writing
        for leftover in target.parent.glob(f".{target.name}.*{PARTIAL_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        try:
            return write_archive(target, members)
        except OSError as e:
            raise ArchiveError(f"cannot write {target}: {e.strerror or e}") from None


def job_archive(job_dir: Path, dest_dir: Path, name: str | None = None, export_dir: Path | None = None) -> Path:
    """The archive of a completed job's output, or with `export_dir` of that export, in `dest_dir`,
    named after the job (`name`, else the job directory's name); built only when missing or stale."""
    paths = JobPaths(job_dir)
    if not Path(job_dir).is_dir():
        raise ArchiveError(f"{job_dir} is not a job directory")
    try:
        state = read_status(job_dir).get("state")
    except JobFileError as e:
        raise ArchiveError(str(e)) from None
    if state != COMPLETED:
        raise ArchiveError(f"job {Path(job_dir).name} is {state or 'unknown'}, not completed; only a completed "
                           f"job's output can be archived")
    if export_dir is not None:
        if not (Path(export_dir) / "config.json").is_file():
            raise ArchiveError(f"{export_dir} holds no finished export")
        source, kind = Path(export_dir), "export"
    else:
        source = paths.output
        if not source.is_dir():
            raise ArchiveError(f"job {Path(job_dir).name} has no output directory {source}")
        kind = describe(source)[0]
    members = checkpoint_members(source, paths.config)
    return build(Path(dest_dir) / archive_name(name or Path(job_dir).name, kind), members)
