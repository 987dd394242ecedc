"""Chat with one loaded checkpoint: the model's own template, a KV-cached decoding loop, sampling,
stop strings, thinking split, and streaming deltas that never break a character.

`ChatEngine.load` takes what `models.loader.load_checkpoint` takes: a registry name, a checkpoint
or exported directory, or a LoRA adapter (applied on its base, unmerged). `prepare` fits a
conversation into the context (refusing, or dropping the oldest turns when asked), and `stream`
yields `Chunk`s, the last one carrying the finish reason and token counts. `TokenPicker` (one
sequence's sampling) and `ReplyText` (one reply's ids to chunks) are shared with
`models.batch_generate`, which decodes several prompts together on one engine; `models.serve`
queues requests in front of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from models.chat_request import RequestError, SamplingParams
from models.chat_template import (THINK_OPEN, encode_conversation, end_of_turn_markers, render,
                                  supports_thinking, use_template)
from models.image_facts import IMAGE_PLACEHOLDER
from models.text_stream import IncrementalDetokenizer, ReasoningSplitter, StopScanner

DEFAULT_MAX_TOKENS = 512


class ContextLengthError(RequestError):
    def __init__(self, message: str):
        super().__init__(message, param="messages", code="context_length_exceeded")


@dataclass
class Prompt:
    ids: list[int]
    text: str
    max_new_tokens: int
    thinking: bool
    dropped_messages: int = 0
    vision: object = None  # models.vl_inputs.VisionInput of a VL model's prompt

    @property
    def image_tokens(self) -> int:
        return self.vision.image_tokens if self.vision is not None else 0


@dataclass
class Chunk:
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos token and ERNIE's `<|end_of_sentence|>` (its sep token)."""
    ids = {tokenizer.eos_token_id, getattr(tokenizer, "sep_token_id", None)}
    return sorted(i for i in ids if i is not None)


def pick_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, seen: np.ndarray) -> int:
    """The next token from last-position `logits`: repetition penalty (CTRL's, over every token
    already in the sequence), then greedy or temperature / top-k / top-p sampling."""
    logits = logits.astype(np.float64)
    if params.repetition_penalty != 1.0 and seen.size:
        prior = logits[seen]
        logits[seen] = np.where(prior > 0, prior / params.repetition_penalty, prior * params.repetition_penalty)
    if params.greedy:
        return int(np.argmax(logits))
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.size:
        cutoff = np.partition(logits, -params.top_k)[-params.top_k]
        logits = np.where(logits < cutoff, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p) + 1)]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(probs.size, p=probs))


