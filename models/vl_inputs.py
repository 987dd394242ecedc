"""A conversation with images as an ERNIE 4.5 VL model takes it, for training and for chat alike.

The conversation is rendered once with the model's chat template, each `<image>` placeholder
written as ERNIE-VL writes an image (`Picture N:<|IMAGE_START|><|IMAGE_END|>`,
models/image_facts.image_marker); each marker's start/end pair is then expanded around the image's
patch tokens. As paddleformers' `Ernie4_5_VLProcessor` lays them out:
- token types: 0 for text, 1 for an image's start, patch and end tokens (they route among the
  vision experts);
- 3-D positions (time, row, column): a text token has its index three times; an image's patch
  tokens share the time index of the image's first token and add their row and column, and the
  tokens after an image continue from the largest position used plus one;
- pixels: paddleformers' `Ernie4_5_VLImageProcessor`, 14-pixel patches flattened [C*14*14], the
  image resized into [min_pixels, max_pixels] (models/image_facts.smart_resize).
Only assistant replies are learned (the same segments as text models, models/chat_template).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.chat_template import conversation_segments
from models.image_facts import (DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, IMAGE_END, IMAGE_PATCH, IMAGE_PLACEHOLDER,
                                IMAGE_START, MERGE_SIZE, image_marker)

TEXT, IMAGE = 0, 1
_MARKER = re.compile(re.escape(IMAGE_START + IMAGE_END))


class ImageCountError(ValueError):
    """A conversation's `<image>` placeholders and its images do not match in number."""


@dataclass
class VisionInput:
    """One encoded conversation: per token its id, type, 3-D position and whether it is learned;
    the images' patches and (t, h, w) grids."""

    input_ids: list[int] = field(default_factory=list)
    token_type_ids: list[int] = field(default_factory=list)
    position_ids: list[list[int]] = field(default_factory=list)
    learned: list[bool] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    grids: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def image_tokens(self) -> int:
        return sum(self.token_type_ids)

    def next_position(self) -> int:
        return max(max(p) for p in self.position_ids) + 1 if self.position_ids else 0

    def add_text(self, ids: list[int], learned: bool) -> None:
        start = self.next_position()
        self.input_ids += ids
        self.token_type_ids += [TEXT] * len(ids)
        self.position_ids += [[start + i] * 3 for i in range(len(ids))]
        self.learned += [learned] * len(ids)

    def add_image(self, ids: dict, patches: np.ndarray, grid: tuple[int, int, int]) -> None:
        self._add_special(ids[IMAGE_START])
        _, h, w = grid
        rows, columns = h // MERGE_SIZE, w // MERGE_SIZE
        start = self.next_position()
        self.input_ids += [ids[IMAGE_PATCH]] * (rows * columns)
        self.token_type_ids += [IMAGE] * (rows * columns)
        self.position_ids += [[start, start + r, start + c] for r in range(rows) for c in range(columns)]
        self.learned += [False] * (rows * columns)
        self.pixels.append(patches)
        self.grids.append(grid)
        self._add_special(ids[IMAGE_END])

    def _add_special(self, token_id: int) -> None:
        position = self.next_position()
        self.input_ids.append(token_id)
        self.token_type_ids.append(IMAGE)
        self.position_ids.append([position] * 3)
        self.learned.append(False)


class ImageProcessor:
    """paddleformers' ERNIE-VL image processor with a run's pixel limits."""

    def __init__(self, model_dir: str | Path | None = None, min_pixels: int | None = None,
                 max_pixels: int | None = None):
        """The checkpoint's preprocessor_config.json (paddleformers' defaults without one); pixel
        limits not given are its own."""
        from paddleformers.transformers.ernie4_5_moe_vl.image_processor import Ernie4_5_VLImageProcessor

        if model_dir is not None and (Path(model_dir) / "preprocessor_config.json").is_file():
            self.processor = Ernie4_5_VLImageProcessor.from_pretrained(str(model_dir))
        else:
            self.processor = Ernie4_5_VLImageProcessor()
        self.min_pixels = min_pixels or getattr(self.processor, "min_pixels", None) or DEFAULT_MIN_PIXELS
        self.max_pixels = max_pixels or getattr(self.processor, "max_pixels", None) or DEFAULT_MAX_PIXELS

    def __call__(self, image) -> tuple[np.ndarray, tuple[int, int, int]]:
        """(patches [h*w, C*14*14] float32, (1, h, w) in patches) of a PIL image."""
        from paddleformers.transformers.image_utils import ChannelDimension

        image = image.convert("RGB")
        h, w = self.processor.get_smarted_resize(image.height, image.width, min_pixels=self.min_pixels,
                                                 max_pixels=self.max_pixels)[1]
        out = self.processor.preprocess(images=[image], do_rescale=True, do_normalize=True,
                                        predetermined_grid_thw=np.array([[h, w]]), do_convert_rgb=True,
                                        input_data_format=ChannelDimension.LAST)
        grid = tuple(int(x) for x in np.asarray(out["image_grid_thw"]).reshape(-1)[:3])
        return np.asarray(out["pixel_values"]).astype(np.float32), grid


