"""The OpenAI-compatible HTTP API over one `ModelHost`: a FastAPI app that `models.serve` runs on uvicorn.

Endpoints: `POST /v1/chat/completions` (one JSON reply, or server-sent events ending in
`data: [DONE]`, with `reasoning_content` for thinking and a usage chunk on
`stream_options.include_usage`; `usage.prompt_tokens_details.image_tokens` counts the prompt's
image tokens, which `prompt_tokens` includes), `GET /v1/models`, `GET /health` (503 while the model loads, 200
when it is ready), and FastAPI's `/docs` and `/openapi.json`. Every error, the framework's own
included, has OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

A request body passes `RequestLimits` before the app sees it. Requests are checked on the event
loop (their images read on a worker thread, models/chat_images.py) and queued for the model thread, whose events reach the loop through worker threads; a
client that disconnects from a streamed reply cancels its generation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.chat_images import read_images
from models.chat_request import ChatCompletionRequest, RequestError, parse_chat_request
from models.tool_calls import parse_tool_calls
from models.tool_stream import ToolCallSplitter, with_ids

if TYPE_CHECKING:
    from models.serve import Generation, ModelHost

MAX_BODY_BYTES = 8 << 20
BODY_TIMEOUT_S = 60

# the request schema under components/schemas, where Swagger UI resolves its references
REQUEST_SCHEMAS = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
REQUEST_SCHEMAS = {**REQUEST_SCHEMAS.pop("$defs"), "ChatCompletionRequest": REQUEST_SCHEMAS}


def error_response(error: RequestError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class RequestLimits:
    """ASGI middleware that reads a POST body whole before the app runs, within limits uvicorn does
    not have: a Content-Length is required (411) and at most `max_body_bytes` (413), and the body
    must arrive within `timeout_s` (408), so a client that stops sending cannot hold a request
    open. h11 delivers exactly Content-Length bytes, so the header bounds the body read. A refused
    request's connection is closed, since the rest of its body is never read."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S):
        self.app, self.max_body_bytes, self.timeout_s = app, max_body_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is None or not length.isdigit():
            error = RequestError("the request needs a Content-Length header and a JSON body", status=411)
        elif int(length) > self.max_body_bytes:
            error = RequestError(f"the request body is {int(length)} bytes; the limit is {self.max_body_bytes}",
                                 status=413)
        else:
            chunks = []
            try:
                with anyio.fail_after(self.timeout_s):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunks.append(message.get("body", b""))
                        if not message.get("more_body", False):
                            break
            except TimeoutError:
                error = RequestError(f"the request body did not arrive within {self.timeout_s:g} s", status=408)
            else:
                await self.app(scope, _replay(b"".join(chunks), receive), send)
                return
        await error_response(error, {"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the connection's own messages (the disconnect a stream listens for)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def create_app(host: ModelHost, body_timeout_s: float = BODY_TIMEOUT_S) -> FastAPI:
    app = FastAPI(title="ERNIE Studio model server", version="1",
                  summary="One ERNIE 4.5 model behind the OpenAI chat-completions API.")
    app.add_middleware(RequestLimits, timeout_s=body_timeout_s)
    app.add_exception_handler(RequestError, _refused)
    app.add_exception_handler(HTTPException, _no_such_endpoint)
    app.add_exception_handler(Exception, _failed)

    @app.get("/health", responses={503: {"description": "the model is loading (or failed to load)"}})
    async def health() -> JSONResponse:
        ready = host.state == "ready"
        return JSONResponse({"status": host.state, "model": host.name}, status_code=200 if ready else 503)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [host.model_card()]})

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}}})
    async def chat_completions(request: Request) -> Response:
        """A reply to the conversation: one JSON object, or server-sent events when `stream` is true."""
        # parsed here rather than by FastAPI, so each malformed body gets its own message
        chat = parse_chat_request(_json(await request.body()))
        if chat.model is not None and chat.model != host.name:
            raise RequestError(f"model {chat.model!r} is not served here; this server serves {host.name!r}",
                               param="model", status=404, code="model_not_found")
        if host.state != "ready":
            raise RequestError("the model is still loading; retry when GET /health answers 200", status=503,
                               type_="service_unavailable")
        if chat.images or chat.marked_text:
            await anyio.to_thread.run_sync(read_images, chat, host.engine.image_processor, host.local_files)
        generation = host.submit(chat)
        # ("prompt", the encoded prompt) or ("error", why), from the model thread's queue
        kind, value = await anyio.to_thread.run_sync(generation.events.get)
        if kind == "error":
            raise value
        if chat.stream:
            return StreamingResponse(_events(host.name, generation, value), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        reasoning, content, last = await anyio.to_thread.run_sync(_collect, generation)
        message = {"role": "assistant", "content": content}
        finish = last.finish_reason
        if chat.calls_allowed:
            text, calls = parse_tool_calls(content)
            if calls:
                message.update(content=text or None, tool_calls=[call.to_openai() for call in with_ids(calls)])
                finish = _finish_with_calls(finish)
        if value.thinking:
            message["reasoning_content"] = reasoning
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": host.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(last, value),
        })

    def openapi() -> dict:
        if app.openapi_schema is None:
            FastAPI.openapi(app).setdefault("components", {}).setdefault("schemas", {}).update(REQUEST_SCHEMAS)
        return app.openapi_schema

    app.openapi = openapi
    return app


