"""English and Chinese text of the Chat tab's images (webui/chat_attachments.py), as message id ->
(English, Chinese); webui.i18n's CATALOGUE takes them as status messages. Imports nothing, so the
catalogue file stays within its size. What is wrong with an image's bytes is said by
models/image_check.py, in both languages too."""

from __future__ import annotations

CHAT_TEXTS: dict[str, tuple[str, str]] = {
    "msg-chat-loaded-vision": ("Loaded: context {context} tokens; thinking: {thinking}; takes images.",
                               "已加载：上下文 {context} 个词元；思考模式：{thinking}；可以读取图片。"),
    "msg-chat-image-refused": ("Not sent: {problem}", "未发送：{problem}"),
    "msg-chat-image-too-big": ("Not sent: {name} is {size}; an image can be at most {limit} (what fits in one "
                               "request to the model server)",
                               "未发送：{name} 大小为 {size}；每张图片最大 {limit}（一次发给模型服务的请求能容纳的大小）"),
    "msg-chat-text-model": ("{model} is a text model and cannot take images; send text only, or choose an ERNIE 4.5 "
                            "vision-language (VL) model",
                            "{model} 是文本模型，无法读取图片；请只发送文字，或选择 ERNIE 4.5 视觉语言模型"),
    "msg-chat-tools-json": ("Not sent: the tools box is not valid JSON ({error})",
                            "未发送：工具框中的内容不是有效的 JSON（{error}）"),
    "msg-chat-tools-list": ("Not sent: the tools box must hold a list of function definitions",
                            "未发送：工具框中应为函数定义的列表"),
    "msg-chat-tools-name": ("Not sent: tool {index} in the tools box has no function name",
                            "未发送：工具框中的第 {index} 个工具没有函数名"),
    "msg-chat-tools-twice": ("Not sent: function {name} is declared twice in the tools box",
                             "未发送：工具框中函数 {name} 被声明了两次"),
    "msg-chat-image-gone": ("An image of this conversation is no longer available ({error}); press Clear and attach "
                            "it again", "对话中的一张图片已不可用（{error}）；请点击“清空”后重新附加"),
}
