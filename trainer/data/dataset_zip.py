"""A dataset uploaded as a zip (one data file plus its images, in any folder layout), unpacked
safely. No paddle, nothing of the web UI; the dataset store (webui/dataset_store.py) uses it.

Every entry is checked before a byte is written: no more than `max_entries`, no `..` and no
absolute path, no symbolic link, no encrypted entry, no name twice, a declared total under
`max_total_bytes` and no entry compressed beyond `max_ratio`:1 (zip bombs); reading stops at an
entry's declared size, so a lying header cannot write more. The zip must hold exactly one data
file; its folder in the zip becomes the dataset's folder (image paths are relative to the data
file), so every kept entry must lie inside it. Entries that are neither the data file nor an
image are left out and named. Everything is unpacked into a fresh folder under `work_dir` that
the caller renames into place or removes: a refused zip leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from plumbing.files import directory_size, human_size

from ..messages import Message
from .images import IMAGE_EXTENSIONS
from .readers import SUPPORTED_EXTENSIONS

# what zip tools add beside the files themselves
_JUNK_PARTS = ("__MACOSX",)
_JUNK_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
_CHUNK = 1 << 20


class ZipRefused(Exception):
    """A zip that is not unpacked; `.message` says why."""

    def __init__(self, message: Message):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 50_000
    max_total_bytes: int = 8 << 30
    max_ratio: int = 100  # uncompressed:compressed, for entries of at least `ratio_floor` bytes
    ratio_floor: int = 1 << 20


@dataclass
class Unpacked:
    """A zip unpacked into `folder` (the data file's folder): `data` is the data file's path
    relative to it, `images` the number of image files; `left_out` names the entries not taken."""

    folder: Path
    data: str
    images: int
    left_out: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return directory_size(self.folder)


def _entry_path(name: str, zip_name: str) -> PurePosixPath:
    """The entry's path, checked: forward slashes (Windows tools write backslashes), relative,
    without `..`."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":" and text[0].isalpha()):
        raise ZipRefused(Message("zip-absolute", name=zip_name, entry=repr(name)))
    path = PurePosixPath(text)
    if ".." in path.parts:
        raise ZipRefused(Message("zip-dot-dot", name=zip_name, entry=repr(name)))
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _is_junk(path: PurePosixPath) -> bool:
    return any(part in _JUNK_PARTS for part in path.parts) or path.name in _JUNK_NAMES or \
        path.name.startswith("._")


def _plan(archive: zipfile.ZipFile, zip_name: str, limits: ZipLimits) -> tuple[list, PurePosixPath, list[str]]:
    """(entries to unpack as (info, path inside the data file's folder), the data file's path
    there, entries left out) — or ZipRefused."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ZipRefused(Message("zip-too-many", name=zip_name, n=len(infos), limit=limits.max_entries))
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    total = 0
    for info in infos:
        path = _entry_path(info.filename, zip_name)
        if _is_link(info):
            raise ZipRefused(Message("zip-link", name=zip_name, entry=repr(info.filename)))
        if info.is_dir() or not path.parts or _is_junk(path):
            continue
        if info.flag_bits & 0x1:
            raise ZipRefused(Message("zip-encrypted", name=zip_name, entry=repr(info.filename)))
        if path in seen:
            raise ZipRefused(Message("zip-twice", name=zip_name, entry=repr(info.filename)))
        seen.add(path)
        total += info.file_size
        if info.file_size >= limits.ratio_floor and info.file_size > limits.max_ratio * max(1, info.compress_size):
            raise ZipRefused(Message("zip-bomb-ratio", name=zip_name, entry=repr(info.filename),
                                     ratio=info.file_size // max(1, info.compress_size), limit=limits.max_ratio))
        files.append((info, path))
    if total > limits.max_total_bytes:
        raise ZipRefused(Message("zip-bomb-total", name=zip_name, size=human_size(total),
                                 limit=human_size(limits.max_total_bytes)))
    data = [path for _, path in files if path.suffix.lower() in SUPPORTED_EXTENSIONS]
    if not data:
        raise ZipRefused(Message("zip-no-data", name=zip_name, supported=", ".join(SUPPORTED_EXTENSIONS)))
    if len(data) > 1:
        raise ZipRefused(Message("zip-several-data", name=zip_name, files=", ".join(map(str, data[:5]))
                                 + (", …" if len(data) > 5 else "")))
    base = data[0].parent
    planned, left_out = [], []
    for info, path in files:
        if not path.is_relative_to(base):
            raise ZipRefused(Message("zip-outside", name=zip_name, entry=repr(info.filename), data=str(data[0])))
        inside = path.relative_to(base)
        if path == data[0] or path.suffix.lower() in IMAGE_EXTENSIONS:
            planned.append((info, inside))
        else:
            left_out.append(str(path))
    return planned, data[0].relative_to(base), left_out


def unpack(zip_path: str | os.PathLike, zip_name: str, work_dir: str | os.PathLike,
           limits: ZipLimits = ZipLimits()) -> Unpacked:
    """Check and unpack the zip into a new folder under `work_dir` (on the store's file system,
    so the caller can rename it into place); ZipRefused with nothing left when it is refused."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ZipRefused(Message("zip-unreadable", name=zip_name, error=str(e))) from None
    folder = Path(tempfile.mkdtemp(dir=work_dir, prefix="zip-"))
    try:
        with archive:
            planned, data, left_out = _plan(archive, zip_name, limits)
            for info, inside in planned:
                _extract(archive, info, folder / inside, zip_name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Unpacked(folder, str(data), len(planned) - 1, left_out)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        # zipfile stops at the declared size and checks the CRC, so the plan's sizes bound what is written
        with archive.open(info) as src, open(target, "xb") as out:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                written += len(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise ZipRefused(Message("zip-damaged", name=zip_name, entry=repr(info.filename), error=str(e))) from None
    if written != info.file_size:
        raise ZipRefused(Message("zip-damaged", name=zip_name, entry=repr(info.filename),
                                 error=f"{written} of {info.file_size} bytes"))