def _json(raw: bytes):
    try:
        # a body saved by a Windows editor may start with a UTF-8 byte order mark; it means nothing
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from None


def _collect(generation: Generation) -> tuple[str, str, object]:
    """A whole reply (on a worker thread): reasoning, content and the last chunk; raises the
    RequestError that ended the generation instead."""
    reasoning, content = [], []
    while True:
        kind, value = generation.events.get()
        if kind == "error":
            raise value
        reasoning.append(value.reasoning)
        content.append(value.content)
        if value.finish_reason is not None:
            return "".join(reasoning), "".join(content), value


def _finish_with_calls(finish: str) -> str:
    """A reply that ended itself after calling tools finishes with "tool_calls"; one cut off keeps
    "length" (or "cancelled")."""
    return "tool_calls" if finish == "stop" else finish


def _call_deltas(index: int, call) -> list[dict]:
    """One call as OpenAI streams it: its index, id and function name, then its arguments."""
    return [{"tool_calls": [{"index": index, "id": call.id, "type": "function",
                             "function": {"name": call.name, "arguments": ""}}]},
            {"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}]


async def _events(name: str, generation: Generation, prompt):
    """The reply as server-sent events: a role chunk, deltas, a finish chunk, usage if asked, [DONE].
    With tools, content goes through a `ToolCallSplitter`: calls are sent as `delta.tool_calls`,
    and no `<tool_call>` markup reaches `delta.content`."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": name}

    def chunk(delta: dict, finish_reason=None) -> bytes:
        return _event(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                           "logprobs": None}]))

    events = _forwarded(generation)
    splitter = ToolCallSplitter() if generation.request.calls_allowed else None
    calls = 0
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await events.get()
            if kind == "error":
                yield _event({"error": value.body()["error"]})
                break
            if value.reasoning:
                yield chunk({"reasoning_content": value.reasoning})
            pieces = [value.content] if splitter is None else splitter.feed(value.content)
            if splitter is not None and value.finish_reason is not None:
                pieces += splitter.end()
            for piece in pieces:
                if isinstance(piece, str):
                    if piece:
                        yield chunk({"content": piece})
                else:
                    for delta in _call_deltas(calls, piece):
                        yield chunk(delta)
                    calls += 1
            if value.finish_reason is not None:
                yield chunk({}, _finish_with_calls(value.finish_reason) if calls else value.finish_reason)
                if generation.request.include_usage:
                    yield _event(dict(base, choices=[], usage=_usage(value, prompt)))
                break
        yield b"data: [DONE]\n\n"
    finally:
        # Reached early when the client disconnects (Starlette cancels the stream, or closes this
        # generator): the generation stops at its next token. After a whole reply it changes nothing.
        generation.cancelled.set()


def _forwarded(generation: Generation) -> asyncio.Queue:
    """The generation's events on an asyncio queue, moved there by a thread of its own as they come:
    one wake-up of the event loop per token."""
    loop, forwarded = asyncio.get_running_loop(), asyncio.Queue()

    def forward() -> None:
        while True:
            kind, value = generation.events.get()
            loop.call_soon_threadsafe(forwarded.put_nowait, (kind, value))
            if kind == "error" or value.finish_reason is not None:
                return

    threading.Thread(target=forward, name="sse", daemon=True).start()
    return forwarded


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _usage(chunk, prompt) -> dict:
    """OpenAI's usage of the last chunk; `prompt_tokens_details.image_tokens` (of the prompt, a
    models.chat_engine.Prompt) counts each image's patch tokens and its start and end tokens."""
    return {"prompt_tokens": chunk.prompt_tokens, "completion_tokens": chunk.completion_tokens,
            "total_tokens": chunk.prompt_tokens + chunk.completion_tokens,
            "prompt_tokens_details": {"image_tokens": prompt.image_tokens}}


async def _refused(request: Request, exc: RequestError) -> JSONResponse:
    return error_response(exc)


async def _no_such_endpoint(request: Request, exc: HTTPException) -> JSONResponse:
    # the router's 404 and 405 (a known path, another method) both mean there is no such endpoint
    if exc.status_code in (404, 405):
        return error_response(RequestError(f"no such endpoint: {request.method} {request.url.path}", status=404,
                                           type_="not_found_error"))
    return error_response(RequestError(str(exc.detail), status=exc.status_code))


async def _failed(request: Request, exc: Exception) -> JSONResponse:
    return error_response(RequestError(f"internal error: {exc}", status=500, type_="server_error"))
