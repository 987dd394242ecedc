"""The Chat tab: load one or two checkpoints (model-server processes, webui.model_servers), chat with
them streaming, with a system prompt, sampling settings and thinking, and compare base and tuned
side by side on the same prompt.

Each side keeps its own conversation (their replies differ); one Send streams both at once
(models.chat_client.side_by_side). Reasoning shows as a collapsible "thinking" message. The
conversations and settings live in the browser session; the servers are shared by all sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from models.chat_client import ChatClient, ChatError, side_by_side
from webui.context import StudioContext
from webui.i18n import t
from webui.model_servers import list_checkpoints

SIDES = ("a", "b")


@dataclass
class ChatSide:
    model: gr.Dropdown
    load: gr.Button
    unload: gr.Button
    status: gr.Markdown
    bot: gr.Chatbot


@dataclass
class ChatTab:
    sides: list[ChatSide]
    settings: list  # system prompt, temperature, top_p, top_k, max_tokens, repetition penalty, seed, thinking
    message: gr.Textbox
    send: gr.Button
    clear: gr.Button


def checkpoint_choices(ctx: StudioContext, optional: bool) -> list[tuple[str, str]]:
    choices = [(c.label, c.value) for c in list_checkpoints(ctx.store, ctx.workdir)]
    return ([("—", "")] if optional else []) + choices


def refreshed_choices(ctx: StudioContext, optional: bool):
    return gr.update(choices=checkpoint_choices(ctx, optional))


def build(ctx: StudioContext) -> ChatTab:
    T = ctx.texts
    T.make(gr.Markdown, "chat-intro")
    pickers = []
    with gr.Row():
        for side in SIDES:
            with gr.Column():
                choices = checkpoint_choices(ctx, optional=side == "b")
                model = T.make(gr.Dropdown, f"chat-model-{side}", choices=choices,
                               value=choices[0][1] if choices else "")
                with gr.Row():
                    load = T.make(gr.Button, f"chat-load-{side}", variant="primary", size="sm")
                    unload = T.make(gr.Button, f"chat-unload-{side}", size="sm")
                pickers.append((model, load, unload, gr.Markdown(elem_id=f"chat-status-{side}")))
    with T.make(gr.Accordion, "chat-settings", open=False):
        system = T.make(gr.Textbox, "chat-system", lines=2)
        with gr.Row():
            temperature = T.make(gr.Slider, "chat-temperature", minimum=0, maximum=2, step=0.05, value=0.7)
            top_p = T.make(gr.Slider, "chat-top-p", minimum=0.05, maximum=1, step=0.05, value=0.9)
            top_k = T.make(gr.Slider, "chat-top-k", minimum=0, maximum=200, step=1, value=0)
        with gr.Row():
            max_tokens = T.make(gr.Slider, "chat-max-tokens", minimum=1, maximum=4096, step=1, value=256)
            penalty = T.make(gr.Slider, "chat-repetition-penalty", minimum=0.5, maximum=2, step=0.05, value=1.0)
            seed = T.make(gr.Number, "chat-seed", value=0, precision=0, minimum=0)
            thinking = T.make(gr.Checkbox, "chat-thinking", value=True)
    with gr.Row():
        bots = [T.make(gr.Chatbot, f"chat-bot-{side}", height=420) for side in SIDES]
    with gr.Row(equal_height=True):
        message = T.make(gr.Textbox, "chat-input", lines=2, scale=5)
        send = T.make(gr.Button, "chat-send", variant="primary", scale=1, min_width=100)
        clear = T.make(gr.Button, "chat-clear", scale=1, min_width=100)
    return ChatTab(sides=[ChatSide(*picker, bot) for picker, bot in zip(pickers, bots)],
                   settings=[system, temperature, top_p, top_k, max_tokens, penalty, seed, thinking],
                   message=message, send=send, clear=clear)


def api_messages(history: list[dict], system: str) -> list[dict]:
    """The conversation a server needs from a chatbot history: thinking and error bubbles (the
    messages with metadata) are the studio's own and are left out."""
    messages = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    for message in history:
        if not message.get("metadata"):
            messages.append({"role": message["role"], "content": str(message["content"])})
    return messages


def request_params(client: ChatClient, temperature, top_p, top_k, max_tokens, penalty, seed, thinking) -> dict:
    """The sampling settings as request parameters; thinking is only sent to a model that has it."""
    can_think = bool(client.model_card().get("thinking"))
    return dict(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k) or None,
                max_tokens=int(max_tokens), repetition_penalty=float(penalty),
                seed=int(seed) if seed else None, thinking=bool(thinking) if can_think else None)


def error_message(text: str) -> dict:
    return {"role": "assistant", "content": text, "metadata": {"title": "⚠️", "status": "done"}}


