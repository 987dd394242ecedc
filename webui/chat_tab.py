"""The Chat tab: load one or two checkpoints (model-server processes, webui.model_servers), chat with
them streaming, with a system prompt, sampling settings and thinking, and compare base and tuned
side by side on the same prompt.

Each side keeps its own conversation (their replies differ); one Send streams both at once
(models.chat_client.side_by_side_batches), and Stop ends the streams. Reasoning shows as a
collapsible "thinking" message. The message box takes images too (upload, drop or paste); they
are checked before anything is sent, shown in the conversation, and sent to both sides as data:
URLs, where a text model's side says it cannot take them (webui/chat_attachments.py). The tools
box offers functions to call; a call shows as a call, and the next message answers it as the
tool's result (webui/chat_tools.py). The
conversations and settings live in the browser session; the servers are shared by all sessions.

The page spends tens of milliseconds on every update it gets (Gradio refreshes the loading status of
each of the page's components, whatever changed), so it gets the replies at most UPDATES_PER_S
times a second, whatever the token rate. Gradio sends each update as a diff: the text the replies
grew by, not the conversations.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from functools import partial

import gradio as gr

from models.chat_client import ChatError, Delta, side_by_side_batches
from webui.chat_attachments import Refused, api_content, check_attachments, user_message
from webui.chat_tools import (ToolsRefused, add_turn, api_turn, awaiting_result, call_message, parse_tools,
                              result_message, shown_arguments)
from webui.context import StudioContext
from webui.i18n import DEFAULT_LANG, Phrase, both, said, t
from webui.model_servers import list_checkpoints

SIDES = ("a", "b")
UPDATES_PER_S = 8


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
    tools: gr.Textbox
    message: gr.MultimodalTextbox
    send: gr.Button
    stop: gr.Button
    clear: gr.Button


def checkpoint_choices(ctx: StudioContext, optional: bool, lang: str = DEFAULT_LANG) -> list[tuple[str, str]]:
    choices = [(c.label, c.value) for c in list_checkpoints(ctx.store, ctx.workdir, lang)]
    return ([("—", "")] if optional else []) + choices


def refreshed_choices(ctx: StudioContext, optional: bool, lang: str):
    return gr.update(choices=checkpoint_choices(ctx, optional, lang))


def bot_label(ctx: StudioContext, checkpoint: str, lang: str) -> str:
    """A chat column is headed by its checkpoint's name as the list shows it."""
    if not checkpoint:
        return t("msg-chat-no-checkpoint", lang)
    labels = {c.value: c.label for c in list_checkpoints(ctx.store, ctx.workdir, lang)}
    return labels.get(checkpoint, checkpoint)


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
    with T.make(gr.Accordion, "chat-tools-box", open=False):
        tools = T.make(gr.Textbox, "chat-tools", lines=4, max_lines=20)
    with gr.Row():
        # not through T.make: the label follows the chosen checkpoint, and the language (bot_label)
        bots = [gr.Chatbot(elem_id=f"chat-bot-{side}", height=420,
                           label=bot_label(ctx, model.value, DEFAULT_LANG)) for side, (model, *_) in zip(SIDES, pickers)]
    with gr.Row(equal_height=True):
        message = T.make(gr.MultimodalTextbox, "chat-input", lines=2, scale=5, file_types=["image"],
                         file_count="multiple", sources=["upload"], submit_btn=False)
        send = T.make(gr.Button, "chat-send", variant="primary", scale=1, min_width=100)
        stop = T.make(gr.Button, "chat-stop", variant="stop", scale=1, min_width=100, visible=False)
        clear = T.make(gr.Button, "chat-clear", scale=1, min_width=100)
    return ChatTab(sides=[ChatSide(*picker, bot) for picker, bot in zip(pickers, bots)],
                   settings=[system, temperature, top_p, top_k, max_tokens, penalty, seed, thinking],
                   tools=tools, message=message, send=send, stop=stop, clear=clear)


def api_messages(history: list[dict], system: str, images: bool = True) -> list[dict]:
    """The conversation a server needs from a chatbot history: thinking and error bubbles (the
    messages with metadata) are the studio's own and are left out; images are sent as data: URLs,
    or left out (`images` false, for a text model). Raises OSError for an image file that is gone."""
    messages = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    for message in history:
        turn = api_turn(message)
        if turn is not None:
            add_turn(messages, turn)
        elif not message.get("metadata"):
            messages.append({"role": message["role"], "content": api_content(message["content"], images)})
    return messages


def request_params(card: dict, temperature, top_p, top_k, max_tokens, penalty, seed, thinking) -> dict:
    """The sampling settings as request parameters; thinking is only sent to a model that has it
    (`card`: the server's model card)."""
    can_think = bool(card.get("thinking"))
    return dict(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k) or None,
                max_tokens=int(max_tokens), repetition_penalty=float(penalty),
                seed=int(seed) if seed else None, thinking=bool(thinking) if can_think else None)


