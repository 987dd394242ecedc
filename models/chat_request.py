"""An OpenAI chat-completions request body → a checked `ChatRequest`, or a `RequestError` that says
which parameter is wrong and what is allowed.

The body is declared once, as pydantic models (`ChatCompletionRequest`): the server checks requests
against them and publishes them as its OpenAPI schema. `explain` turns pydantic's first error back
into OpenAI's error, naming the parameter in the words a person can act on.

No paddle here: the server checks a request before it reaches the model, and the checks are the
same for every model. Beyond OpenAI's parameters, the body may carry `top_k`,
`repetition_penalty`, `ignore_eos`, `truncation` ("disabled" refuses a prompt that does not fit;
"auto" drops the oldest turns) and `chat_template_kwargs: {"enable_thinking": bool}`.

A user message's content parts may be images: `{"type": "image_url", "image_url": {"url": ...}}`
with a `data:image/...;base64,` URL or a local file's absolute path (or `file://` URL). Each
becomes an `<image>` placeholder in the message's text and an `ImageRef` naming its part; the
server reads and checks the images (models/chat_images.py), and never fetches an http(s) URL.
"""

from __future__ import annotations

import json
import re
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal, Union

import annotated_types
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag,
                      ValidationError, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from models.image_facts import IMAGE_PLACEHOLDER, VISION_SPECIAL_TOKENS

ROLES = ("system", "user", "assistant", "tool")
TOOL_CHOICES = ("auto", "none", "required")
TRUNCATION = ("disabled", "auto")
MAX_STOP_STRINGS = 4
MAX_TOKENS = 1 << 31
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status, `param` the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.code, self.type = message, param, status, code, type_

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class ImageRef:
    """An image a request sends: `kind` "data" (`source` is the data: URL) or "file" (`source` is
    the absolute path); `param` names its part, e.g. messages[1].content[2].image_url."""

    kind: str
    source: str
    param: str


@dataclass
class ChatRequest:
    messages: list[dict]
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    thinking: bool | None = None
    truncation: str = "disabled"
    model: str | None = None
    # the function definitions the prompt lists (None: no tools, or tool_choice "none"), and whether a
    # reply's <tool_call> blocks are read back as calls
    tools: list[dict] | None = None
    calls_allowed: bool = False
    images: list[ImageRef] = field(default_factory=list)  # one per <image> placeholder, in order
    # (param, marker) of each message whose text holds what a VL model reads as an image's place (an
    # <image> placeholder, the tokens around an image's patches): a VL model refuses it
    marked_text: list[tuple[str, str]] = field(default_factory=list)
    loaded_images: list = field(default_factory=list)  # PIL images of `images`, once the server has read them


# -- the body, declared -------------------------------------------------------------------------------

def _valid_unicode(text: str) -> str:
    """JSON escapes can spell unpaired surrogates ("\\ud800"), which the tokenizer cannot encode."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise PydanticCustomError("unpaired_surrogate", "unpaired surrogate \\u{code} at character {position} "
                                      "is not valid Unicode text",
                                      {"code": f"{ord(text[e.start]):04x}", "position": e.start + 1}) from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


class _Body(BaseModel):
    """Strict JSON types (no "10" for 10, no 1 for true); a null means the parameter was not given,
    as in OpenAI's API."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data):
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class TextPart(_Body):
    type: Literal["text"]
    text: Text


def image_source(url: str) -> tuple[str, str]:
    """("data", url) or ("file", absolute path) of an image_url's url, or the reason it is refused;
    reads nothing."""
    text = url.strip()
    if text[:5].lower() == "data:":
        return "data", text
    scheme = _URL_SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:  # not a Windows drive letter
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            raise PydanticCustomError("image_url", "the server does not fetch {scheme} URLs; send the image "
                                      "itself as a data:image/...;base64, URL", {"scheme": name})
        if name != "file":
            raise PydanticCustomError("image_url", "unsupported URL scheme {scheme}: send a "
                                      "data:image/...;base64, URL or a local file's absolute path", {"scheme": name})
        text = _file_url_path(text)
    if not text.startswith("/"):
        raise PydanticCustomError("image_url", "{url} is neither a data:image/...;base64, URL nor an absolute file "
                                  "path (the server has no folder to resolve a relative path in)",
                                  {"url": repr(url[:80])})
    return "file", text