def open_image(path_or_image):
    from PIL import Image

    if isinstance(path_or_image, (str, Path)):
        with Image.open(path_or_image) as image:
            image.load()
            return image.convert("RGB")
    return path_or_image


def with_image_markers(messages: list[dict], images: int) -> list[dict]:
    """The messages with each `<image>` placeholder written as ERNIE-VL writes the Nth image."""
    found = sum(str(m["content"]).count(IMAGE_PLACEHOLDER) for m in messages)
    if found != images:
        raise ImageCountError(f"the conversation has {found} {IMAGE_PLACEHOLDER} placeholder(s) but "
                              f"{images} image(s)")
    number, marked = 0, []
    for message in messages:
        parts = str(message["content"]).split(IMAGE_PLACEHOLDER)
        text = parts[0]
        for part in parts[1:]:
            number += 1
            text += image_marker(number) + part
        marked.append({**message, "content": text})
    return marked


def special_ids(tokenizer) -> dict:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (IMAGE_START, IMAGE_END, IMAGE_PATCH)}
    unknown = [token for token, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"the tokenizer has no {', '.join(unknown)} token: it is not an ERNIE 4.5 VL tokenizer")
    return ids


def encode_vl_conversation(tokenizer, processor: ImageProcessor, messages: list[dict], images: list,
                           trainable: list[bool] | None = None, **template_kwargs) -> VisionInput:
    """A conversation (`<image>` placeholders in its text) and its images (paths or PIL images), as
    token ids, types, 3-D positions, learned flags and pixels."""
    ids = special_ids(tokenizer)
    marked = with_image_markers(messages, len(images))
    encoded, pending = VisionInput(), list(images)
    for text, trained in conversation_segments(tokenizer, marked, trainable, **template_kwargs):
        pieces = _MARKER.split(text)
        for index, piece in enumerate(pieces):
            if index:
                patches, grid = processor(open_image(pending.pop(0)))
                encoded.add_image(ids, patches, grid)
            if piece:
                encoded.add_text(tokenizer(piece, add_special_tokens=False)["input_ids"], trained)
    return encoded


def prompt_inputs(vision: VisionInput, generated: list[int] = ()) -> dict:
    """Model inputs for a whole prompt (and the tokens generated after it, when decoding without a
    cache): ids, 3-D positions, token types (one more, as the model takes them) and the pixels."""
    import paddle

    start = vision.next_position()
    inputs = {
        "input_ids": paddle.to_tensor([vision.input_ids + list(generated)], dtype="int64"),
        "position_ids": paddle.to_tensor([vision.position_ids + [[start + i] * 3 for i in range(len(generated))]],
                                         dtype="int64"),
        "token_type_ids": paddle.to_tensor([vision.token_type_ids + [TEXT] * (len(generated) + 1)], dtype="int64"),
    }
    if vision.pixels:
        inputs["images"] = paddle.to_tensor(np.concatenate(vision.pixels))
        inputs["grid_thw"] = paddle.to_tensor(np.asarray(vision.grids, dtype="int64"))
        inputs["image_type_ids"] = paddle.zeros([len(vision.grids)], dtype="int64")
    return inputs


def next_token_inputs(vision: VisionInput, token: int, generated_before: int) -> dict:
    """Model inputs for one generated text token, decoded against the cache."""
    import paddle

    position = vision.next_position() + generated_before
    return {"input_ids": paddle.to_tensor([[token]], dtype="int64"),
            "position_ids": paddle.to_tensor([[[position] * 3]], dtype="int64"),
            "token_type_ids": paddle.zeros([1, 2], dtype="int64")}