def describe(ctx: StudioContext, checkpoint: str, lang: str) -> str:
    if not checkpoint:
        return ""
    client = ctx.models.client(checkpoint)
    if client is None:
        return t("msg-chat-not-loaded", lang)
    try:
        card = client.model_card()
    except ChatError as exc:  # the server died since the liveness check
        return t("msg-chat-failed", lang, error=str(exc))
    return t("msg-chat-loaded", lang, context=card.get("max_model_len", "?"),
             thinking=t("msg-chat-yes" if card.get("thinking") else "msg-chat-no", lang))


def load(ctx: StudioContext, checkpoint: str, lang: str):
    if not checkpoint:
        yield t("msg-chat-pick", lang)
        return
    # only what the list offers: a model server must not be pointed at any path a request names
    if checkpoint not in {c.value for c in list_checkpoints(ctx.store, ctx.workdir)}:
        yield t("msg-chat-load-failed", lang, error=f"{checkpoint[:80]!r} is not a checkpoint of this studio")
        return
    yield t("msg-chat-loading", lang)
    try:
        ctx.models.load(checkpoint)
    except ChatError as exc:
        yield t("msg-chat-load-failed", lang, error=str(exc))
        return
    yield describe(ctx, checkpoint, lang)


def unload(ctx: StudioContext, checkpoint: str, lang: str) -> str:
    if checkpoint:
        ctx.models.unload(checkpoint)
    return describe(ctx, checkpoint, lang)


def send(ctx: StudioContext, text: str, histories: list[list[dict]], checkpoints: list[str], settings: list,
         lang: str):
    """Stream both sides' replies; yields the message box's value, then every side's history (in
    the order of `histories`), after every delta."""
    histories = [list(h or []) for h in histories]
    if not text or not text.strip():
        yield gr.skip(), *histories
        return
    sides, requests = [], []
    for index, checkpoint in enumerate(checkpoints):
        if not checkpoint:
            continue
        histories[index].append({"role": "user", "content": text})
        client = ctx.models.client(checkpoint)
        if client is None:
            histories[index].append(error_message(t("msg-chat-not-loaded", lang)))
            continue
        system, *sampling = settings
        try:
            params = request_params(client, *sampling)
        except Exception as exc:  # the server went away between the check and the question
            histories[index].append(error_message(t("msg-chat-failed", lang, error=str(exc))))
            continue
        sides.append(index)
        requests.append((client, api_messages(histories[index], system), params))
    yield "", *histories
    replies = {index: {"reasoning": None, "answer": None} for index in sides}
    for position, event in side_by_side(requests):
        index = sides[position]
        history, reply = histories[index], replies[index]
        if isinstance(event, ChatError):
            history.append(error_message(t("msg-chat-failed", lang, error=str(event))))
            yield gr.skip(), *histories
            continue
        if event.reasoning:
            if reply["reasoning"] is None:
                reply["reasoning"] = {"role": "assistant", "content": "",
                                      "metadata": {"title": t("msg-chat-thinking", lang)}}
                history.append(reply["reasoning"])
            reply["reasoning"]["content"] += event.reasoning
        if event.finish_reason and reply["reasoning"] is not None:
            reply["reasoning"]["metadata"]["status"] = "done"
        if event.content or (event.finish_reason and reply["answer"] is None):
            if reply["answer"] is None:
                reply["answer"] = {"role": "assistant", "content": ""}
                history.append(reply["answer"])
            reply["answer"]["content"] += event.content
        yield gr.skip(), *histories


def connect(ctx: StudioContext, tab: ChatTab, lang: gr.Radio) -> None:
    for index, side in enumerate(tab.sides):
        side.load.click(partial(load, ctx), [side.model, lang], side.status)
        side.unload.click(partial(unload, ctx), [side.model, lang], side.status)
        side.model.change(partial(describe, ctx), [side.model, lang], side.status)
        # A job finished since the page loaded is offered as soon as the list is opened.
        side.model.focus(partial(refreshed_choices, ctx, index > 0), None, side.model)

    bots = [side.bot for side in tab.sides]

    def on_send(data: dict):
        histories = [data[bot] for bot in bots]
        checkpoints = [data[side.model] for side in tab.sides]
        settings = [data[setting] for setting in tab.settings]
        for message, *replies in send(ctx, data[tab.message], histories, checkpoints, settings, data[lang]):
            yield {tab.message: message, **dict(zip(bots, replies))}

    inputs = {tab.message, *bots, *(side.model for side in tab.sides), *tab.settings, lang}
    outputs = [tab.message, *bots]
    tab.send.click(on_send, inputs, outputs)
    tab.message.submit(on_send, inputs, outputs)
    tab.clear.click(lambda: {bot: [] for bot in bots}, None, bots)
