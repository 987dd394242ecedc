"""The images of a chat request, read and checked by the model server before the model sees them.

A request's `ImageRef`s (models/chat_request.py) become PIL images: a `data:` URL is decoded, a
local file read (only by a server bound to loopback: one that takes remote clients reads no local
file), and each passes models/image_check.py's checks (format, damage, decompression bombs), a
size cap (`MAX_IMAGE_BYTES`) and, for a VL model, its processor's resize rule. Every refusal is a
400 naming the part, e.g. `messages[1].content[2].image_url`. A local file that is not an image is
refused without quoting what it holds. A VL model also refuses text that holds what it reads as an
image's place (`<image>`, the image tokens), rather than take it for an image. No paddle.
"""

from __future__ import annotations

import io
import os
import stat
import warnings

from PIL import Image

from models.chat_request import ChatRequest, ImageRef, RequestError
from models.image_check import ImageProblem, decode_data_url, inspect_image
from models.image_facts import image_tokens

MAX_IMAGE_BYTES = 16 << 20
# what a local file's problems would quote of the file; the server does not show it
_QUOTES_CONTENT = ("image-text", "image-unidentified")


def read_images(request: ChatRequest, processor=None, local_files: bool = True) -> None:
    """Fill `request.loaded_images` (RGB images, in order); `processor` is a VL model's image
    processor (its min_pixels and max_pixels), None for a text model. Raises RequestError."""
    if processor is not None and request.marked_text:
        param, marker = request.marked_text[0]
        raise RequestError(f"{param} holds the text {marker!r}, which this vision model reads as the place of an "
                           "image; send images as image_url parts and write the text another way", param=param)
    limits = (processor.min_pixels, processor.max_pixels) if processor is not None else None
    request.loaded_images = [read_image(ref, limits, local_files) for ref in request.images]


def read_image(ref: ImageRef, limits: tuple[int, int] | None = None, local_files: bool = True) -> Image.Image:
    """The RGB image `ref` names, checked; `limits`: (min_pixels, max_pixels) it must be resizable into."""
    if ref.kind == "data":
        try:
            media, data = decode_data_url(ref.source)
        except ImageProblem as problem:
            # what is wrong with a data URL's text names no path
            raise RequestError(f"{ref.param}: {problem.english('')}", param=ref.param) from None
        shown = f"data:{media};base64,…"
    else:
        data, shown = _read_file(ref, local_files), ref.source
    if len(data) > MAX_IMAGE_BYTES:
        raise RequestError(f"{ref.param}: the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes "
                           "(scale it down or compress it)", param=ref.param)
    try:
        if not data:
            raise ImageProblem("image-zero-bytes")
        info = inspect_image(io.BytesIO(data))
    except ImageProblem as problem:
        if ref.kind == "file" and problem.key in _QUOTES_CONTENT:
            raise RequestError(f"{ref.param}: {shown} is not an image PIL can read", param=ref.param) from None
        raise RequestError(f"{ref.param}: {problem.english(shown)}", param=ref.param) from None
    if limits is not None:
        try:
            image_tokens(info.width, info.height, *limits)
        except ValueError as exc:
            raise RequestError(f"{ref.param}: the {info.width}x{info.height} image cannot be resized for this "
                               f"model: {exc}", param=ref.param) from None
    with warnings.catch_warnings():
        # checked above: the bomb warning was an error there, and is noise here
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")


def _read_file(ref: ImageRef, local_files: bool) -> bytes:
    """A local image file's bytes, refused unless it is a regular file within the size cap."""
    if not local_files:
        raise RequestError(f"{ref.param}: this server takes remote clients (--allow-remote), so it reads no local "
                           "files; send the image as a data:image/...;base64, URL", param=ref.param)
    path = ref.source
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise RequestError(f"{ref.param}: {path} is not a regular file", param=ref.param)
        if st.st_size > MAX_IMAGE_BYTES:
            raise RequestError(f"{ref.param}: {path} is {st.st_size} bytes; the limit for an image is "
                               f"{MAX_IMAGE_BYTES} bytes (scale it down or compress it)", param=ref.param)
        with open(path, "rb") as f:
            return f.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise RequestError(f"{ref.param}: no such file: {path}", param=ref.param) from None
    except OSError as exc:
        raise RequestError(f"{ref.param}: cannot read {path} ({exc.strerror or exc})", param=ref.param) from None