def _file_url_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise PydanticCustomError("image_url", "file URL {url} names another host; give a local file",
                                  {"url": repr(url[:80])})
    return unquote(parts.path)


def _checked_url(url: str) -> str:
    image_source(url)
    return url


class ImageURL(_Body):
    url: Annotated[Text, AfterValidator(_checked_url)] = Field(
        description="a data:image/...;base64, URL, or a local file's absolute path or file:// URL; the server "
                    "fetches no http(s) URL")


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


PART_TYPES = ("text", "image_url")


def _part_kind(part) -> str | None:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return kind if kind in PART_TYPES else None


Part = Annotated[Union[Annotated[TextPart, Tag("text")], Annotated[ImagePart, Tag("image_url")]],
                 Discriminator(_part_kind)]


def _content_kind(content) -> str | None:
    return "string" if isinstance(content, str) else "parts" if isinstance(content, list) else None


# the content's own type picks the branch, so a wrong part is reported alone, not next to "not a string"
Content = Annotated[Union[Annotated[Text, Tag("string")], Annotated[list[Part], Tag("parts")]],
                    Discriminator(_content_kind)]


class CalledFunction(_Body):
    name: Text = Field(min_length=1)
    arguments: Text = Field(description="the arguments as the JSON text of an object")


class ToolCallItem(_Body):
    id: Text = Field(min_length=1, description="what the tool message answering this call names")
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(_Body):
    role: Literal[ROLES]
    content: Content | None = Field(None, description="text, or a list of content parts: text (joined) and, in a "
                                                      "user message, image_url; optional in an assistant message "
                                                      "with tool_calls")
    tool_calls: list[ToolCallItem] | None = Field(None, description="an assistant message's calls")
    tool_call_id: Text | None = Field(None, description="a tool message: the id of the call it answers")

    def parts(self, where: str) -> list[tuple[str, TextPart | ImagePart]]:
        """(param, part) of each part; a string content is one text part."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [(f"{where}.content", TextPart(type="text", text=self.content))]
        return [(f"{where}.content[{j}]", part) for j, part in enumerate(self.content)]


FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(_Body):
    name: Text = Field(pattern=FUNCTION_NAME, description="letters, digits, _ and -, at most 64")
    description: Text | None = None
    parameters: dict | None = Field(None, description="the arguments' JSON schema")
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class ChosenFunction(_Body):
    name: Text


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: ChosenFunction


def _choice_kind(choice) -> str | None:
    return "mode" if isinstance(choice, str) else "function" if isinstance(choice, (dict, NamedToolChoice)) else None


ToolChoice = Annotated[Union[Annotated[Literal[TOOL_CHOICES], Tag("mode")], Annotated[NamedToolChoice, Tag("function")]],
                       Discriminator(_choice_kind)]


class StreamOptions(_Body):
    include_usage: bool = Field(False, description="end the stream with a chunk carrying the usage")


class TemplateKwargs(_Body):
    enable_thinking: bool | None = Field(None, description="thinking on or off; default: the template's own")


def _listed(value):
    return [value] if isinstance(value, str) else value


Stop = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listed),
                 Field(max_length=MAX_STOP_STRINGS)]


class ChatCompletionRequest(_Body):
    """An OpenAI chat-completions request; unknown parameters are ignored. The fields come in the
    order they are checked, so the first one wrong is the one reported."""

    messages: list[Message] = Field(min_length=1, description="the conversation; the last message is the user's "
                                                              "or a tool result")
    tools: list[Tool] | None = Field(None, description="functions the model may call")
    tool_choice: ToolChoice | None = Field(None, description="auto (the default with tools: the model decides) or "
                                                             "none (no tools offered); required and a named "
                                                             "function are refused, as nothing forces a call")
    n: int = Field(1, ge=1, le=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="reply length cap")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="the same, by its older name")
    temperature: float = Field(1.0, ge=0, le=2, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, le=MAX_TOKENS)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    seed: int | None = Field(None, ge=0, le=(1 << 63) - 1)
    stop: Stop = Field(default_factory=list, description="up to 4 strings that end the reply")
    ignore_eos: bool = Field(False, description="generate through the end-of-turn marker")
    stream: bool = Field(False, description="server-sent events, ending with `data: [DONE]`")
    stream_options: StreamOptions = Field(default_factory=StreamOptions)
    chat_template_kwargs: TemplateKwargs = Field(default_factory=TemplateKwargs)
    truncation: Literal[TRUNCATION] = Field("disabled", description="auto drops the oldest turns to fit")
    model: str | None = Field(None, description="must be the served model's id when given")

    @field_validator("messages")
    @classmethod
    def _conversation(cls, messages: list[Message]) -> list[Message]:
        for i, message in enumerate(messages[1:], 1):
            if message.role == "system":
                raise RequestError(f"messages[{i}]: a system message may only come first", param=f"messages[{i}].role")
        for i, message in enumerate(messages):
            for where, part in message.parts(f"messages[{i}]"):
                if part.type == "image_url" and message.role != "user":
                    raise RequestError(f"{where}: images are taken in user messages only (this one's role is "
                                       f"{message.role!r})", param=where)
        _check_tool_turns(messages)
        if messages[-1].role not in ("user", "tool"):
            raise RequestError(f"the last message must come from the user (or be a tool result), got "
                               f"{messages[-1].role!r}", param=f"messages[{len(messages) - 1}].role")
        return messages

    @field_validator("tools")
    @classmethod
    def _distinct_tools(cls, tools: list[Tool]) -> list[Tool]:
        seen = set()
        for i, tool in enumerate(tools):
            if tool.function.name in seen:
                raise RequestError(f"tools[{i}].function.name: function {tool.function.name!r} is declared twice",
                                   param=f"tools[{i}].function.name")
            seen.add(tool.function.name)
        return tools

    @model_validator(mode="after")
    def _choice_among_tools(self):
        choice = self.tool_choice
        if choice is None or choice == "none":
            return self
        if not self.tools:
            raise RequestError(f"tool_choice {_shown(choice)} needs 'tools': no function is declared",
                               param="tool_choice")
        if isinstance(choice, NamedToolChoice):
            names = [tool.function.name for tool in self.tools]
            if choice.function.name not in names:
                raise RequestError(f"tool_choice names function {choice.function.name!r}, which 'tools' does not "
                                   f"declare (declared: {', '.join(names)})", param="tool_choice.function.name")
        if choice != "auto":
            raise RequestError(f"tool_choice {_shown(choice)} cannot be honoured: this server does not constrain "
                               "decoding, so it cannot force a call; send 'auto' (the model decides whether to "
                               "call) or 'none'", param="tool_choice")
        return self

    def checked(self) -> ChatRequest:
        sampling = SamplingParams(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            max_tokens=self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens,
            seed=self.seed, stop=self.stop, ignore_eos=self.ignore_eos)
        request = ChatRequest(messages=[], sampling=sampling, stream=self.stream,
                              include_usage=self.stream_options.include_usage,
                              thinking=self.chat_template_kwargs.enable_thinking, truncation=self.truncation,
                              model=self.model)
        if self.tools and self.tool_choice != "none":
            request.tools = [tool.model_dump(exclude_none=True) for tool in self.tools]
            request.calls_allowed = True
        for i, message in enumerate(self.messages):
            pieces, texts, images = [], [], 0
            for where, part in message.parts(f"messages[{i}]"):
                if part.type == "image_url":
                    pieces.append(IMAGE_PLACEHOLDER)
                    images += 1
                    request.images.append(ImageRef(*image_source(part.image_url.url), param=f"{where}.image_url"))
                else:
                    pieces.append(part.text)
                    texts.append((where if isinstance(message.content, str) else f"{where}.text", part.text))
            content = "".join(pieces)
            # on the whole content: text parts side by side can spell a marker that neither holds alone
            marker = IMAGE_PLACEHOLDER if content.count(IMAGE_PLACEHOLDER) > images else \
                next((marker for marker in VISION_SPECIAL_TOKENS if marker in content), None)
            if marker is not None:
                param = next((where for where, text in texts if marker in text), f"messages[{i}].content")
                request.marked_text.append((param, marker))
            request.messages.append(_turn(message, content))
        return request


def _shown(choice) -> str:
    return repr(choice) if isinstance(choice, str) else f"naming function {choice.function.name!r}"


def _check_tool_turns(messages: list[Message]) -> None:
    """Calls only in assistant turns, each with arguments that are a JSON object; a tool message
    answers, by `tool_call_id`, a call of the last assistant turn that made calls; content is
    optional only beside calls."""
    awaiting: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.tool_calls is not None and message.role != "assistant":
            raise RequestError(f"{where}.tool_calls: only an assistant message calls tools (this one's role is "
                               f"{message.role!r})", param=f"{where}.tool_calls")
        if message.tool_call_id is not None and message.role != "tool":
            raise RequestError(f"{where}.tool_call_id: only a tool message answers a call (this one's role is "
                               f"{message.role!r})", param=f"{where}.tool_call_id")
        if message.content is None and not message.tool_calls:
            raise RequestError(f"{where}.content is required", param=f"{where}.content")
        if message.role == "assistant" and message.tool_calls:
            awaiting = []
            for j, call in enumerate(message.tool_calls):
                _check_arguments(call.function.arguments, f"{where}.tool_calls[{j}].function.arguments")
                awaiting.append(call.id)
        elif message.role == "tool":
            if message.tool_call_id is None:
                raise RequestError(f"{where}.tool_call_id is required: a tool message names the call it answers",
                                   param=f"{where}.tool_call_id")
            if message.tool_call_id not in awaiting:
                known = ", ".join(map(repr, awaiting)) or "none: no assistant message before it calls a tool"
                raise RequestError(f"{where}.tool_call_id: no call has id {message.tool_call_id!r} (the calls "
                                   f"awaiting results: {known})", param=f"{where}.tool_call_id")


def _check_arguments(text: str, param: str) -> None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RequestError(f"{param} is not valid JSON: {exc}", param=param) from None
    if not isinstance(value, dict):
        raise RequestError(f"{param} must be the JSON text of an object, got {type(value).__name__}", param=param)


def _turn(message: Message, content: str) -> dict:
    """A message as the chat template (or models.tool_calls.fold_tools) takes it."""
    turn = {"role": message.role, "content": content}
    if message.tool_calls:
        turn["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    return turn


def parse_chat_request(body) -> ChatRequest:
    """Check an OpenAI chat-completions body; raises `RequestError` naming the first problem."""
    try:
        return ChatCompletionRequest.model_validate(body).checked()
    except ValidationError as exc:
        raise explain(exc.errors()[0]) from None


# -- pydantic's error → OpenAI's ----------------------------------------------------------------------

NOTES = {"n": " (one choice per request)", "top_k": " (0 turns it off)"}
KINDS = {"int_type": "an integer", "float_type": "a number", "string_type": "a string",
         "bool_type": "true or false", "model_type": "an object", "dict_type": "an object", "list_type": "a list"}
TOOL_SHAPE = '{"type": "function", "function": {"name", "description", "parameters"}}'



def explain(error: dict) -> RequestError:
    """One pydantic error (from `ValidationError.errors()`) as the `RequestError` the client gets."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, RequestError):
        return cause
    if not loc:
        return RequestError(f"the request body must be a JSON object, got {type(value).__name__}")
    if loc[0] == "tool_choice":
        return RequestError(f"'tool_choice' must be one of {', '.join(TOOL_CHOICES)} or "
                            f'{{"type": "function", "function": {{"name": ...}}}}, got {value!r}', param="tool_choice")
    if loc[0] == "tools" and len(loc) == 1:
        return RequestError(f"'tools' must be a list of {TOOL_SHAPE} objects, got {type(value).__name__}",
                            param="tools")
    if loc[0] == "tools" or (loc[0] == "messages" and len(loc) > 3 and loc[2] in ("tool_calls", "tool_call_id")) \
            or loc[:1] + loc[2:3] == ("messages", "tool_call_id"):
        return _explain_field(_path(loc), kind, value)
    if loc[0] == "messages":
        return _explain_message(loc, kind, value, error["msg"])
    if loc[0] == "stop":
        if kind == "too_long":
            return RequestError(f"'stop' takes at most {MAX_STOP_STRINGS} strings, got {len(value)}", param="stop")
        return RequestError("'stop' must be a non-empty string or a list of them", param="stop")
    name = ".".join(loc)
    if kind == "model_type":
        return RequestError(f"'{name}' must be an object", param=name)
    if kind in KINDS:
        return RequestError(f"'{name}' must be {KINDS[kind]}, got {value!r}", param=name)
    annotation = ChatCompletionRequest.model_fields[name].annotation
    if kind == "literal_error":
        return RequestError(f"'{name}' must be one of {', '.join(typing.get_args(annotation))}, got {value!r}",
                            param=name)
    return RequestError(f"'{name}' must be {_bounds(name)}{NOTES.get(name, '')}, got {value!r}", param=name)


