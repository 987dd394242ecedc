"""Rows with images: ERNIEKit's vision-language format, OpenAI content parts in `messages`, the
`images` list of LLaMA-Factory's `messages`/`conversations` rows, and the step every format ends
with (`attach_images`): the `<image>` placeholders of the text matched one to one, in order, with
the row's image references, each resolved to a checked file by trainer/data/images.py.

Videos are refused row by row (`vl-video`): the models here run images only.
"""

from __future__ import annotations

from models.image_facts import IMAGE_PLACEHOLDER

from ..messages import Message
from .images import ImageRefused, resolve
from .rows import Example, Row, Turn, describe, system_turn

_TEXT_SHAPE = "{text, tag}"
_IMAGE_SHAPE = "{image_url, matched_text_index}"
_PART_SHAPE = "{type, text | image_url}"
_ROLES = {"mask": "user", "no_mask": "assistant"}
_TAGS = {"mask": "mask", "no_mask": "no_mask"}
_VIDEO_PARTS = ("video_url", "video", "input_video")


def refuse_videos(r: Row, keys: tuple[str, ...]) -> None:
    for key in keys:
        if r.row.get(key) not in (None, "", [], {}):
            r.issue(key, Message("vl-video"))


def convert_erniekit_vl(r: Row) -> Example | None:
    """ERNIEKit's VL rows, read as paddleformers reads them (`datasets/reader/convertor.py`,
    `convert_mm_data`): texts in order, each image placed before the text its matched_text_index
    names (images with the same index keep their order), and neighbouring items with the same tag
    joined without a separator into one turn; `mask` text is the prompt, `no_mask` the reply, an
    image belongs to the prompt. As in ERNIEKit's own reader, a missing matched_text_index is 0
    and an image may not fall inside a reply (after another no_mask text)."""
    refuse_videos(r, ("video_info",))
    turns = system_turn(r)
    texts = _text_items(r)
    placed = _image_items(r, len(texts) if texts else 0)
    if r.issues or texts is None or placed is None:
        return None
    groups: list[list] = []  # [role, text, index of its first item]
    for k, (tag, text) in enumerate(texts):
        for i, url in placed.get(k, []):
            if tag == "no_mask" and groups and groups[-1][0] == "assistant":
                r.issue(f"image_info[{i}].matched_text_index", Message("vl-image-in-reply", index=k))
            if not groups or groups[-1][0] != "user":
                groups.append(["user", "", k])
            groups[-1][1] += IMAGE_PLACEHOLDER
            r.image_refs.append((f"image_info[{i}].image_url", url))
        role = _ROLES[tag]
        if not groups or groups[-1][0] != role:
            groups.append([role, "", k])
        groups[-1][1] += text
    if groups[0][0] != "user":
        r.issue("text_info[0].tag", Message("vl-first-reply", **_TAGS))
    elif groups[-1][0] != "assistant":
        r.issue(f"text_info[{len(texts) - 1}].tag", Message("vl-last-prompt", **_TAGS))
    for role, text, k in groups:
        r.content(text, role, f"text_info[{k}].text")
    if r.issues:
        return None
    return Example(turns + [Turn(role, text) for role, text, _ in groups])


def _text_items(r: Row) -> list[tuple[str, str]] | None:
    items = r.get("text_info")
    if items is None:
        return None
    if not isinstance(items, list):
        r.issue("text_info", Message("format-turns-not-list", shape=_TEXT_SHAPE, value=describe(items)))
        return None
    if not items:
        r.issue("text_info", Message("format-turns-empty"))
        return None
    out = []
    for k, item in enumerate(items):
        name = f"text_info[{k}]"
        if not isinstance(item, dict):
            r.issue(name, Message("format-turn-not-object", shape=_TEXT_SHAPE, value=describe(item)))
            continue
        if item.get("tool_calls") or item.get("tool_response"):
            r.issue(name, Message("vl-tools"))
        tag = item.get("tag")
        if tag is None:
            r.issue(f"{name}.tag", Message("row-missing"))
        elif tag not in _ROLES:
            r.issue(f"{name}.tag", Message("vl-tag", tag=repr(tag) if isinstance(tag, str) else describe(tag),
                                                  **_TAGS))
        text = item.get("text")
        if text is None:
            r.issue(f"{name}.text", Message("row-missing"))
        else:
            text = r.string(text, f"{name}.text")
        if tag in _ROLES and isinstance(text, str):
            out.append((tag, text))
    return out if len(out) == len(items) else None


