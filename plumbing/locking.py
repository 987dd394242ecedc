"""One way to hold an exclusive lock between processes: `flock` on a directory itself (nothing left
behind) or on a lock file (created when missing). Shared by the model loader, the tiny-model
builder, the dataset store, the job files and hub downloads (which take it without waiting, to
refuse a second download of the same model); no paddle."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive(path: str | os.PathLike[str], wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a directory, or a lock file) until the block ends. With
    `wait=False`, a lock another process holds raises BlockingIOError at once."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_DIRECTORY if path.is_dir() else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)
