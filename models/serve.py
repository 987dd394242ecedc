"""`python -m models.serve --model DIR_OR_NAME [--adapter DIR]`: one model behind the OpenAI chat API.

Endpoints: `POST /v1/chat/completions` (plain or streamed as server-sent events ending in
`data: [DONE]`, with `reasoning_content` for thinking), `GET /v1/models`, and `GET /health` (503
while the model loads, 200 when it is ready). The port is bound before the model loads, so a
client can watch the load; a model that fails to load ends the process with status 1, and a bad
model path or adapter is refused before anything is loaded (status 2).

Requests are checked on their own threads and then queued for one generation thread, so
concurrent requests are answered one after another and never mixed. A client that disconnects
mid-stream cancels its generation. The server binds loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from models.chat_request import ChatRequest, RequestError, parse_chat_request
from models.network import is_loopback

MAX_BODY_BYTES = 8 << 20


@dataclass
class Generation:
    """One queued request and the events its generation produces for the HTTP thread."""

    request: ChatRequest
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class ModelHost:
    """Holds the engine and runs generations one at a time, all on one thread: paddle keeps its
    execution mode per thread, and one owner thread keeps the model's state simple."""

    def __init__(self, name: str):
        self.name = name
        self.state = "loading"
        self.engine = None
        self.created = int(time.time())
        self.pending: queue.Queue[Generation] = queue.Queue()
        self.stopping = threading.Event()

    def run(self, load) -> None:
        """Load the engine, then serve the queue forever (the model thread's body)."""
        self.engine = load()
        self.state = "ready"
        self._work()

    def submit(self, request: ChatRequest) -> Generation:
        generation = Generation(request)
        self.pending.put(generation)
        return generation

    def _work(self) -> None:
        while True:
            generation = self.pending.get()
            if generation.cancelled.is_set():
                continue
            request = generation.request
            try:
                prompt = self.engine.prepare(request.messages, request.sampling.max_tokens, request.thinking,
                                             request.truncation)
                generation.events.put(("prompt", prompt))
                for chunk in self.engine.stream(prompt, request.sampling, partial(self._cancelled, generation)):
                    generation.events.put(("chunk", chunk))
                if chunk.finish_reason == "cancelled":
                    print(f"generation cancelled by the client after {chunk.completion_tokens} tokens",
                          file=sys.stderr, flush=True)
            except RequestError as exc:
                generation.events.put(("error", exc))
            except Exception as exc:  # a failed generation must not take the server down with it
                traceback.print_exc()
                generation.events.put(("error", RequestError(f"generation failed: {exc}", status=500,
                                                             type_="server_error")))

    def _cancelled(self, generation: Generation) -> bool:
        return generation.cancelled.is_set() or self.stopping.is_set()

    def model_card(self) -> dict:
        card = {"id": self.name, "object": "model", "created": self.created, "owned_by": "ernie-studio"}
        if self.engine is not None:
            card.update(max_model_len=self.engine.context_length, thinking=self.engine.thinking_supported)
        return card


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ErnieStudioServe/1"
    # a client that stops sending (a Content-Length longer than its body) frees its thread
    timeout = 60
    host: ModelHost  # set on the subclass made per server

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: RequestError) -> None:
        self._send_json(error.status, error.body())

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            ready = self.host.state == "ready"
            self._send_json(200 if ready else 503, {"status": self.host.state, "model": self.host.name})
        elif path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [self.host.model_card()]})
        else:
            self._send_error(RequestError(f"no such endpoint: GET {path}", status=404, type_="not_found_error"))

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path != "/v1/chat/completions":
            self._send_error(RequestError(f"no such endpoint: POST {path}", status=404, type_="not_found_error"))
            return
        try:
            request = parse_chat_request(self._read_json())
            if request.model is not None and request.model != self.host.name:
                raise RequestError(f"model {request.model!r} is not served here; this server serves "
                                   f"{self.host.name!r}", param="model", status=404, code="model_not_found")
            if self.host.state != "ready":
                raise RequestError("the model is still loading; retry when GET /health answers 200", status=503,
                                   type_="service_unavailable")
        except RequestError as exc:
            self._send_error(exc)
            return
        generation = self.host.submit(request)
        kind, value = generation.events.get()
        if kind == "error":
            self._send_error(value)
        elif request.stream:
            self._stream(generation, value)
        else:
            self._complete(generation, value)

    def _read_json(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError("the request needs a Content-Length header and a JSON body", status=411)
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(f"the request body is {int(length)} bytes; the limit is {MAX_BODY_BYTES}", status=413)
        raw = self.rfile.read(int(length))
        try:
            # a body saved by a Windows editor may start with a UTF-8 byte order mark; it means nothing
            return json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise RequestError(f"the request body is not UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RequestError(f"malformed JSON body: {exc}") from None

    def _complete(self, generation: Generation, prompt) -> None:
        reasoning, content = [], []
        while True:
            kind, value = generation.events.get()
            if kind == "error":
                self._send_error(value)
                return
            reasoning.append(value.reasoning)
            content.append(value.content)
            if value.finish_reason is not None:
                break
        message = {"role": "assistant", "content": "".join(content)}
        if prompt.thinking:
            message["reasoning_content"] = "".join(reasoning)
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.host.name,
            "choices": [{"index": 0, "message": message, "finish_reason": value.finish_reason, "logprobs": None}],
            "usage": _usage(value),
        })

    def _stream(self, generation: Generation, prompt) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.host.name}

        def event(delta: dict, finish_reason=None) -> dict:
            return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                        "logprobs": None}])

        try:
            self._send_event(event({"role": "assistant", "content": ""}))
            while True:
                kind, value = generation.events.get()
                if kind == "error":
                    self._send_event({"error": value.body()["error"]})
                    break
                delta = {}
                if value.reasoning:
                    delta["reasoning_content"] = value.reasoning
                if value.content:
                    delta["content"] = value.content
                if delta:
                    self._send_event(event(delta))
                if value.finish_reason is not None:
                    self._send_event(event({}, value.finish_reason))
                    if generation.request.include_usage:
                        self._send_event(dict(base, choices=[], usage=_usage(value)))
                    break
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            generation.cancelled.set()

    def _send_event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.flush()