def _path(loc: tuple) -> str:
    """('tools', 0, 'function', 'name') → tools[0].function.name"""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _explain_field(param: str, kind: str, value) -> RequestError:
    """An error in a tool definition or a message's tool fields, named by its full path."""
    if kind == "missing":
        words = "is required"
    elif kind == "string_pattern_mismatch":
        words = f"must be 1 to 64 letters, digits, underscores or dashes, got {value!r}"
    elif kind == "string_too_short":
        words = "must not be empty"
    elif kind == "literal_error":
        words = f"must be 'function', got {value!r}"
    elif kind in KINDS:
        words = f"must be {KINDS[kind]}, got {value!r}"
    else:
        words = f"is not valid: {value!r}"
    return RequestError(f"{param} {words}", param=param)


def _bounds(name: str) -> str:
    """'at least 0 and at most 2', from the field's declared constraints."""
    words = {}
    for constraint in ChatCompletionRequest.model_fields[name].metadata:
        if isinstance(constraint, annotated_types.Ge):
            words["low"] = f"at least {constraint.ge}"
        elif isinstance(constraint, annotated_types.Gt):
            words["low"] = f"greater than {constraint.gt}"
        elif isinstance(constraint, annotated_types.Le):
            words["high"] = f"at most {constraint.le}"
    return " and ".join(words[k] for k in ("low", "high") if k in words)


