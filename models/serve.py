"""`python -m models.serve --model DIR_OR_NAME [--adapter DIR]`: one model behind the OpenAI chat API.

This module owns the process: its options, the model thread (`ModelHost`), the port and the
uvicorn server running the API of `models.api` (`/v1/chat/completions`, `/v1/models`, `/health`,
`/docs`). The port is bound before the model loads, so a client can watch the load; a model that
fails to load ends the process with status 1, and bad arguments (a model path, an adapter, a
non-loopback host without --allow-remote) are refused before anything is loaded (status 2).
SIGTERM stops the generation under way at its next token and ends the process.

Requests are queued for one generation thread, which decodes a text model's requests in batches
(`models.batch_generate`; `--max-num-seqs` rows at most): a request that arrives while a batch is
decoding joins it at the next step, and each reply is the one it would get alone. A VL model's
requests are answered one after another. The server binds loopback unless told otherwise; one
that takes remote clients (--allow-remote on another host) reads no local image files a request
names.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import uvicorn

from models.api import create_app
from models.chat_request import ChatRequest, RequestError
from plumbing.network import is_loopback


@dataclass
class Generation:
    """One queued request and the events its generation produces for the HTTP side."""

    request: ChatRequest
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class ModelHost:
    """Holds the engine and runs every generation on one thread: paddle keeps its execution mode
    per thread, and one owner thread keeps the model's state simple. A text model decodes requests
    in batches (`models.batch_generate`): the requests waiting when a step starts join the batch,
    up to `max_num_seqs` rows, and each leaves it when its reply ends. A VL model answers one
    request after another."""

    def __init__(self, name: str, local_files: bool = True, max_num_seqs: int = 8):
        self.name = name
        self.local_files = local_files  # whether requests may name local image files
        self.max_num_seqs = max_num_seqs
        self.state = "loading"
        self.engine = None
        self.created = int(time.time())
        self.pending: queue.Queue[Generation] = queue.Queue()
        self.stopping = threading.Event()

    def run(self, load) -> None:
        """Load the engine, then serve the queue forever (the model thread's body)."""
        from models.batch_generate import unbatchable

        self.engine = load()
        self.state = "ready"
        alone = unbatchable(self.engine)
        if alone:
            print(f"{alone}: requests are answered one after another", file=sys.stderr, flush=True)
            while True:
                self._answer_alone(self.pending.get())
        self._decode_batches()

    def submit(self, request: ChatRequest) -> Generation:
        generation = Generation(request)
        self.pending.put(generation)
        return generation

    def _prepare(self, generation: Generation):
        """The request's prompt, announced to the HTTP side; None when the request is refused."""
        request = generation.request
        try:
            prompt = self.engine.prepare(request.messages, request.sampling.max_tokens, request.thinking,
                                         request.truncation, images=request.loaded_images, tools=request.tools)
        except RequestError as exc:
            generation.events.put(("error", exc))
            return None
        generation.events.put(("prompt", prompt))
        return prompt

    def _answer_alone(self, generation: Generation) -> None:
        if generation.cancelled.is_set():
            return
        try:
            prompt = self._prepare(generation)
            if prompt is None:
                return
            for chunk in self.engine.stream(prompt, generation.request.sampling, partial(self._cancelled, generation)):
                self._deliver(generation, chunk)
        except Exception as exc:  # a failed generation must not take the server down with it
            traceback.print_exc()
            generation.events.put(("error", _failure(exc)))

    def _decode_batches(self) -> None:
        """Serve the queue in batches: before every step the requests waiting join (as many as
        there is room for), prefilled one by one; a finished or cancelled row leaves at once."""
        from models.batch_generate import BatchDecoder

        decoder = BatchDecoder(self.engine, self.max_num_seqs)
        while True:
            joining = [] if decoder.rows else [self.pending.get()]
            while len(joining) < decoder.room():
                try:
                    joining.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            try:
                joined = 0
                for generation in joining:
                    if generation.cancelled.is_set():
                        continue
                    prompt = self._prepare(generation)
                    if prompt is not None:
                        joined += 1
                        sampling = generation.request.sampling
                        for row, chunk in decoder.add(prompt, sampling, generation,
                                                      partial(self._cancelled, generation)):
                            self._deliver(row, chunk)
                if joined and len(decoder) > 1:
                    # the evidence of batching that tests and users read in the log
                    print(f"batch: {len(decoder)} requests decoding together ({joined} joined)",
                          file=sys.stderr, flush=True)
                for row, chunk in decoder.step():
                    self._deliver(row, chunk)
            except Exception as exc:  # a failed step fails the batch under way, not the server
                traceback.print_exc()
                failed = {id(g): g for g in [*(row.key for row in decoder.rows), *joining]}
                for generation in failed.values():
                    generation.events.put(("error", _failure(exc)))
                decoder = BatchDecoder(self.engine, self.max_num_seqs)

    @staticmethod
    def _deliver(generation: Generation, chunk) -> None:
        generation.events.put(("chunk", chunk))
        if chunk.finish_reason == "cancelled":
            print(f"generation cancelled by the client after {chunk.completion_tokens} tokens",
                  file=sys.stderr, flush=True)

    def _cancelled(self, generation: Generation) -> bool:
        return generation.cancelled.is_set() or self.stopping.is_set()

    def model_card(self) -> dict:
        """The `/v1/models` entry; once loaded with the context, thinking, vision, and `quantization`
        of a studio-quantized checkpoint (None: full precision)."""
        card = {"id": self.name, "object": "model", "created": self.created, "owned_by": "ernie-studio"}
        if self.engine is not None:
            card.update(max_model_len=self.engine.context_length, thinking=self.engine.thinking_supported,
                        vision=self.engine.image_processor is not None,
                        quantization=self.engine.quantization_card())
        return card


def _failure(exc: Exception) -> RequestError:
    return RequestError(f"generation failed: {exc}", status=500, type_="server_error")


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
    parser.add_argument("--max-num-seqs", type=int, default=8,
                        help="most requests a text model decodes together (1: one after another)")
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
    for flag in ("max_model_len", "default_max_tokens", "max_num_seqs"):
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


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so the port is known (and reported) before uvicorn or the model starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class ModelHTTPServer(uvicorn.Server):
    """uvicorn's server, whose stop signal also stops the generation under way at its next token;
    a graceful shutdown would otherwise wait for the whole reply."""

    def __init__(self, host: ModelHost, config: uvicorn.Config):
        super().__init__(config)
        self.host = host

    def handle_exit(self, sig, frame) -> None:
        self.host.stopping.set()
        super().handle_exit(sig, frame)


def take_signals(server: ModelHTTPServer) -> None:
    """SIGTERM and SIGINT go to a thread of their own that stops `server`. Signal handlers would
    not do: importing paddle installs a C-level SIGTERM handler that ends the process on the spot,
    over Python's. Blocked here, before any other thread starts, the signals stay blocked in
    every thread (paddle's and uvicorn's included) and only `sigwait` receives them; uvicorn's
    raising the signal again after its shutdown then changes nothing."""
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def wait() -> None:
        while True:
            server.handle_exit(signal.sigwait(signals), None)

    threading.Thread(target=wait, name="signals", daemon=True).start()


def main(argv=None) -> int:
    from models.checkpoints import ModelNotFound

    args = parse_args(argv)
    try:
        check_arguments(args)
    except (ValueError, ModelNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.served_model_name or args.model
    host = ModelHost(name, local_files=is_loopback(args.host), max_num_seqs=args.max_num_seqs)
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    server = ModelHTTPServer(host, uvicorn.Config(
        create_app(host), http="h11", ws="none", lifespan="off", loop="asyncio", proxy_headers=False,
        server_header=False, use_colors=False,
        # an idle keep-alive connection is closed after a minute, as the old server's socket timeout did
        timeout_keep_alive=60,
        # SIGTERM has already cancelled the generation; whatever still runs after this is cut off
        timeout_graceful_shutdown=5))
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
            server.should_exit = True

    take_signals(server)
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()
    threading.Thread(target=model_thread, name="model", daemon=True).start()
    print(f"listening on http://{args.host}:{port} (loading {args.model})", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return outcome["status"]


if __name__ == "__main__":
    sys.exit(main())
