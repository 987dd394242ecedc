"""One way to hold an exclusive lock between processes: `flock` on a directory itself (nothing left
behind) or on a lock file (created when missing). Shared by the model loader, the tiny-model
builder, the dataset store and the job files; no paddle."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a directory, or a lock file) until the block ends."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_DIRECTORY if path.is_dir() else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
