"""Files written so a crash never leaves half of one: atomic replaces with fsync, single-write JSON
lines, an fsync of a whole tree, reading a file's tail, and a directory's size (and any size in
words)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in `directory` durable, not just the files' contents."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Flush every file and directory under `root` to disk (before a marker promises they are there)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file, never a mix.

    A symlink at `path` is replaced by the file rather than followed, so a write never lands
    outside the directory it names."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    # Serialise before touching the file system, so an unserialisable object leaves nothing behind.
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def append_json_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line in a single write, so a reader never sees half a record."""
    line = (json.dumps(dict(record), separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def tail_text(path: str | os.PathLike[str], max_bytes: int = 8000, max_lines: int | None = None) -> str:
    """The last lines of a text file (at most `max_bytes`, and `max_lines` if given); '' if missing."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return ""
    with f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read()
    if start > 0:
        # Drop the first, probably cut, line unless it is the only one.
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1 :]
    lines = data.decode("utf-8", errors="replace").splitlines()
    if max_lines is not None:
        lines = lines[-max_lines:] if max_lines > 0 else []
    return "\n".join(lines)


def directory_size(path: str | os.PathLike[str]) -> int:
    """Bytes in the files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def human_size(n: float) -> str:
    """A byte count as people read it: 512 B, 1.5 KB, 3.2 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
