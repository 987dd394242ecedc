"""An OpenAI chat-completions request body → a checked `ChatRequest`, or a `RequestError` that says
which parameter is wrong and what is allowed.

No paddle here: the server checks a request before it reaches the model, and the checks are the
same for every model. Beyond OpenAI's parameters, the body may carry `top_k`,
`repetition_penalty`, `ignore_eos`, `truncation` ("disabled" refuses a prompt that does not fit;
"auto" drops the oldest turns) and `chat_template_kwargs: {"enable_thinking": bool}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")
TRUNCATION = ("disabled", "auto")
MAX_STOP_STRINGS = 4


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


@dataclass
class ChatRequest:
    messages: list[dict]
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    thinking: bool | None = None
    truncation: str = "disabled"
    model: str | None = None


def _number(body: dict, key: str, default, low: float, high: float, *, integer: bool = False,
            low_open: bool = False, what: str = ""):
    value = body.get(key)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RequestError(f"'{key}' must be {kind}, got {value!r}", param=key)
    # JSON bodies may spell NaN, which every comparison lets through (infinities fail the range)
    if (isinstance(value, float) and math.isnan(value)) or value < low or value > high or (low_open and value == low):
        bound = f"greater than {low}" if low_open else f"at least {low}"
        raise RequestError(f"'{key}' must be {bound} and at most {high}{what}, got {value!r}", param=key)
    return value


def _content_text(content, where: str) -> str:
    if isinstance(content, str):
        return _unicode(content, f"{where}.content")
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"{where}.content[{j}]: only text parts are supported by this model, got {kind!r}",
                                   param=f"{where}.content")
            parts.append(_unicode(part["text"], f"{where}.content[{j}].text"))
        return "".join(parts)
    raise RequestError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
                       param=f"{where}.content")


def _unicode(text: str, where: str) -> str:
    """JSON escapes can spell unpaired surrogates ("\\ud800"), which the tokenizer cannot encode."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RequestError(f"{where}: unpaired surrogate \\u{ord(text[e.start]):04x} at character "
                               f"{e.start + 1} is not valid Unicode text", param=where) from None
    return text


def parse_messages(raw) -> list[dict]:
    if raw is None:
        raise RequestError("'messages' is required: a list of {role, content} objects", param="messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", param="messages")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role: unknown role {role!r}; expected one of {', '.join(ROLES)}",
                               param=f"{where}.role")
        if role == "system" and i != 0:
            raise RequestError(f"{where}: a system message may only come first", param=f"{where}.role")
        if "content" not in message or message["content"] is None:
            raise RequestError(f"{where}.content is required", param=f"{where}.content")
        messages.append({"role": role, "content": _content_text(message["content"], where)})
    if messages[-1]["role"] != "user":
        raise RequestError(f"the last message must come from the user, got {messages[-1]['role']!r}",
                           param=f"messages[{len(messages) - 1}].role")
    return messages


def parse_stop(value) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a non-empty string or a list of them", param="stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise RequestError(f"'stop' takes at most {MAX_STOP_STRINGS} strings, got {len(stops)}", param="stop")
    return stops


def parse_chat_request(body) -> ChatRequest:
    """Check an OpenAI chat-completions body; raises `RequestError` naming the first problem."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    messages = parse_messages(body.get("messages"))
    _number(body, "n", 1, 1, 1, integer=True, what=" (one choice per request)")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if max_tokens is not None:
        max_tokens = _number({key: max_tokens}, key, None, 1, 1 << 31, integer=True)
    sampling = SamplingParams(
        temperature=_number(body, "temperature", 1.0, 0, 2),
        top_p=_number(body, "top_p", 1.0, 0, 1, low_open=True),
        top_k=_number(body, "top_k", 0, 0, 1 << 31, integer=True, what=" (0 turns it off)"),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0, 10, low_open=True),
        max_tokens=max_tokens,
        seed=_number(body, "seed", None, 0, (1 << 63) - 1, integer=True),
        stop=parse_stop(body.get("stop")),
        ignore_eos=_flag(body, "ignore_eos", False),
    )
    stream = _flag(body, "stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RequestError("'chat_template_kwargs' must be an object", param="chat_template_kwargs")
    thinking = kwargs.get("enable_thinking")
    if thinking is not None and not isinstance(thinking, bool):
        raise RequestError("'chat_template_kwargs.enable_thinking' must be true or false",
                           param="chat_template_kwargs.enable_thinking")
    truncation = body.get("truncation", "disabled")
    if truncation not in TRUNCATION:
        raise RequestError(f"'truncation' must be one of {', '.join(TRUNCATION)}, got {truncation!r}",
                           param="truncation")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("'model' must be a string", param="model")
    return ChatRequest(messages=messages, sampling=sampling, stream=stream,
                       include_usage=_flag(options, "include_usage", False, prefix="stream_options."),
                       thinking=thinking, truncation=truncation, model=model)


def _flag(body: dict, key: str, default: bool, prefix: str = "") -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{prefix}{key}' must be true or false, got {value!r}", param=prefix + key)
    return value
