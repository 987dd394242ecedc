"""Paddle-free facts about images as ERNIE 4.5 VL models take them: the placeholder a dataset row
or a rendered conversation holds for each image, the special tokens around an image's patch
tokens, and how many tokens an image of a given size becomes.

An image is resized so that both sides are multiples of 28 (14-pixel patches, merged 2x2 into one
token) and its area lies within [min_pixels, max_pixels], its aspect ratio kept as closely as
possible: `smart_resize` is paddleformers' `Ernie4_5_VLImageProcessor` rule (a test checks they
agree), here so the data check and the web UI can count image tokens without Paddle.
"""

from __future__ import annotations

import math

# What a canonical dataset row holds, in a turn's text, where an image goes (LLaMA-Factory's and
# paddleformers' convention); `Example.images` lists the files in the order of these placeholders.
IMAGE_PLACEHOLDER = "<image>"

IMAGE_START = "<|IMAGE_START|>"
IMAGE_END = "<|IMAGE_END|>"
IMAGE_PATCH = "<|IMAGE_PLACEHOLDER|>"
VIDEO_START = "<|VIDEO_START|>"
VIDEO_END = "<|VIDEO_END|>"
VISION_SPECIAL_TOKENS = (IMAGE_PATCH, IMAGE_START, IMAGE_END, VIDEO_START, VIDEO_END)

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE

# paddleformers' processor defaults (4 and 6177 tokens' worth of pixels)
DEFAULT_MIN_PIXELS = 4 * FACTOR * FACTOR
DEFAULT_MAX_PIXELS = 6177 * FACTOR * FACTOR
MAX_RATIO = 200


def image_marker(number: int) -> str:
    """How ERNIE-VL's template writes the `number`th image (from 1) of a conversation; the chat
    encoder expands the marker's start/end pair around the image's patch tokens."""
    return f"Picture {number}:{IMAGE_START}{IMAGE_END}"


def smart_resize(height: int, width: int, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS, factor: int = FACTOR) -> tuple[int, int]:
    """(height, width) an image is resized to before it is cut into patches."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        if height > width:
            width = max(factor, round(width / factor) * factor)
            height = math.floor(width * MAX_RATIO / factor) * factor
        else:
            height = max(factor, round(height / factor) * factor)
            width = math.floor(height * MAX_RATIO / factor) * factor
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if not min_pixels <= h_bar * w_bar <= max_pixels:
        raise ValueError(f"a {width}x{height} image cannot be resized to between {min_pixels} and "
                         f"{max_pixels} pixels in steps of {factor}")
    return h_bar, w_bar


def image_tokens(width: int, height: int, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """How many patch tokens an image of `width` x `height` pixels becomes (its start and end
    tokens not counted)."""
    h, w = smart_resize(height, width, min_pixels, max_pixels)
    return (h // PATCH_SIZE) * (w // PATCH_SIZE) // (MERGE_SIZE * MERGE_SIZE)
