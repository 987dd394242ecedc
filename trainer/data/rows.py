"""One dataset row under validation: the canonical `Turn`/`Example` every format converts to, and
`Row`, which reads fields of a raw row and collects each problem as a `DataIssue` naming file,
line and field. The format converters (trainer/data/formats.py) are written on top of it."""

from __future__ import annotations

from dataclasses import dataclass

from models.tool_calls import ToolCall

from ..messages import Message, plural
from .readers import DataIssue


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # 'system' | 'user' | 'assistant' | 'tool'
    content: str
    train: bool = True
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's function calls
    call_id: str | None = None  # a tool turn's: the id of the call it answers, where calls have ids

    @property
    def text(self) -> str:
        """What the turn says, its calls as the studio's layout writes them (for previews)."""
        return "\n".join(([self.content] if self.content else []) + [call.text() for call in self.tool_calls])

    def to_message(self) -> dict:
        """The turn as a chat template (and OpenAI's API) takes it."""
        message = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.call_id is not None:
            message["tool_call_id"] = self.call_id
        return message


@dataclass(slots=True)
class Example:
    messages: list[Turn]
    chosen: str | None = None
    rejected: str | None = None
    line: int = 0
    source: str = ""
    # image files (absolute, inside the dataset's folder) in the order of the `<image>`
    # placeholders (models/image_facts.IMAGE_PLACEHOLDER) in the turns' text
    images: tuple[str, ...] = ()
    # the functions the assistant may call, each as OpenAI's {"type": "function", "function": {...}}
    tools: tuple[dict, ...] = ()

    @property
    def template_kwargs(self) -> dict:
        """What the chat template is given besides the messages."""
        return {"tools": list(self.tools)} if self.tools else {}

    @property
    def kind(self) -> str:
        return "preference" if self.chosen is not None else "sft"

    @property
    def system(self) -> str | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    def to_record(self) -> dict:
        """The row as paddleformers' `messages` reader takes it: SFT rows carry `label` (one 0/1
        per assistant turn); preference rows carry `chosen_response`/`rejected_response`."""
        record: dict = {"messages": [t.to_message() for t in self.messages]}
        if self.chosen is not None:
            record["chosen_response"] = [{"role": "assistant", "content": self.chosen}]
            record["rejected_response"] = [{"role": "assistant", "content": self.rejected}]
        else:
            record["label"] = [int(t.train) for t in self.messages if t.role == "assistant"]
        if self.images:
            record["images"] = list(self.images)
        if self.tools:
            record["tools"] = list(self.tools)
        return record


def describe(value: object) -> str:
    """What a message says a value is: its kind and (the start of) the value itself."""
    if value is None:
        return Message("value-null")
    if isinstance(value, bool):
        return Message("value-bool", value=str(value).lower())
    if isinstance(value, int):
        return Message("value-int", value=repr(value))
    if isinstance(value, float):
        return Message("value-float", value=repr(value))
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return Message("value-string", value=repr(shown))
    if isinstance(value, list):
        return plural(len(value), "value-items-one", "value-items", n=len(value))
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6])
        return Message("value-object", keys=keys) if value else Message("value-empty-object")
    return type(value).__name__


class Row:
    """The row being checked: collects its issues."""

    def __init__(self, row: dict, file: str, line: int, media: object = None):
        self.row = row
        self.file = file
        self.line = line
        self.issues: list[DataIssue] = []
        # what its image references are checked against (trainer/data/images.ImageContext), and the
        # references a converter found, as (field, reference) in the order of their placeholders
        self.media = media
        self.image_refs: list[tuple[str, object]] = []

    def issue(self, field_name: str, message: Message) -> None:
        self.issues.append(DataIssue(self.file, self.line, field_name, message))

    def get(self, key: str, required: bool = True) -> object:
        """The field's value; None when absent (an issue when required). A null or empty optional
        cell (common in CSV and Parquet) counts as absent."""
        value = self.row.get(key)
        if value is None:
            if required:
                self.issue(key, Message("row-missing"))
            return None
        if not required and value == "":
            return None
        return value

    def string(self, value: object, name: str) -> str | None:
        if isinstance(value, str):
            return value if self.unicode(value, name) else None
        self.issue(name, Message("row-expected-string", value=describe(value)))
        return None

    def unicode(self, text: str, name: str) -> bool:
        """JSON escapes can spell unpaired surrogates ("\\ud800"), which no tokenizer can encode."""
        if text.isascii():
            return True
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            self.issue(name, Message("row-surrogate", code=f"{ord(text[e.start]):04x}", position=e.start + 1))
            return False
        return True

    def strings(self, value: object, name: str) -> list[str] | None:
        """A string or a list of strings, as a list."""
        if isinstance(value, str):
            return [value] if self.unicode(value, name) else None
        if not isinstance(value, list):
            self.issue(name, Message("row-expected-strings", value=describe(value)))
            return None
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.issue(f"{name}[{i}]", Message("row-expected-string", value=describe(item)))
                ok = False
            elif not self.unicode(item, f"{name}[{i}]"):
                ok = False
        return value if ok else None

    def content(self, text: str | None, role: str, name: str) -> None:
        if text is not None and not text.strip() and role != "system":
            self.issue(name, Message("row-empty-turn", role=Message(f"role-{role}")))


def check_labels(r: Row, value: object, count: int, name: str, per: str) -> list[bool] | None:
    """`per` is what each label is for: "turn" or "assistant-turn" (unit-... in the catalogue)."""
    unit = Message(f"unit-{per}")
    if not isinstance(value, list):
        r.issue(name, Message("labels-not-list", unit=unit, value=describe(value)))
        return None
    ok = True
    for i, item in enumerate(value):
        if not (isinstance(item, (int, float)) and item in (0, 1)):
            r.issue(f"{name}[{i}]", Message("labels-not-01", value=describe(item)))
            ok = False
    if len(value) != count:
        units = Message(f"unit-{per}" if count == 1 else f"unit-{per}s")
        r.issue(name, plural(count, "labels-count-one", "labels-count", n=len(value), count=count, units=units,
                             unit=unit))
        return None
    if ok and count and not any(value):
        r.issue(name, Message("labels-all-zero"))
        return None
    return [bool(item) for item in value] if ok else None


def system_turn(r: Row, key: str = "system") -> list[Turn]:
    value = r.get(key, required=False)
    if value is None:
        return []
    text = r.string(value, key)
    return [Turn("system", text)] if text and text.strip() else []
