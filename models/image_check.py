"""Whether some bytes are an image an ERNIE 4.5 VL model can take, and `data:` URLs decoded: the
checks the data checks (trainer/data/images.py) and the model server (models/chat_images.py)
share, with what they say in English and Chinese (`IMAGE_MESSAGES`, part of the trainer's catalogue).

An image must be a JPEG, PNG, WEBP, BMP or GIF (its first frame) that PIL opens and verifies, under
PIL's decompression-bomb limit (its warning counts as an error too). The checks read headers and,
where a format has no cheaper check, decode (a JPEG at 1/8 scale). A problem is an `ImageProblem`:
a message id and its fields, all but `path`, which the caller fills with the name it knows the
image by. No paddle.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import warnings
from typing import BinaryIO, NamedTuple

from PIL import Image, UnidentifiedImageError

# PIL's names of the formats an image may have; MPO is how PIL reads many cameras' JPEGs
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
_SAME_AS = {"MPO": "JPEG"}
_DATA_URL = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),(.*)", re.DOTALL | re.IGNORECASE)
_PIXELS = re.compile(r"\((\d+) pixels\)")

# message id -> (English, Chinese); {path} is what the caller calls the image
IMAGE_MESSAGES: dict[str, tuple[str, str]] = {
    "image-zero-bytes": ("{path} is a zero-byte file, not an image", "{path} 是 0 字节的空文件，不是图片"),
    "image-unreadable": ("{path} cannot be read as an image ({error})", "{path} 无法作为图片读取（{error}）"),
    "image-svg": ("{path} is an SVG (vector) image; convert it to PNG or JPEG",
                  "{path} 是 SVG 矢量图；请转换为 PNG 或 JPEG"),
    "image-text": ("{path} is a text file, not an image (it starts with {start})",
                   "{path} 是文本文件，不是图片（开头为 {start}）"),
    "image-unidentified": ("{path} is not an image PIL can read (it starts with the bytes {start})",
                           "{path} 不是 PIL 能读取的图片（开头的字节为 {start}）"),
    "image-format": ("{path} is a {format} image; supported: {formats}", "{path} 是 {format} 格式的图片；支持：{formats}"),
    "image-corrupt": ("{path} is a damaged {format} image ({error})", "{path} 是已损坏的 {format} 图片（{error}）"),
    "image-bomb": ("{path} has {pixels} pixels, over PIL's decompression-bomb limit of {limit}: refused as a "
                   "possible decompression bomb",
                   "{path} 有 {pixels} 个像素，超过 PIL 的解压炸弹上限 {limit}：可能是解压炸弹，已拒绝"),
    "image-data-url": ("malformed data URL: expected data:image/<type>;base64,<data>",
                       "内嵌图片的格式错误：应为 data:image/<type>;base64,<data>"),
    "image-data-media": ("the data URL holds {media}, not an image (data:image/...)",
                         "内嵌数据的类型是 {media}，不是图片（data:image/...）"),
    "image-data-base64": ("the data URL's base64 data cannot be decoded ({error})",
                          "内嵌图片的 base64 数据无法解码（{error}）"),
}


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str  # one of IMAGE_FORMATS

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageProblem(Exception):
    """What is wrong with an image: an IMAGE_MESSAGES id and its fields but `path`."""

    def __init__(self, key: str, **fields):
        super().__init__(key)
        self.key = key
        self.fields = fields

    def english(self, path: str) -> str:
        return IMAGE_MESSAGES[self.key][0].format(path=path, **self.fields)


def inspect_image(fp: BinaryIO) -> ImageInfo:
    """Width, height and format of the image whose bytes `fp` reads (from its start), or ImageProblem."""
    fmt = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as image:
                fmt = _SAME_AS.get(image.format, image.format)
                if fmt not in IMAGE_FORMATS:
                    raise ImageProblem("image-format", format=image.format, formats=", ".join(IMAGE_FORMATS))
                width, height = image.size
                _decode_check(image, fmt)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = _PIXELS.search(str(e))
        raise ImageProblem("image-bomb", pixels=pixels.group(1) if pixels else "?",
                           limit=Image.MAX_IMAGE_PIXELS) from None
    except UnidentifiedImageError:
        fp.seek(0)
        raise _not_an_image(fp.read(2048)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        # PIL reports damage in many types; what it says is the detail the user needs
        error = str(e) or type(e).__name__
        raise (ImageProblem("image-corrupt", format=fmt, error=error) if fmt
               else ImageProblem("image-unreadable", error=error)) from None
    if width < 1 or height < 1:
        raise ImageProblem("image-corrupt", format=fmt, error=f"{width}x{height}")
    return ImageInfo(width, height, fmt)


def _decode_check(image: Image.Image, fmt: str) -> None:
    """Damage PIL's open does not see: a PNG's chunk checksums; for the others, decoding (a JPEG at
    1/8 scale, which still reads every byte of its data)."""
    if fmt == "PNG":
        image.verify()
        return
    if fmt == "JPEG":
        image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
    image.load()


def _not_an_image(head: bytes) -> ImageProblem:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text) or b"<svg" in text[:512]:
        return ImageProblem("image-svg")
    if b"\0" not in head:
        try:
            start = head.decode("utf-8")
        except UnicodeDecodeError as e:
            start = head[:e.start].decode("utf-8") if e.start > 8 else None
        if start is not None:
            shown = " ".join(start.split())[:40]
            return ImageProblem("image-text", start=repr(shown))
    return ImageProblem("image-unidentified", start=head[:8].hex(" "))


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a `data:image/...;base64,` URL, or ImageProblem; the bytes are not
    checked as an image yet."""
    match = _DATA_URL.fullmatch(url)
    if not match or match.group(2).lower().split(";")[-1] != "base64":
        raise ImageProblem("image-data-url")
    media = match.group(1).strip().lower()
    if not media.startswith("image/"):
        raise ImageProblem("image-data-media", media=repr(media or "text/plain"))
    try:
        return media, base64.b64decode("".join(match.group(3).split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageProblem("image-data-base64", error=str(e)) from None
