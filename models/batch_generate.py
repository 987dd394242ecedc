"""Batched decoding on one `ChatEngine`: several text prompts of any lengths decoded together, each
row giving the very tokens one-at-a-time decoding (`ChatEngine.generate_ids` with the KV cache)
gives it.

How: a prompt is prefilled alone, by the same forward one-at-a-time decoding runs, and its KV cache
joins the batch's, every row right-aligned in one cache and left-padded to the widest. Each step
then runs one forward for the whole batch: every row's last token at its own position (its own
length), under an attention mask that hides the padding columns. A row ends on its own
end-of-turn ids, stop strings, `max_new_tokens` or cancellation and leaves the batch at once: its
cache rows are dropped, and the padding no remaining row needs is trimmed. A prompt can join a
batch under way (`BatchDecoder.add`); that is how the model server starts a request that arrives
mid-batch at the next step.

Padding never enters the model as a token: a prefill has none, and a step feeds one real token per
row. So the MoE router, its capacity and any expert-usage count see real tokens only, and masked
columns get an attention weight of exactly zero (paddleformers adds the dtype's minimum, whose
exponential underflows to 0; zero-filled padding keys and values keep everything finite).

Limits: text models only. A VL model's prompt (images, 3-D positions) is decoded one at a time
through `ChatEngine.stream`, and `BatchDecoder.add` refuses it; so are all prompts of an MoE whose
evaluation capacity could drop tokens (`moe_capacity` below the expert count), where one row's
tokens would change another's routing (`unbatchable` says why).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from models.chat_engine import ChatEngine, Chunk, Prompt, ReplyText, TokenPicker
from models.chat_request import SamplingParams

DEFAULT_MAX_ROWS = 16


def _never() -> bool:
    return False


def unbatchable(engine: ChatEngine) -> str | None:
    """Why `engine` cannot decode rows together (None: it can)."""
    from models.moe_dispatch import expert_groups, moe_blocks

    if engine.image_processor is not None:
        return f"{engine.name} is a vision-language model; its prompts are decoded one at a time"
    for index, block in moe_blocks(engine.model):
        experts = sum(size for _, size in expert_groups(block))
        factors = block.config.moe_capacity
        # a step of B rows routes B tokens; with a factor of at least the expert count an expert's
        # limit (factor * B // experts) is never below B, so no token is ever dropped (malformed
        # factors are refused by moe_dispatch.capacity at the first forward)
        if isinstance(factors, (list, tuple)) and len(factors) == 3 and min(factors[1:]) < experts:
            return (f"MoE layer {index} has moe_capacity {list(factors)} below its {experts} experts: "
                    "tokens decoded together could push each other over an expert's capacity")
    return None


class _Ids:
    """A row of `generate_ids_batch`: every token kept, as `ChatEngine.generate_ids` yields them;
    only its token budget ends it."""

    finish = None

    def __init__(self):
        self.ids: list[int] = []

    def feed(self, token: int) -> None:
        self.ids.append(token)

    def end(self, finish: str) -> Chunk:
        return Chunk(finish_reason=finish, completion_tokens=len(self.ids))


@dataclass
class _Row:
    key: object
    reply: ReplyText | _Ids
    picker: TokenPicker
    max_new_tokens: int
    cancelled: Callable[[], bool]
    length: int  # this row's tokens in the cache
    last: int = -1  # the token chosen last, not yet in the cache
    picked: int = 0


class BatchDecoder:
    """Rows decoding together on one engine, one token per row per `step`; `add` and `step` return
    (key, Chunk) events, a row's last chunk carrying its finish reason and token counts."""

    def __init__(self, engine: ChatEngine, max_rows: int = DEFAULT_MAX_ROWS):
        reason = unbatchable(engine)
        if reason:
            raise ValueError(reason)
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.engine, self.max_rows = engine, max_rows
        self.rows: list[_Row] = []
        self.cache = None  # paddleformers DynamicCache, [rows, heads, width, head_dim] per layer
        self.width = 0

    def __len__(self) -> int:
        return len(self.rows)

    def room(self) -> int:
        return self.max_rows - len(self.rows)

    def add(self, prompt: Prompt, params: SamplingParams, key: object = None,
            cancelled: Callable[[], bool] = _never) -> list[tuple[object, Chunk]]:
        """Prefill `prompt` and choose its first token; from the next `step` on it decodes with the
        others. Returns its first events (its last chunk too when one token ends it)."""
        if prompt.vision is not None:
            raise ValueError("a VL prompt is decoded one at a time (ChatEngine.stream), not in a batch")
        return self._add(prompt.ids, params, prompt.max_new_tokens, key, cancelled,
                         ReplyText(self.engine, prompt, params))

    def _add(self, ids: list[int], params: SamplingParams, max_new_tokens: int, key: object,
             cancelled: Callable[[], bool], reply) -> list[tuple[object, Chunk]]:
        import paddle

        if not self.room():
            raise ValueError(f"the batch already has its {self.max_rows} rows")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        with paddle.no_grad():
            out = self.engine.model(
                paddle.to_tensor([ids], dtype="int64"),
                position_ids=paddle.arange(0, len(ids), dtype="int64").unsqueeze(0),
                past_key_values=None, use_cache=True, return_dict=True,
            )
        self._join(out.past_key_values, len(ids))
        row = _Row(key, reply, TokenPicker(ids, params, self.engine.unwritable), max_new_tokens, cancelled, len(ids))
        self.rows.append(row)
        return self._advance([out.logits[0, -1].astype("float32").numpy() if r is row else None
                              for r in self.rows])

    def step(self) -> list[tuple[object, Chunk]]:
        """One token for every row, from one forward over the batch."""
        import paddle

        if not self.rows:
            return []
        mask = np.zeros([len(self.rows), self.width + 1], dtype=bool)
        for i, row in enumerate(self.rows):
            mask[i, self.width - row.length:] = True
        with paddle.no_grad():
            out = self.engine.model(
                paddle.to_tensor([[row.last] for row in self.rows], dtype="int64"),
                position_ids=paddle.to_tensor([[row.length] for row in self.rows], dtype="int64"),
                attention_mask=paddle.to_tensor(mask), past_key_values=self.cache, use_cache=True,
                return_dict=True,
            )
        self.cache = out.past_key_values
        self.width += 1
        for row in self.rows:
            row.length += 1
        return self._advance(list(out.logits[:, -1].astype("float32").numpy()))

    def _advance(self, logits: list) -> list[tuple[object, Chunk]]:
        """Choose the next token of every row given logits (None: not this time); end the rows that
        are done and drop them from the batch."""
        events, keep = [], []
        for i, (row, row_logits) in enumerate(zip(self.rows, logits)):
            if row_logits is None:
                keep.append(i)
                continue
            token = row.picker(row_logits)
            row.picked += 1
            chunk = row.reply.feed(token)
            if chunk is not None:
                events.append((row.key, chunk))
            finish = None
            if row.reply.finish:
                finish = row.reply.finish
            elif row.cancelled():
                finish = "cancelled"
            elif row.picked >= row.max_new_tokens:
                finish = "length"
            if finish:
                events.append((row.key, row.reply.end(finish)))
            else:
                row.last = token
                keep.append(i)
        if len(keep) < len(self.rows):
            self._keep(keep)
        return events

    def _join(self, cache, length: int) -> None:
        """Add a prefilled row's cache (width `length`) below the batch's, left-padding the narrower."""
        import paddle
        from paddleformers.transformers.cache_utils import DynamicLayer

        if any(type(layer) is not DynamicLayer for layer in cache.layers):
            raise ValueError("batched decoding needs paddleformers' DynamicLayer caches (no sliding windows)")
        if self.cache is None:
            self.cache, self.width = cache, length
            return
        width = max(self.width, length)
        for mine, theirs in zip(self.cache.layers, cache.layers):
            for name in ("keys", "values"):
                ours = _left_pad(getattr(mine, name), width)
                new = _left_pad(getattr(theirs, name), width)
                setattr(mine, name, paddle.concat([ours, new], axis=0))
        self.width = width

    def _keep(self, indices: list[int]) -> None:
        """Keep only the rows at `indices`, in the cache too, and trim padding that no row needs."""
        import paddle

        self.rows = [self.rows[i] for i in indices]
        if not self.rows:
            self.cache, self.width = None, 0
            return
        trim = self.width - max(row.length for row in self.rows)
        index = paddle.to_tensor(indices, dtype="int64")
        for layer in self.cache.layers:
            layer.keys = paddle.index_select(layer.keys, index, axis=0)[:, :, trim:, :]
            layer.values = paddle.index_select(layer.values, index, axis=0)[:, :, trim:, :]
        self.width -= trim


