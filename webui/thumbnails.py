"""Thumbnails of a stored dataset's images for the Data tab's preview: small JPEGs made once into the
dataset's own folder (`.thumbs/`, named after the image's path, size and time) and shown inline as
`data:` URLs in a markdown cell, so no file is served and the page gets a few KB per image. Only
images the row checks accepted are drawn, and only when they still lie inside the dataset's folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path

from PIL import Image

from plumbing.files import atomic_write_bytes

THUMB_PX = 72
SHOWN_PER_ROW = 4
THUMBS_FOLDER = ".thumbs"


def thumbnail(folder: Path, image: str) -> bytes | None:
    """JPEG bytes of a THUMB_PX thumbnail of `image` (inside `folder`), made once; None when the
    image is outside the folder or can no longer be read."""
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(image)
    if os.path.commonpath([real, real_folder]) != real_folder:
        return None
    try:
        st = os.stat(real)
        key = hashlib.sha256(f"{real}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
        cached = Path(real_folder) / THUMBS_FOLDER / f"{key}.jpg"
        if cached.is_file():
            return cached.read_bytes()
        with Image.open(real) as source:
            source.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
            small = source.convert("RGB")
        small.thumbnail((THUMB_PX, THUMB_PX))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=80)
        cached.parent.mkdir(exist_ok=True)
        atomic_write_bytes(cached, out.getvalue())
        return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def images_cell(folder: Path, images: tuple[str, ...], line: int) -> str:
    """Markdown showing a row's first images as thumbnails, and how many more there are."""
    shown = []
    for number, image in enumerate(images[:SHOWN_PER_ROW], 1):
        data = thumbnail(folder, image)
        if data is not None:
            url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
            shown.append(f"![{line}.{number}]({url})")
        else:
            shown.append("✗")
    more = len(images) - SHOWN_PER_ROW
    return " ".join(shown) + (f" +{more}" if more > 0 else "")
