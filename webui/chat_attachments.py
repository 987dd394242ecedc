"""Images in the Chat tab: the message box's attachments checked before anything is sent, the user's
message as the conversation shows it, and the conversation as a model server takes it.

Attachments pass the model server's own checks (models/image_check.py), here so that a problem is
said in the page's language and nothing half-sent is left in the conversation; one whose data URL
would not fit in a request (models.api.MAX_BODY_BYTES) is refused too. The Chatbot keeps a user
message's images as files in Gradio's cache; each request sends them again as `data:` URLs (a
model server reads no file of the studio's), and to a text model without them. No paddle.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass

from models.api import MAX_BODY_BYTES
from models.image_check import ImageProblem, inspect_image
from plumbing.files import human_size
from trainer.messages import Message

# the largest image whose base64 leaves room for the rest of a request in its body
MAX_IMAGE_BYTES = (MAX_BODY_BYTES - (256 << 10)) * 3 // 4


@dataclass
class Refused(Exception):
    """An attachment that is not sent: a catalogue key and its fields (webui.i18n.Phrase's)."""

    key: str
    fields: dict


def check_attachments(paths: list[str]) -> None:
    """Raise Refused for the first attached file that is not an image a model server takes."""
    for path in paths:
        name = os.path.basename(path)
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            raise Refused("msg-chat-image-too-big", {"name": name, "size": human_size(size),
                                                     "limit": human_size(MAX_IMAGE_BYTES)})
        try:
            if size == 0:
                raise ImageProblem("image-zero-bytes")
            with open(path, "rb") as f:
                inspect_image(f)
        except ImageProblem as problem:
            raise Refused("msg-chat-image-refused", {"problem": Message(problem.key, path=name, **problem.fields)})


def user_message(text: str, files: list[str]) -> dict:
    """The user's message as the Chatbot shows it: its images, then its text."""
    if not files:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"path": path} for path in files] + ([text] if text else [])}


def _parts(content) -> list[tuple[str, str]]:
    """("text", text) and ("image", path) of a Chatbot message's content: a string, a file, or a list
    of them, as the handler wrote it or as Gradio hands it back."""
    if isinstance(content, str):
        return [("text", content)]
    if isinstance(content, dict):
        if content.get("type") == "text":
            return [("text", content.get("text") or "")]
        file = content.get("file") if isinstance(content.get("file"), dict) else content
        return [("image", file["path"])] if file.get("path") else []
    if isinstance(content, (list, tuple)):
        return [part for item in content for part in _parts(item)]
    return [("text", str(content))]


def api_content(content, images: bool = True) -> str | list[dict]:
    """A Chatbot message's content as OpenAI content: text, or parts with each image as a data: URL
    (left out when `images` is false). Raises OSError for an image file that is gone."""
    parts = _parts(content)
    if not images or all(kind == "text" for kind, _ in parts):
        return "".join(value for kind, value in parts if kind == "text")
    return [{"type": "text", "text": value} if kind == "text" else
            {"type": "image_url", "image_url": {"url": data_url(value)}} for kind, value in parts]


def data_url(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        media = f"image/{inspect_image(io.BytesIO(data)).format.lower()}"
    except ImageProblem as problem:  # it passed when it was attached: the file has changed since
        raise OSError(problem.english(os.path.basename(path))) from None
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"