def _left_pad(states, width: int):
    import paddle

    missing = width - states.shape[2]
    if missing == 0:
        return states
    b, h, _, d = states.shape
    return paddle.concat([paddle.zeros([b, h, missing, d], dtype=states.dtype), states], axis=2)


def generate_ids_batch(engine: ChatEngine, prompts: list[list[int]], params: SamplingParams, max_new_tokens: int,
                       max_rows: int = DEFAULT_MAX_ROWS) -> list[list[int]]:
    """`ChatEngine.generate_ids` for several text prompts decoded together: each prompt's
    `max_new_tokens` ids, end-of-turn ids included."""
    decoder = BatchDecoder(engine, max_rows)
    replies = [_Ids() for _ in prompts]
    waiting = deque(range(len(prompts)))
    while waiting or decoder.rows:
        while waiting and decoder.room():
            i = waiting.popleft()
            decoder._add(prompts[i], params, max_new_tokens, i, _never, replies[i])
        decoder.step()
    return [reply.ids for reply in replies]


def stream_batch(engine: ChatEngine, prompts: list[Prompt], params: list[SamplingParams],
                 cancelled: list[Callable[[], bool]] | None = None,
                 max_rows: int = DEFAULT_MAX_ROWS) -> Iterator[tuple[int, Chunk]]:
    """(prompt index, Chunk) events of replies to `prompts`, at most `max_rows` decoding together; a
    finished row's place goes to the next prompt at once. VL prompts, and every prompt of an
    engine that cannot batch, are decoded one at a time after the others."""
    cancelled = cancelled or [_never] * len(prompts)
    batchable = unbatchable(engine) is None
    alone = [i for i, prompt in enumerate(prompts) if not batchable or prompt.vision is not None]
    waiting = deque(sorted(set(range(len(prompts))) - set(alone)))
    if waiting:
        decoder = BatchDecoder(engine, max_rows)
        while waiting or decoder.rows:
            while waiting and decoder.room():
                i = waiting.popleft()
                yield from decoder.add(prompts[i], params[i], i, cancelled[i])
            yield from decoder.step()
    for i in alone:
        for chunk in engine.stream(prompts[i], params[i], cancelled[i]):
            yield i, chunk


def reply_batch(engine: ChatEngine, conversations: list[list[dict]], params: SamplingParams | None = None,
                max_rows: int = DEFAULT_MAX_ROWS, **prepare_args) -> list[tuple[str, str]]:
    """The whole (reasoning, answer) of each conversation, decoded in batches: what
    `ChatEngine.reply` gives for each, faster. `prepare_args` go to `ChatEngine.prepare`."""
    params = params or SamplingParams(temperature=0)
    prompts = [engine.prepare(messages, params.max_tokens, **prepare_args) for messages in conversations]
    reasoning = [[] for _ in prompts]
    content = [[] for _ in prompts]
    for i, chunk in stream_batch(engine, prompts, [params] * len(prompts), max_rows=max_rows):
        reasoning[i].append(chunk.reasoning)
        content[i].append(chunk.content)
    return [("".join(r), "".join(c)) for r, c in zip(reasoning, content)]
