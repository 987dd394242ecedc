"""Greedy answers from a loaded model, encoded exactly as training encodes prompts.

The chat engine (streaming, sampling, KV-cache control) builds on the same prompt encoding; this
module is what training checks and tests use to ask "does the model now give the trained answer?".
"""

from __future__ import annotations

from models.chat_template import encode_conversation


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos token and ERNIE's `<|end_of_sentence|>` (its sep token)."""
    ids = {tokenizer.eos_token_id, getattr(tokenizer, "sep_token_id", None)}
    return sorted(i for i in ids if i is not None)


def greedy_reply(model, tokenizer, messages: list[dict], max_new_tokens: int = 32) -> str:
    """The model's greedy reply to a conversation that ends with a user turn."""
    import paddle

    prompt_ids, _ = encode_conversation(tokenizer, messages)
    stops = stop_token_ids(tokenizer)
    with paddle.no_grad():
        new_ids, _ = model.generate(
            paddle.to_tensor([prompt_ids], dtype="int64"),
            max_new_tokens=max_new_tokens,
            decode_strategy="greedy_search",
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
        )
    reply = []
    for token in new_ids[0].tolist():
        if token in stops:
            break
        reply.append(token)
    return tokenizer.decode(reply, skip_special_tokens=True)