def error_message(text: str) -> dict:
    # a bubble with metadata is the studio's own (api_messages leaves it out); without a status it is
    # shown open, so the error is read without a click
    return {"role": "assistant", "content": text, "metadata": {"title": "⚠️"}}


def describe(ctx: StudioContext, checkpoint: str) -> str:
    if not checkpoint:
        return ""
    client = ctx.models.client(checkpoint)
    if client is None:
        return said("msg-chat-not-loaded")
    try:
        card = client.model_card()
    except ChatError as exc:  # the server died since the liveness check
        return said("msg-chat-failed", error=str(exc))
    phrases = [Phrase("msg-chat-loaded-vision" if card.get("vision") else "msg-chat-loaded",
                      {"context": card.get("max_model_len", "?"),
                       "thinking": Phrase("msg-chat-yes" if card.get("thinking") else "msg-chat-no")})]
    quant = card.get("quantization")
    if quant:
        phrases.append(quantization_phrase(quant))
    return both(lambda lang: " ".join(phrase.text(lang) for phrase in phrases))


def quantization_phrase(quant: dict) -> Phrase:
    """What a model card's `quantization` says, as a sentence of the status under the picker."""
    group = quant.get("group_size", -1)
    return Phrase("msg-chat-quantized", {
        "width": quant.get("width"), "bits": Phrase(f"msg-quant-bits-{quant.get('width')}"),
        "scales": Phrase("msg-quant-channel") if group == -1 else Phrase("msg-quant-group", {"size": group}),
        "kernel": Phrase("msg-quant-fused" if quant.get("kernel") == "fused" else "msg-quant-portable")})


def load(ctx: StudioContext, checkpoint: str):
    if not checkpoint:
        yield said("msg-chat-pick")
        return
    # only what the list offers: a model server must not be pointed at any path a request names
    if checkpoint not in {c.value for c in list_checkpoints(ctx.store, ctx.workdir)}:
        yield said("msg-chat-load-failed", error=f"{checkpoint[:80]!r} is not a checkpoint of this studio")
        return
    yield said("msg-chat-loading")
    try:
        ctx.models.load(checkpoint)
    except ChatError as exc:
        yield said("msg-chat-load-failed", error=str(exc))
        return
    yield describe(ctx, checkpoint)


def unload(ctx: StudioContext, checkpoint: str) -> str:
    if checkpoint:
        ctx.models.unload(checkpoint)
    return describe(ctx, checkpoint)


def send(ctx: StudioContext, message: dict | str, histories: list[list[dict]], checkpoints: list[str],
         settings: list, lang: str, tools_text: str = ""):
    """Stream both sides' replies to `message` (the message box's {"text", "files"}, or text);
    yields the message box's value, then every side's history (in the order of `histories`), at
    most UPDATES_PER_S times a second and once more at the end. Closing it ends the streams. An
    attachment that is not an image a server takes is said on each side, and the message is kept
    in its box, as it is when the tools box does not hold function definitions. A message that
    follows a side's tool call is sent there as the call's result."""
    histories = [list(h or []) for h in histories]
    if not isinstance(message, dict):
        message = {"text": message, "files": []}
    text, files = message.get("text") or "", list(message.get("files") or [])
    if not text.strip() and not files:
        yield gr.skip(), *histories
        return
    try:
        check_attachments(files)
        tools = parse_tools(tools_text)
    except (Refused, ToolsRefused) as refused:
        for index, checkpoint in enumerate(checkpoints):
            if checkpoint:
                histories[index].append(error_message(Phrase(refused.key, refused.fields).text(lang)))
        yield gr.skip(), *histories
        return
    sides, requests = [], []
    for index, checkpoint in enumerate(checkpoints):
        if not checkpoint:
            continue
        call = None if files else awaiting_result(histories[index])
        histories[index].append(result_message(call, text) if call else user_message(text, files))
        client = ctx.models.client(checkpoint)
        if client is None:
            histories[index].append(error_message(t("msg-chat-not-loaded", lang)))
            continue
        system, *sampling = settings
        try:
            card = client.model_card()
        except Exception as exc:  # the server went away between the check and the question
            histories[index].append(error_message(t("msg-chat-failed", lang, error=str(exc))))
            continue
        if files and not card.get("vision"):
            histories[index].append(error_message(t("msg-chat-text-model", lang,
                                                    model=bot_label(ctx, checkpoint, lang))))
            continue
        try:
            messages = api_messages(histories[index], system, images=bool(card.get("vision")))
        except OSError as exc:
            histories[index].append(error_message(t("msg-chat-image-gone", lang, error=exc.strerror or str(exc))))
            continue
        sides.append(index)
        requests.append((client, messages, {**request_params(card, *sampling), "tools": tools}))
    yield {"text": "", "files": []}, *histories
    replies = {index: {"reasoning": None, "answer": None, "calls": {}} for index in sides}
    with closing(side_by_side_batches(requests, every_s=1 / UPDATES_PER_S)) as batches:
        for batch in batches:
            for position, event in batch:
                index = sides[position]
                add_event(histories[index], replies[index], event, lang)
            yield gr.skip(), *histories