def _image_items(r: Row, texts: int) -> dict[int, list[tuple[int, object]]] | None:
    """Text index -> [(image index, image_url)], in image order."""
    items = r.get("image_info", required=False)
    if items is None:
        return {}
    if not isinstance(items, list):
        r.issue("image_info", Message("format-turns-not-list", shape=_IMAGE_SHAPE, value=describe(items)))
        return None
    placed: dict[int, list[tuple[int, object]]] = {}
    for i, item in enumerate(items):
        name = f"image_info[{i}]"
        if not isinstance(item, dict):
            r.issue(name, Message("format-turn-not-object", shape=_IMAGE_SHAPE, value=describe(item)))
            continue
        if item.get("image_type") == "video":
            r.issue(f"{name}.image_type", Message("vl-video"))
            continue
        index = item.get("matched_text_index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            r.issue(f"{name}.matched_text_index", Message("vl-index-type", value=describe(index)))
        elif texts and not 0 <= index < texts:
            r.issue(f"{name}.matched_text_index", Message("vl-index", index=index, last=texts - 1))
        if "image_url" not in item:
            r.issue(f"{name}.image_url", Message("row-missing"))
        if not r.issues:
            placed.setdefault(index, []).append((i, item["image_url"]))
    return None if r.issues else placed


def content_parts(r: Row, parts: list, name: str) -> str | None:
    """The text of an OpenAI content list: text parts as they are, an `<image>` where each
    image_url part is ({"url": ...} or the URL itself); the images go to `r.image_refs`."""
    if not parts:
        r.issue(name, Message("vl-parts-empty"))
        return None
    text: list[str] = []
    ok = True
    for j, part in enumerate(parts):
        field = f"{name}[{j}]"
        if not isinstance(part, dict):
            r.issue(field, Message("format-turn-not-object", shape=_PART_SHAPE, value=describe(part)))
            ok = False
            continue
        kind = part.get("type")
        if kind == "text":
            value = part.get("text")
            value = r.string(value, f"{field}.text") if value is not None else None
            if value is None:
                if "text" not in part:
                    r.issue(f"{field}.text", Message("row-missing"))
                ok = False
                continue
            text.append(value)
        elif kind == "image_url":
            value = part.get("image_url")
            url = value.get("url") if isinstance(value, dict) else value
            if url is None:
                r.issue(f"{field}.image_url" + (".url" if isinstance(value, dict) else ""), Message("row-missing"))
                ok = False
                continue
            text.append(IMAGE_PLACEHOLDER)
            r.image_refs.append((f"{field}.image_url", url))
        elif kind in _VIDEO_PARTS:
            r.issue(f"{field}.type", Message("vl-video"))
            ok = False
        elif kind is None:
            r.issue(f"{field}.type", Message("row-missing"))
            ok = False
        else:
            r.issue(f"{field}.type", Message("vl-part-type", type=repr(kind) if isinstance(kind, str)
                                             else describe(kind), text="text", image_url="image_url"))
            ok = False
    return "".join(text) if ok else None


def attach_images(r: Row, example: Example, spec) -> None:
    """Match the example's `<image>` placeholders with the row's images (image_url parts and
    image_info collected by the converter, or the row's `images` list where the format, `spec`
    (a formats.FormatSpec), has one) and resolve them into `example.images`; problems become the
    row's issues."""
    refs = list(r.image_refs)
    listed = "images" in spec.optional
    if not listed and r.row.get("images") not in (None, "", []):
        r.issue("images", Message("image-sft-only", format=spec.name))
        return
    if listed:
        refuse_videos(r, ("videos",))
        given = r.get("images", required=False)
        if given is not None and given != []:
            if refs:
                r.issue("images", Message("image-both", images="images"))
                return
            if isinstance(given, list):
                refs = [(f"images[{i}]", ref) for i, ref in enumerate(given)]
            elif isinstance(given, str):
                refs = [("images", given)]
            else:
                r.issue("images", Message("image-list", value=describe(given)))
                return
    texts = [t.content for t in example.messages] + [example.chosen or "", example.rejected or ""]
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for text in texts)
    if placeholders != len(refs):
        field = "images" if listed and "images" in r.row else spec.required[0]
        r.issue(field, Message("image-count", placeholder=IMAGE_PLACEHOLDER, n=placeholders, m=len(refs)))
        return
    if not refs or r.issues:
        return
    paths = []
    for field, ref in refs:
        try:
            paths.append(resolve(ref, r.media))
        except ImageRefused as e:
            r.issue(field, e.message)
    if not r.issues:
        example.images = tuple(paths)


def image_references(row: object) -> list[str]:
    """The image paths a raw row names (not data: or other URLs), in whichever image format: where
    the data file of an upload looks for the images that came with it."""
    if not isinstance(row, dict):
        return []
    refs = row.get("images")
    refs = [refs] if isinstance(refs, str) else list(refs) if isinstance(refs, list) else []
    info = row.get("image_info")
    refs += [item.get("image_url") for item in info if isinstance(item, dict)] if isinstance(info, list) else []
    turns = row.get("messages")
    for turn in turns if isinstance(turns, list) else []:
        parts = turn.get("content") if isinstance(turn, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                value = part.get("image_url")
                refs.append(value.get("url") if isinstance(value, dict) else value)
    return [ref for ref in refs if isinstance(ref, str) and ref.strip() and not ref.startswith("data:")
            and "://" not in ref]