def _usage(chunk) -> dict:
    return {"prompt_tokens": chunk.prompt_tokens, "completion_tokens": chunk.completion_tokens,
            "total_tokens": chunk.prompt_tokens + chunk.completion_tokens}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="built-in model name, checkpoint or export directory, "
                        "or a LoRA job's output directory")
    parser.add_argument("--adapter", help="LoRA adapter directory applied on --model without merging")
    parser.add_argument("--served-model-name", help="the model id clients use (default: --model as given)")
    parser.add_argument("--template", default="auto", help="chat template: auto (the checkpoint's own), "
                        "ernie or ernie_nothink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="auto: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--max-model-len", type=int, help="cap the context below the model's own")
    parser.add_argument("--default-max-tokens", type=int, default=512,
                        help="reply length when a request sets no max_tokens")
    parser.add_argument("--parent-pid", type=int,
                        help="exit when this process ends (the studio that loaded the model)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback --host (the API has no authentication)")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what can be refused before loading anything; raises ValueError or ModelNotFound."""
    from models.chat_template import TEMPLATES
    from models.loader import locate_checkpoint
    from models.registry import MODELS

    if not is_loopback(args.host) and not args.allow_remote:
        raise ValueError(f"--host {args.host} is not loopback and the API has no authentication; "
                         "pass --allow-remote to bind it anyway")
    if args.template != "auto" and args.template not in TEMPLATES:
        raise ValueError(f"--template must be auto or one of {', '.join(TEMPLATES)}, got {args.template!r}")
    for flag in ("max_model_len", "default_max_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    spec = MODELS.get(args.model)
    if spec is None or not spec.builtin or args.adapter:
        locate_checkpoint(args.model, args.adapter)


def load_engine(args: argparse.Namespace, name: str):
    """The engine `args` ask for, on the GPU when there is one (unless --device says otherwise)."""
    import paddle

    from models.chat_engine import ChatEngine

    paddle.disable_static()
    gpu = args.device == "gpu" or (args.device == "auto" and paddle.is_compiled_with_cuda()
                                   and paddle.device.cuda.device_count() > 0)
    paddle.set_device("gpu" if gpu else "cpu")
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if gpu else "float32")
    engine = ChatEngine.load(args.model, adapter=args.adapter, template=args.template, dtype=dtype,
                             max_model_len=args.max_model_len, name=name)
    engine.default_max_tokens = args.default_max_tokens
    return engine


def watch_parent(pid: int) -> None:
    """Shut the server down once process `pid` is gone, so a studio that dies leaves no model behind."""
    import psutil

    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(1)
    print(f"process {pid} ended; shutting down", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def write_port_file(path: Path, port: int) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(str(port), encoding="utf-8")
    os.replace(partial, path)


def main(argv=None) -> int:
    from models.registry import ModelNotFound

    args = parse_args(argv)
    try:
        check_arguments(args)
    except (ValueError, ModelNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.served_model_name or args.model
    host = ModelHost(name)
    handler = type("BoundHandler", (Handler,), {"host": host})
    try:
        server = ThreadingHTTPServer((args.host, args.port), handler)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    outcome = {"status": 0}

    def model_thread():
        def load():
            engine = load_engine(args, name)
            print(f"serving {name} on http://{args.host}:{port}/v1", file=sys.stderr, flush=True)
            return engine

        try:
            host.run(load)
        except Exception as exc:
            traceback.print_exc()
            print(f"error: cannot load {args.model}: {exc}", file=sys.stderr, flush=True)
            host.state = "failed"
            outcome["status"] = 1
            server.shutdown()

    def stop(*_):
        host.stopping.set()  # a generation under way ends at its next token
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()
    threading.Thread(target=model_thread, name="model", daemon=True).start()
    print(f"listening on http://{args.host}:{port} (loading {args.model})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return outcome["status"]


if __name__ == "__main__":
    sys.exit(main())