def add_event(history: list[dict], reply: dict, event: Delta | ChatError, lang: str) -> None:
    """Grow the reply under way (`reply` holds its thinking and answer messages) by one delta, or
    end it with the error."""
    if isinstance(event, ChatError):
        history.append(error_message(t("msg-chat-failed", lang, error=str(event))))
        return
    if event.reasoning:
        if reply["reasoning"] is None:
            reply["reasoning"] = {"role": "assistant", "content": "",
                                  "metadata": {"title": t("msg-chat-thinking", lang)}}
            history.append(reply["reasoning"])
        reply["reasoning"]["content"] += event.reasoning
    if event.finish_reason and reply["reasoning"] is not None:
        reply["reasoning"]["metadata"]["status"] = "done"
    for part in event.tool_calls:
        add_call_part(history, reply["calls"], part)
    if event.content or (event.finish_reason and reply["answer"] is None and not reply["calls"]):
        if reply["answer"] is None:
            reply["answer"] = {"role": "assistant", "content": ""}
            history.append(reply["answer"])
        reply["answer"]["content"] += event.content


def add_call_part(history: list[dict], calls: dict, part: dict) -> None:
    """One `delta.tool_calls` entry: a call's first (its id and function name) shows it as a call,
    the next ones add to its arguments."""
    function = part.get("function") or {}
    if part["index"] not in calls:
        calls[part["index"]] = [call_message(part.get("id") or "", function.get("name") or "", ""), ""]
        history.append(calls[part["index"]][0])
    bubble, arguments = calls[part["index"]]
    calls[part["index"]][1] = arguments = arguments + (function.get("arguments") or "")
    bubble["content"] = shown_arguments(arguments)


def connect(ctx: StudioContext, tab: ChatTab, lang: gr.Radio) -> None:
    def chosen(side: ChatSide, checkpoint: str, lang_value: str) -> dict:
        return {side.status: describe(ctx, checkpoint),
                side.bot: gr.Chatbot(label=bot_label(ctx, checkpoint, lang_value))}

    for index, side in enumerate(tab.sides):
        side.load.click(partial(load, ctx), side.model, side.status)
        side.unload.click(partial(unload, ctx), side.model, side.status)
        side.model.change(partial(chosen, side), [side.model, lang], [side.status, side.bot], show_progress="hidden")
        # A job finished since the page loaded is offered as soon as the list is opened.
        side.model.focus(partial(refreshed_choices, ctx, index > 0), lang, side.model)

    bots = [side.bot for side in tab.sides]
    models = [side.model for side in tab.sides]

    def relabel(data: dict) -> dict:
        labels = {side.bot: gr.Chatbot(label=bot_label(ctx, data[side.model], data[lang])) for side in tab.sides}
        choices = {side.model: refreshed_choices(ctx, index > 0, data[lang]) for index, side in enumerate(tab.sides)}
        return {**labels, **choices}

    lang.change(relabel, {*models, lang}, [*bots, *models], show_progress="hidden")

    streaming = {tab.send: gr.update(visible=False), tab.stop: gr.update(visible=True)}
    idle = {tab.send: gr.update(visible=True), tab.stop: gr.update(visible=False)}

    def on_send(data: dict):
        histories = [data[bot] for bot in bots]
        checkpoints = [data[model] for model in models]
        settings = [data[setting] for setting in tab.settings]
        buttons = streaming
        with closing(send(ctx, data[tab.message], histories, checkpoints, settings, data[lang],
                          data[tab.tools])) as updates:
            for message, *replies in updates:
                yield {tab.message: message, **dict(zip(bots, replies)), **buttons}
                buttons = {}
        yield idle

    inputs = {tab.message, *bots, *models, *tab.settings, tab.tools, lang}
    outputs = [tab.message, *bots, tab.send, tab.stop]
    # no progress overlay: the replies growing are the progress
    sent = [tab.send.click(on_send, inputs, outputs, show_progress="hidden"),
            tab.message.submit(on_send, inputs, outputs, show_progress="hidden")]
    # Cancelling closes on_send, which closes the streams: the servers stop generating. Clear stops
    # them too, or the replies under way would fill the cleared conversations again.
    tab.stop.click(lambda: idle, None, [tab.send, tab.stop], cancels=sent, show_progress="hidden")
    tab.clear.click(lambda: {**{bot: [] for bot in bots}, **idle}, None, [*bots, tab.send, tab.stop], cancels=sent,
                    show_progress="hidden")
