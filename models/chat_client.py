"""A small client for `models.serve` servers: one conversation streamed from one server, or
conversations streamed from several at once (base and tuned side by side).

No paddle here: the web UI uses it. Streams are read with httpx as server-sent events; an error
the server reports (before or during a stream) becomes a `ChatError` carrying the server's message.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import httpx


class ChatError(Exception):
    """The server refused the request or failed while answering; `status` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Delta:
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None
    usage: dict | None = None
    # OpenAI's delta.tool_calls entries: {"index", "id", "function": {"name", "arguments"}}, then arguments
    tool_calls: list = field(default_factory=list)


@dataclass
class Reply:
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)


def request_body(messages: list[dict], *, model: str | None = None, temperature: float | None = None,
                 top_p: float | None = None, top_k: int | None = None, max_tokens: int | None = None,
                 repetition_penalty: float | None = None, seed: int | None = None, stop=None,
                 thinking: bool | None = None, truncation: str | None = None, tools: list | None = None,
                 stream: bool = False) -> dict:
    """An OpenAI chat-completions body; parameters left at None are left to the server."""
    body: dict = {"messages": messages, "stream": stream}
    optional = dict(model=model, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens,
                    repetition_penalty=repetition_penalty, seed=seed, stop=stop, truncation=truncation, tools=tools)
    body.update({key: value for key, value in optional.items() if value is not None})
    if thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": thinking}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


class ChatClient:
    def __init__(self, base_url: str, timeout: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def health(self) -> str:
        """"ready", "loading", or "unreachable"."""
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2.0).json().get("status", "unreachable")
        except (httpx.HTTPError, ValueError):
            return "unreachable"

    def wait_ready(self, timeout: float = 120.0, alive=lambda: True) -> None:
        """Block until the server answers ready; `alive()` going false (its process died) ends the wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health() == "ready":
                return
            if not alive():
                raise ChatError(f"the model server at {self.base_url} exited while loading")
            time.sleep(0.2)
        raise ChatError(f"the model server at {self.base_url} was not ready within {timeout:.0f} s")

    def model_card(self) -> dict:
        try:
            response = httpx.get(f"{self.base_url}/v1/models", timeout=5.0)
        except httpx.HTTPError as exc:
            raise ChatError(f"lost the model server at {self.base_url}: {exc}") from exc
        return response.json()["data"][0]

    def stream(self, messages: list[dict], **params) -> Iterator[Delta]:
        """Deltas as the server sends them; the last has `finish_reason`, and `usage` follows it."""
        body = request_body(messages, stream=True, **params)
        replying = False
        try:
            with httpx.stream("POST", f"{self.base_url}/v1/chat/completions", json=body,
                              timeout=httpx.Timeout(self.timeout, connect=5.0)) as response:
                if response.status_code != 200:
                    response.read()
                    raise ChatError(_error_message(response), response.status_code)
                replying = True
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: "):]
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise ChatError(event["error"].get("message", "the server failed"), 500)
                    if not event["choices"]:
                        yield Delta(usage=event.get("usage"))
                        continue
                    choice = event["choices"][0]
                    delta = choice.get("delta", {})
                    yield Delta(delta.get("reasoning_content") or "", delta.get("content") or "",
                                choice.get("finish_reason"), tool_calls=delta.get("tool_calls") or [])
        except httpx.HTTPError as exc:
            # A chunked stream cut short by a dying server reads as a protocol or read error; to the user
            # it is the same event as a stream that just ends.
            if not (replying and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError))):
                raise ChatError(f"lost the model server at {self.base_url}: {exc}") from exc
        raise ChatError(f"the model server at {self.base_url} stopped in the middle of the reply (it may have "
                        f"crashed; its log says why)")

    def complete(self, messages: list[dict], **params) -> Reply:
        reply = Reply()
        for delta in self.stream(messages, **params):
            reply.reasoning += delta.reasoning
            reply.content += delta.content
            reply.finish_reason = delta.finish_reason or reply.finish_reason
            reply.usage = delta.usage or reply.usage
        return reply


def side_by_side(requests: Sequence[tuple[ChatClient, list[dict], dict]]) -> Iterator[tuple[int, Delta | ChatError]]:
    """Stream several `(client, messages, params)` requests at once (base and tuned answering the
    same prompt); yield `(index, delta)` as deltas arrive from any of them, and `(index, ChatError)`
    for a request that fails (the others carry on)."""
    for batch in side_by_side_batches(requests, every_s=0.0):
        yield from batch


def side_by_side_batches(requests: Sequence[tuple[ChatClient, list[dict], dict]],
                         every_s: float) -> Iterator[list[tuple[int, Delta | ChatError]]]:
    """`side_by_side`, with the events that arrive within `every_s` of the last batch gathered into
    one list: a reader that redraws per batch (a browser page) gets at most one batch per `every_s`,
    the first event at once, and the last one as soon as every stream has ended.

    Closing this generator ends the streams: each connection is closed at its next delta, and a
    server stops generating for a client that disconnects."""
    events: queue.Queue = queue.Queue()
    done = object()
    stopped = threading.Event()

    def pump(index: int, client: ChatClient, messages: list[dict], params: dict) -> None:
        try:
            with closing(client.stream(messages, **params)) as deltas:
                for delta in deltas:
                    if stopped.is_set():
                        return
                    events.put((index, delta))
        except ChatError as exc:
            events.put((index, exc))
        finally:
            events.put((index, done))

    for index, (client, messages, params) in enumerate(requests):
        threading.Thread(target=pump, args=(index, client, messages, params), daemon=True).start()
    running, due = len(requests), 0.0
    try:
        while running:
            batch = []
            index, item = events.get()
            while True:
                if item is done:
                    running -= 1
                else:
                    batch.append((index, item))
                wait = due - time.monotonic()
                try:
                    index, item = events.get(timeout=wait) if running and wait > 0 else events.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
                due = time.monotonic() + every_s
    finally:
        stopped.set()
