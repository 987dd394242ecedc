"""The images of dataset rows: where a reference may point, what counts as a usable image, and
`data:` URLs turned into files, so every format gives `Example.images` as a list of paths.

A reference is a path relative to the data file, an absolute path, or a `data:image/...;base64,`
URL. Whatever it is, the image must end up inside the dataset's own folder (the data file's
folder): `..`, an absolute path elsewhere or a symbolic link pointing out is refused, and nothing
is ever downloaded. A decoded `data:` URL is written once, under a name taken from its content,
into `images/` in that folder. An image file must pass models/image_check.py's checks (format,
damage, decompression bombs; the model server runs the same) and have an area within
[vl.min_pixels, vl.max_pixels]; a file's result is cached by its path, size and modification time,
since many rows show the same image. No paddle.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from models.image_check import ImageInfo, ImageProblem, decode_data_url, inspect_image
from models.image_facts import image_tokens
from plumbing.files import atomic_write_bytes

from ..messages import Message
from .rows import describe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
DATA_URL_FOLDER = "images"  # where decoded data: URLs go, inside the dataset's folder
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class ImageLimits:
    """The allowed image area in pixels (the run config's vl.min_pixels and vl.max_pixels)."""

    min_pixels: int
    max_pixels: int


@dataclass(frozen=True)
class ImageContext:
    """What a row's image references are checked against: the dataset's folder and, when known, the
    area limits (None: every other check still applies)."""

    folder: str
    limits: ImageLimits | None = None

    @classmethod
    def for_file(cls, file: str, limits: ImageLimits | None = None) -> ImageContext:
        """The context of a data file: its own folder (the working directory for a row of no file)."""
        return cls(os.path.dirname(os.path.abspath(file)) if file else os.getcwd(), limits)


class ImageRefused(Exception):
    """An image reference or file that cannot be used; `.message` says why."""

    def __init__(self, message: Message):
        self.message = message
        super().__init__(message)


def resolve(reference: object, context: ImageContext) -> str:
    """The absolute path of the usable image a reference names (a data: URL is written to a file
    first); raises ImageRefused."""
    if not isinstance(reference, str):
        raise ImageRefused(Message("image-not-string", value=describe(reference)))
    text = reference.strip()
    if not text:
        raise ImageRefused(Message("image-empty"))
    if text[:5].lower() == "data:":
        return store_data_url(text, context)
    scheme = _URL_SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        key = "image-http" if name in ("http", "https") else "image-scheme"
        raise ImageRefused(Message(key, scheme=name))
    path = inside_folder(text.replace("\\", "/"), context.folder)
    info = inspect_file(path, shown=text)
    check_area(info, context.limits, text)
    return path


def inside_folder(reference: str, folder: str) -> str:
    """`reference` (relative to `folder`, or absolute) as an absolute path, refused unless it and
    whatever it links to lie inside `folder`."""
    candidate = os.path.normpath(os.path.join(folder, reference))
    if not _within(candidate, folder):
        key = "image-absolute-outside" if os.path.isabs(reference) else "image-escapes"
        raise ImageRefused(Message(key, path=reference, folder=folder))
    real = os.path.realpath(candidate)
    if not _within(real, os.path.realpath(folder)):
        raise ImageRefused(Message("image-link-outside", path=reference, target=real))
    return candidate


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def inspect_file(path: str, shown: str | None = None) -> ImageInfo:
    """Width, height and format of the image file at `path`, or ImageRefused naming `shown`."""
    shown = shown or path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageRefused(Message("image-missing", path=shown, resolved=path)) from None
    except OSError as e:
        raise ImageRefused(Message("image-unreadable", path=shown, error=e.strerror or str(e))) from None
    if not os.path.isfile(path):
        raise ImageRefused(Message("image-not-file", path=shown))
    if st.st_size == 0:
        raise ImageRefused(Message("image-zero-bytes", path=shown))
    info, problem = _inspect_cached(path, st.st_size, st.st_mtime_ns)
    if problem is not None:
        raise ImageRefused(Message(problem[0], path=shown, **problem[1]))
    return info


@lru_cache(maxsize=65536)
def _inspect_cached(path: str, size: int, mtime_ns: int) -> tuple[ImageInfo | None, tuple | None]:
    """(info, None) or (None, (message id, fields but the path)): a cache cannot hold an exception,
    and its result names no path, since one file may be reached by several."""
    try:
        with open(path, "rb") as f:
            return inspect_image(f), None
    except ImageProblem as e:
        return None, (e.key, e.fields)
    except OSError as e:
        return None, ("image-unreadable", {"error": e.strerror or str(e)})


def inspect_bytes(data: bytes, shown: str) -> ImageInfo:
    """Like inspect_file, for an image held in memory (a decoded data: URL)."""
    if not data:
        raise ImageRefused(Message("image-zero-bytes", path=shown))
    try:
        return inspect_image(io.BytesIO(data))
    except ImageProblem as e:
        raise ImageRefused(Message(e.key, path=shown, **e.fields)) from None


def check_area(info: ImageInfo, limits: ImageLimits | None, shown: str) -> None:
    """The area rule of the run config, and that the processor can resize the image at all."""
    if limits is None:
        return
    fields = dict(path=shown, width=info.width, height=info.height, pixels=info.pixels)
    if info.pixels < limits.min_pixels:
        raise ImageRefused(Message("image-too-small", limit=limits.min_pixels, **fields))
    if info.pixels > limits.max_pixels:
        raise ImageRefused(Message("image-too-large", limit=limits.max_pixels, **fields))
    try:
        image_tokens(info.width, info.height, limits.min_pixels, limits.max_pixels)
    except ValueError as e:
        raise ImageRefused(Message("image-shape", error=str(e), **fields)) from None


def store_data_url(url: str, context: ImageContext) -> str:
    """Decode a `data:image/...;base64,` URL, check the image and write it (once: its name is its
    content's hash) into the dataset's images/ folder; the file's path."""
    try:
        media, data = decode_data_url(url)
    except ImageProblem as e:
        raise ImageRefused(Message(e.key, **e.fields)) from None
    shown = f"data:{media};base64,…"
    info = inspect_bytes(data, shown)
    check_area(info, context.limits, shown)
    folder = os.path.join(context.folder, DATA_URL_FOLDER)
    path = os.path.join(folder, hashlib.sha256(data).hexdigest()[:32] + _SUFFIX[info.format])
    try:
        os.makedirs(folder, exist_ok=True)
        inside_folder(os.path.relpath(path, context.folder), context.folder)
        if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
            atomic_write_bytes(path, data)
    except OSError as e:
        raise ImageRefused(Message("image-write", folder=folder, error=e.strerror or str(e))) from None
    return path


def image_size(path: str) -> ImageInfo | None:
    """The (cached) size of an image that passed its checks; None if it no longer does."""
    try:
        return inspect_file(path)
    except ImageRefused:
        return None