class TokenPicker:
    """One sequence's sampling state (its random generator, the tokens its repetition penalty sees)
    and the tokens it may never write; called with each step's last-position logits."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, unwritable: list[int]):
        self.params, self.unwritable = params, unwritable
        self.rng = np.random.default_rng(params.seed)
        self.seen = np.unique(np.asarray(prompt_ids, dtype=np.int64))

    def __call__(self, logits: np.ndarray) -> int:
        logits[self.unwritable] = -np.inf
        token = pick_token(logits, self.params, self.rng, self.seen)
        if self.params.repetition_penalty != 1.0:
            self.seen = np.union1d(self.seen, [token])
        return token


class ReplyText:
    """One reply's generated ids as `Chunk`s: end-of-turn ids and stop strings end it (`finish`
    becomes "stop"), `<think>` reasoning is split off, generated tokens are counted; `end` gives
    the last chunk, with what was held back."""

    def __init__(self, engine: "ChatEngine", prompt: Prompt, params: SamplingParams):
        self.detokenizer = IncrementalDetokenizer(engine.tokenizer)
        self.stops = StopScanner(list(params.stop) + engine.stop_markers)
        self.splitter = ReasoningSplitter(enabled=prompt.thinking, opened=prompt.text.rstrip().endswith(THINK_OPEN))
        self.stop_ids = set() if params.ignore_eos else engine.stop_ids
        self.prompt_tokens = len(prompt.ids)
        self.generated = 0
        self.finish: str | None = None

    def feed(self, token: int) -> Chunk | None:
        """The text `token` completes (None when there is none); sets `finish` when the reply ends."""
        if token in self.stop_ids:
            self.finish = "stop"
            return None
        self.generated += 1
        reasoning, content = self.splitter.feed(self.stops.feed(self.detokenizer.add(token)))
        if self.stops.stopped:
            self.finish = "stop"
        return Chunk(reasoning, content) if reasoning or content else None

    def end(self, finish: str) -> Chunk:
        """The last chunk; its finish reason is "stop" if the reply stopped itself, else `finish`."""
        tail = "" if self.stops.stopped else self.stops.feed(self.detokenizer.flush(), final=True)
        reasoning, content = self.splitter.feed(tail, final=True)
        return Chunk(reasoning, content, finish_reason=self.finish or finish, prompt_tokens=self.prompt_tokens,
                     completion_tokens=self.generated)


class ChatEngine:
    def __init__(self, model, tokenizer, name: str = "model", context_length: int | None = None,
                 image_processor=None):
        self.model = model
        self.tokenizer = tokenizer
        # a VL model's images.ImageProcessor; None for a text model, which is sent no images
        self.image_processor = image_processor
        # a VL model never writes an image's tokens: generated as text they would be taken for an image
        self.unwritable = []
        if image_processor is not None:
            from models.vl_inputs import special_ids

            self.unwritable = sorted(special_ids(tokenizer).values())
        self.name = name
        self.context_length = context_length or model.config.max_position_embeddings
        self.thinking_supported = supports_thinking(tokenizer)
        self.stop_ids = set(stop_token_ids(tokenizer))
        generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.stop_ids.update(generation_eos if isinstance(generation_eos, list) else
                             [generation_eos] if generation_eos is not None else [])
        self.stop_markers = end_of_turn_markers(tokenizer)
        self.default_max_tokens = DEFAULT_MAX_TOKENS
        # models.quant_spec.QuantSpec of a studio-quantized checkpoint (set by `load`); None: full precision
        self.quantization = None

    @classmethod
    def load(cls, name_or_path: str, adapter: str | None = None, template: str = "auto", dtype: str = "float32",
             max_model_len: int | None = None, name: str | None = None) -> "ChatEngine":
        from models.loader import load_checkpoint

        from models.checkpoints import VISION_MODEL_TYPES, read_model_config
        from models.loader import locate_checkpoint
        from models.quant_spec import quantization_of
        from models.vl_inputs import ImageProcessor

        model, tokenizer = load_checkpoint(name_or_path, adapter=adapter, dtype=dtype)
        use_template(tokenizer, template)
        context = model.config.max_position_embeddings
        if max_model_len is not None:
            context = min(context, max_model_len)
        base, adapter_dir = locate_checkpoint(name_or_path, adapter)
        processor = None
        if model.config.model_type in VISION_MODEL_TYPES:
            # an adapter carries the image sizes it was trained with (trainer/vision.ship_pixel_limits)
            trained = adapter_dir if adapter_dir and (adapter_dir / "preprocessor_config.json").is_file() else base
            processor = ImageProcessor(trained)
        engine = cls(model, tokenizer, name or name_or_path, context, processor)
        engine.quantization = quantization_of(read_model_config(base))
        return engine

    def quantization_card(self) -> dict | None:
        """The weights' quantization as `/v1/models` reports it (None: full precision), with the
        kernel its layers run: `fused` (Paddle's weight_only_linear, CUDA) or `portable`."""
        if self.quantization is None:
            return None
        from models.quant import runs_fused

        return {**self.quantization.to_dict(), "kernel": "fused" if runs_fused(self.model) else "portable"}

    def _encode(self, messages: list[dict], images: list, **kwargs):
        """(prompt ids, the VL encoding or None) of a conversation."""
        if self.image_processor is None:
            if images:
                raise RequestError(f"model {self.name!r} is a text model and cannot take images; send text only, "
                                   "or choose an ERNIE 4.5 VL model", param="messages")
            return encode_conversation(self.tokenizer, messages, **kwargs)[0], None
        from models.vl_inputs import encode_vl_conversation

        vision = encode_vl_conversation(self.tokenizer, self.image_processor, messages, images, **kwargs)
        return vision.input_ids, vision

    def prepare(self, messages: list[dict], max_tokens: int | None = None, thinking: bool | None = None,
                truncation: str = "disabled", images: list | None = None, tools: list | None = None) -> Prompt:
        """Encode a conversation (ending with a user turn or tool results) for generation, fitted to
        the context. `images`: PIL images, one per `<image>` placeholder in the messages' text, in
        order; turns dropped to fit the context take their images with them. `tools`: OpenAI
        function definitions the prompt lists (models/chat_template.render)."""
        if thinking is not None and not self.thinking_supported:
            raise RequestError(f"model {self.name!r} has no thinking mode (its chat template has no <think> "
                               "block); leave chat_template_kwargs.enable_thinking unset",
                               param="chat_template_kwargs.enable_thinking")
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        if tools:
            kwargs["tools"] = tools
        messages, images = list(messages), list(images or [])
        dropped = 0
        while True:
            ids, vision = self._encode(messages, images, **kwargs)
            room = self.context_length - len(ids)
            wanted = max_tokens if max_tokens is not None else 1
            if wanted <= room:
                break
            first = 1 if messages[0]["role"] == "system" else 0
            later_user = next((i for i in range(first + 1, len(messages)) if messages[i]["role"] == "user"), None)
            if truncation != "auto" or later_user is None:
                raise ContextLengthError(self._too_long(len(ids), max_tokens, truncation, dropped))
            dropped += later_user - first
            gone = messages[first:later_user]
            images = images[sum(str(m.get("content", "")).count(IMAGE_PLACEHOLDER) for m in gone):]
            messages = messages[:first] + messages[later_user:]
        text = render(self.tokenizer, messages, add_generation_prompt=True, **kwargs)
        opened = text.rstrip().endswith(THINK_OPEN)
        thinking_on = self.thinking_supported and (opened or thinking is not False)
        budget = max_tokens if max_tokens is not None else min(room, self.default_max_tokens)
        return Prompt(ids=ids, text=text, max_new_tokens=budget, thinking=thinking_on, dropped_messages=dropped,
                      vision=vision)

    def _too_long(self, prompt_tokens: int, max_tokens: int | None, truncation: str, dropped: int) -> str:
        asked = f" and max_tokens asks for {max_tokens} more" if max_tokens is not None else ""
        where = " even after dropping every earlier turn" if dropped or truncation == "auto" else ""
        advice = ("shorten the last message" if truncation == "auto" else
                  "shorten the conversation, lower max_tokens, or send truncation='auto' to drop the oldest turns")
        return (f"this model's maximum context length is {self.context_length} tokens; the messages take "
                f"{prompt_tokens} tokens{where}{asked}: {advice}")

    def generate_ids(self, prompt_ids: list[int], params: SamplingParams, max_new_tokens: int,
                     use_cache: bool = True, vision=None) -> Iterator[int]:
        """Token ids as they are chosen, end-of-turn ids included; the caller decides when to stop.
        `vision`: the prompt's VL encoding (models.vl_inputs), for a VL model."""
        import paddle

        from models.vl_inputs import next_token_inputs, prompt_inputs

        picker = TokenPicker(prompt_ids, params, self.unwritable)
        sequence = list(prompt_ids)
        cache = None
        with paddle.no_grad():
            for step in range(max_new_tokens):
                if vision is not None:
                    generated = sequence[len(prompt_ids):]
                    if not use_cache:
                        inputs = prompt_inputs(vision, generated)
                    elif cache is None:
                        inputs = prompt_inputs(vision)
                    else:
                        inputs = next_token_inputs(vision, sequence[-1], step - 1)
                    out = self.model(**inputs, past_key_values=cache, use_cache=use_cache, return_dict=True)
                    cache = out.past_key_values if use_cache else None
                elif use_cache:
                    fresh = sequence if cache is None else sequence[-1:]
                    start = len(sequence) - len(fresh)
                    out = self.model(
                        paddle.to_tensor([fresh], dtype="int64"),
                        position_ids=paddle.arange(start, start + len(fresh), dtype="int64").unsqueeze(0),
                        past_key_values=cache, use_cache=True, return_dict=True,
                    )
                    cache = out.past_key_values
                else:
                    out = self.model(paddle.to_tensor([sequence], dtype="int64"), use_cache=False, return_dict=True)
                token = picker(out.logits[0, -1].astype("float32").numpy())
                sequence.append(token)
                yield token

    def stream(self, prompt: Prompt, params: SamplingParams, cancelled: Callable[[], bool] = lambda: False,
               use_cache: bool = True) -> Iterator[Chunk]:
        """Stream the reply to `prompt`; the last chunk has `finish_reason` ("stop", "length" or
        "cancelled") and the token counts."""
        reply = ReplyText(self, prompt, params)
        finish = "length"
        for token in self.generate_ids(prompt.ids, params, prompt.max_new_tokens, use_cache, prompt.vision):
            chunk = reply.feed(token)
            if chunk is not None:
                yield chunk
            if reply.finish:
                break
            if cancelled():
                finish = "cancelled"
                break
        yield reply.end(finish)

    def reply(self, messages: list[dict], params: SamplingParams | None = None, **prepare_args) -> tuple[str, str]:
        """The whole (reasoning, answer) for a conversation; a convenience over `prepare` + `stream`."""
        params = params or SamplingParams(temperature=0)
        prompt = self.prepare(messages, params.max_tokens, **prepare_args)
        reasoning, content = [], []
        for chunk in self.stream(prompt, params):
            reasoning.append(chunk.reasoning)
            content.append(chunk.content)
        return "".join(reasoning), "".join(content)