def _explain_message(loc: tuple, kind: str, value, message: str) -> RequestError:
    if len(loc) == 1:
        if kind == "missing":
            return RequestError("'messages' is required: a list of {role, content} objects", param="messages")
        return RequestError("'messages' must be a non-empty list of {role, content} objects", param="messages")
    where = f"messages[{loc[1]}]"
    if len(loc) == 2:
        return RequestError(f"{where} must be an object with 'role' and 'content'", param=where)
    if loc[2] == "role":
        role = None if kind == "missing" else value
        return RequestError(f"{where}.role: unknown role {role!r}; expected one of {', '.join(ROLES)}",
                            param=f"{where}.role")
    content = f"{where}.content"
    if kind == "unpaired_surrogate":
        spot = f"{content}[{loc[4]}].{loc[5]}" if loc[3] == "parts" else content
        return RequestError(f"{spot}: {message}", param=spot)
    if kind == "missing" and len(loc) == 3:
        return RequestError(f"{content} is required", param=content)
    if len(loc) == 3:
        return RequestError(f"{content} must be a string or a list of content parts, got {type(value).__name__}",
                            param=content)
    # a part: (messages, i, content, "parts", j[, its type, field, ...])
    spot = f"{content}[{loc[4]}]"
    if len(loc) == 5:
        if isinstance(value, dict):
            return RequestError(f"{spot}: unknown content part type {value.get('type')!r}; expected "
                                f"{' or '.join(map(repr, PART_TYPES))}", param=spot)
        return RequestError(f"{spot} must be an object with a 'type', got {type(value).__name__}", param=spot)
    if loc[5] == "text":
        return RequestError(f"{spot}.text must be a string", param=f"{spot}.text")
    where = f"{spot}.image_url"
    if kind == "image_url":
        return RequestError(f"{where}: {message}", param=where)
    return RequestError(f"{where} must be an object whose 'url' is a data:image/...;base64, URL or a local file's "
                        "absolute path", param=where)
