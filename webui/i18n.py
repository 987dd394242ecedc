"""English and Chinese UI text: one catalogue keyed by element id, and the relabelling on a switch.

CATALOGUE maps an element id (or a message id, `msg-...`) to its text per language: the properties
of the component (label, info, placeholder, value for buttons and markdown, plot titles) or, for a
message, "text" with str.format fields. The run-config fields' English text is the schema's own
label and help (trainer/config.py); webui.field_texts holds their Chinese, and tests check that it covers
exactly the schema's keys, whose element ids (`field_id`, `group_id`) are defined here, where both
the catalogue and the form (webui.form) take them from. Components are created through
`Texts.make`, which registers them so a language switch can relabel every one of them.
What the trainer says about bad input (config problems, data issues) has its own catalogue,
trainer/messages.py; `message_text` shows such a message in a language, and a Phrase field may be one.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import gradio as gr

from trainer.config import iter_fields
from trainer.messages import Message
from webui.field_texts import ENTRY_ZH, FIELD_ZH, GROUPS
from webui.chat_texts import CHAT_TEXTS
from webui.compare_texts import COMPARE_COMPONENTS, COMPARE_MESSAGES
from webui.data_texts import DATA_TEXTS
from webui.eval_texts import EVAL_COMPONENTS, EVAL_MESSAGES
from webui.export_texts import EXPORT_TEXTS
from webui.fit_texts import FIT_TEXTS

LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT_LANG = "en"


def field_id(key: str) -> str:
    """The element id of a config key's widget: dots would need escaping in CSS selectors."""
    return "cfg-" + key.replace(".", "-")


def group_id(group: str, advanced: bool = False) -> str:
    """The element id of a schema group's accordion, or of the advanced one inside it."""
    return f"group-{group}" + ("-advanced" if advanced else "")


def _l(en: str, zh: str) -> dict:
    return {"en": {"label": en}, "zh": {"label": zh}}


def _li(en: str, en_info: str, zh: str, zh_info: str) -> dict:
    return {"en": {"label": en, "info": en_info}, "zh": {"label": zh, "info": zh_info}}


def _v(en: str, zh: str) -> dict:
    """Text shown as the component's value: buttons and markdown."""
    return {"en": {"value": en}, "zh": {"value": zh}}


def _m(en: str, zh: str) -> dict:
    return {"en": {"text": en}, "zh": {"text": zh}}


def _plot(en: str, en_x: str, en_y: str, zh: str, zh_x: str, zh_y: str) -> dict:
    return {"en": {"label": en, "x_title": en_x, "y_title": en_y},
            "zh": {"label": zh, "x_title": zh_x, "y_title": zh_y}}


CATALOGUE: dict[str, dict[str, dict[str, str]]] = {
    **FIT_TEXTS,  # the Train tab's memory estimate (webui.fit_panel)
    **DATA_TEXTS,  # the Data tab's image datasets
    **EXPORT_TEXTS,  # the Export tab's quantization and FastDeploy command
    **{key: _m(en, zh) for key, (en, zh) in CHAT_TEXTS.items()},  # the Chat tab's images
    **COMPARE_COMPONENTS,  # the Compare tab (webui.compare_tab)
    **{key: _m(en, zh) for key, (en, zh) in COMPARE_MESSAGES.items()},
    **EVAL_COMPONENTS,  # the Evaluate tab (webui.eval_tab) and the Jobs tab's evaluation figures
    **{key: _m(en, zh) for key, (en, zh) in EVAL_MESSAGES.items()},
    "app-title": _v("# ERNIE Studio\nFine-tune ERNIE 4.5 models: upload data, train, watch, export.",
                    "# ERNIE Studio\n微调 ERNIE 4.5 模型：上传数据、训练、监控、导出。"),
    "app-lang": _l("Language", "语言"),
    "tab-data": _l("Data", "数据"),
    "tab-train": _l("Train", "训练"),
    "tab-jobs": _l("Jobs", "任务"),
    "tab-export": _l("Export", "导出"),
    # -- chat --
    "tab-chat": _l("Chat", "对话"),
    "chat-intro": _v("Load a checkpoint (a built-in base model, a job's output or an export) and chat with it. "
                     "Pick a second one to compare them side by side on the same prompt.",
                     "加载一个检查点（内置基座模型、任务输出或导出的模型）并与之对话。选择第二个检查点可在同一提示下并排比较。"),
    "chat-model-a": _l("Checkpoint", "检查点"),
    "chat-model-b": _l("Compare with", "对比模型"),
    "chat-load-a": _v("Load", "加载"),
    "chat-load-b": _v("Load", "加载"),
    "chat-unload-a": _v("Unload", "卸载"),
    "chat-unload-b": _v("Unload", "卸载"),
    "chat-settings": _l("System prompt and sampling", "系统提示与采样"),
    "chat-system": _l("System prompt", "系统提示"),
    "chat-temperature": _li("Temperature", "0 answers greedily.", "温度", "0 表示贪心解码。"),
    "chat-top-p": _l("Top-p", "Top-p"),
    "chat-top-k": _li("Top-k", "0 turns it off.", "Top-k", "0 表示不限制。"),
    "chat-max-tokens": _l("Max new tokens", "最大生成长度"),
    "chat-repetition-penalty": _l("Repetition penalty", "重复惩罚"),
    "chat-seed": _li("Seed", "0: a new one each time.", "随机种子", "0 表示每次不同。"),
    "chat-thinking": _li("Thinking", "For models whose template has a thinking mode.", "思考模式",
                         "仅对模板支持思考模式的模型有效。"),
    "chat-input": _li("Message", "Images (upload, drop or paste) go to vision-language models.", "消息",
                      "可附带图片（上传、拖放或粘贴），视觉语言模型可以读取。"),
    "chat-tools-box": _l("Tools", "工具"),
    "chat-tools": _li("Functions the model may call (JSON)",
                      'A list of OpenAI function definitions: [{"type": "function", "function": {"name": ..., '
                      '"parameters": {...}}}]. A call shows as a call; your next message is sent as its result.',
                      "模型可调用的函数（JSON）",
                      'OpenAI 函数定义的列表：[{"type": "function", "function": {"name": ..., "parameters": {...}}}]。'
                      "模型调用工具时显示为一次调用；您的下一条消息将作为该调用的结果发送。"),
    "chat-send": _v("Send", "发送"),
    "chat-stop": _v("Stop", "停止"),
    "chat-clear": _v("Clear", "清空"),
    "msg-chat-pick": _m("Pick a checkpoint first.", "请先选择检查点。"),
    "msg-chat-loading": _m("Loading… (a model server process starts)", "加载中……（正在启动模型服务进程）"),
    "msg-chat-loaded": _m("Loaded: context {context} tokens; thinking: {thinking}.", "已加载：上下文 {context} 个词元；思考模式：{thinking}。"),
    "msg-chat-quantized": _m("Weights: {width} ({bits}), {scales}; {kernel}.", "权重：{width}（{bits}），{scales}；{kernel}。"),
    "msg-quant-bits-wint8": _m("int8", "int8"),
    "msg-quant-bits-wint4": _m("int4", "int4"),
    "msg-quant-bits-wint4/8": _m("int4 experts, int8 elsewhere", "专家 int4，其余 int8"),
    "msg-quant-channel": _m("one scale per output channel", "每个输出通道一个缩放因子"),
    "msg-quant-group": _m("one scale per {size} input rows", "每 {size} 个输入行一个缩放因子"),
    "msg-quant-fused": _m("fused GPU kernel", "GPU 融合算子"),
    "msg-quant-portable": _m("dequantized layer by layer (portable)", "逐层反量化（通用路径）"),
    "msg-chat-not-loaded": _m("Not loaded: press Load.", "未加载：请点击“加载”。"),
    "msg-chat-load-failed": _m("Could not load it: {error}", "加载失败：{error}"),
    "msg-chat-failed": _m("The model server failed: {error}", "模型服务出错：{error}"),
    "msg-chat-thinking": _m("Thinking", "思考过程"),
    "msg-chat-yes": _m("yes", "支持"),
    "msg-chat-no": _m("no", "不支持"),
    "msg-chat-no-checkpoint": _m("No checkpoint chosen", "未选择检查点"),
    # -- data
    "data-upload": _l("Upload datasets (drop files here or click to choose)", "上传数据集（拖放文件到此处或点击选择）"),
    "data-hint": _v("JSONL, JSON, CSV or Parquet, at most {limit} per file. The format is detected: ERNIEKit "
                    "`src/tgt`, alpaca, OpenAI `messages` and ShareGPT, for SFT and preference pairs. Every "
                    "row is checked; errors name the line and the field. With images: a zip of the data file and "
                    "its images, or the data file dropped together with them (ERNIEKit `image_info`, `images` "
                    "with `<image>`, or `image_url` parts).",
                    "支持 JSONL、JSON、CSV、Parquet，每个文件最大 {limit}。自动识别格式：ERNIEKit `src/tgt`、"
                    "alpaca、OpenAI `messages`、ShareGPT（SFT 与偏好对）。逐行校验，错误会指出行号和字段。含图片的数据："
                    "把数据文件和图片打包成 zip 上传，或将数据文件与其图片一起拖入（支持 ERNIEKit 视觉格式、OpenAI "
                    "图片内容片段，以及文本占位符加图片列表）。"),
    "data-token_model": _li("Tokenizer for token counts", "Token lengths use this model's tokenizer and chat template.",
                            "用于统计 token 的分词器", "按此模型的分词器和对话模板计算 token 长度。"),
    "data-max_seq_len": _li("Max sequence length", "Rows longer than this are counted.",
                            "最大序列长度", "统计超过此长度的行数。"),
    "data-list": _l("Stored datasets", "已保存的数据集"),
    "data-select": _li("Dataset", "Choose a stored dataset to inspect, use or delete.",
                       "数据集", "选择一个已保存的数据集进行查看、使用或删除。"),
    "data-add_train": _v("Add to training data", "加入训练数据"),
    "data-add_eval": _v("Add to evaluation data", "加入评估数据"),
    "data-delete": _v("Delete dataset", "删除数据集"),
    "data-delete_confirm": _v("Yes, delete it", "确认删除"),
    "data-delete_cancel": _v("Cancel", "取消"),
    "data-errors": _l("Validation errors", "校验错误"),
    "data-preview-title": _v("### Preview", "### 预览"),
    "data-preview": _l("Rows", "数据行"),
    "data-prev": _v("◀ Previous", "◀ 上一页"),
    "data-next": _v("Next ▶", "下一页 ▶"),
    "data-stats-title": _v("### Statistics", "### 统计"),
    "data-histogram": _plot("Token length per row", "tokens", "rows", "每行 token 长度", "token 数", "行数"),
    "data-first_steps": _v("First steps to a tuned model: upload a dataset or pick a sample → *Add to training data* "
                           "→ Train tab: *Start training* → Jobs tab: wait for *completed* → *Chat with it*.",
                           "第一次使用：上传数据集或选一个示例 → *加入训练数据* → 训练页：*开始训练* → "
                           "任务页：等到*已完成* → *与它对话*。"),
    "data-samples-title": _v("No dataset yet? Start with a sample that ships with the studio:",
                             "还没有数据集？可以先用工作室自带的示例："),
    "data-sample_sft": _v("Sample SFT set (60 Q&A pairs)", "示例 SFT 数据（60 组问答）"),
    "data-sample_dpo": _v("Sample preference pairs for DPO (60)", "示例偏好数据，用于 DPO（60 对）"),
    # -- train
    "train-preset": _li("Preset", "Recommended settings for this model and method; choosing one fills the form.",
                        "预设", "此模型和方法的推荐设置；选择后即填入表单。"),
    "train-apply_preset": _v("Reset to preset", "恢复预设"),
    # -- train: a hub model's download (webui/hub_panel.py)
    "train-hub-source": _li("Download from", "The hub the model is fetched from", "下载来源", "从哪个模型库获取模型"),
    "train-hub-download": _v("⬇ Download the model", "⬇ 下载模型"),
    "train-hub-stop": _v("Stop the download", "停止下载"),
    "msg-hub-missing": _m("**{repo}** is a hub model that is not downloaded yet. **Download the model** fetches it "
                          "into `{dir}` (or run `{command}`); it is resumable.",
                          "**{repo}** 是尚未下载的模型库模型。点击“下载模型”会把它下载到 `{dir}`（也可运行 `{command}`）；"
                          "中断后可以继续下载。"),
    "msg-hub-starting": _m("Starting the download of {repo} …", "正在开始下载 {repo} …"),
    "msg-hub-progress": _m("Downloading {repo} from {hub}: {pct} — {done} of {total}, {files_done}/{files_total} "
                           "files, {speed}/s", "正在从 {hub} 下载 {repo}：{pct} — {done} / {total}，"
                           "{files_done}/{files_total} 个文件，{speed}/秒"),
    "msg-hub-failed": _m("The download of {repo} did not finish: {error}. Download the model again to continue; "
                         "finished files are kept.", "{repo} 未下载完成：{error}。再次点击“下载模型”即可继续，"
                         "已完成的文件会保留。"),
    "msg-hub-process-ended": _m("its process ended at {pct} ({last})", "下载进程在 {pct} 时结束（{last}）"),
    "msg-hub-done": _m("✓ **{repo}** is downloaded: `{dir}` ({size}); it is listed among the models.",
                       "✓ **{repo}** 已下载：`{dir}`（{size}）；它已列入模型列表。"),
    "msg-hub-refused": _m("Cannot download: {error}", "无法下载：{error}"),
    "train-run-title": _v("### Run", "### 运行"),
    "train-job_name": {"en": {"label": "Job name", "placeholder": "optional, e.g. lora-r16-lr2e-3"},
                       "zh": {"label": "任务名称", "placeholder": "可选，例如 lora-r16-lr2e-3"}},
    "train-start": _v("Start training", "开始训练"),
    "train-command": _l("Command that will run", "将要运行的命令"),
    "train-config_yaml": _l("Config that will run (YAML)", "将要运行的配置（YAML）"),
    "train-save": _v("Save YAML", "保存 YAML"),
    "train-saved": _l("Saved config", "已保存的配置"),
    "train-load": _v("Load YAML", "加载 YAML"),
    "train-import": _v("Import ERNIEKit YAML", "导入 ERNIEKit YAML"),
    # -- jobs
    "jobs-table": _l("All jobs", "全部任务"),
    "jobs-select": _li("Job", "The job shown below.", "任务", "下方显示的任务。"),
    # the plot's own legend is clipped by Gradio's layout, so the label names the colours
    "jobs-loss": _plot("Loss: training (blue), evaluation (red)", "step", "loss",
                       "损失：训练（蓝）、评估（红）", "步数", "损失"),
    "jobs-rewards": _plot("DPO rewards: chosen (green), rejected (red), margin (blue); reward accuracy (orange)",
                          "step", "reward", "DPO 奖励：选中回答（绿）、拒绝回答（红）、差值（蓝）；奖励准确率（橙）",
                          "步数", "奖励"),
    "jobs-imbalance": _plot("Expert load imbalance (max over mean, worst MoE layer)", "step", "max / mean",
                            "专家负载不均衡（最大值/均值，最差的 MoE 层）", "步数", "最大值/均值"),
    "jobs-lr": _plot("Learning rate", "step", "learning rate", "学习率", "步数", "学习率"),
    "jobs-error": _l("Error", "错误"),
    "jobs-log": _l("Log (last lines, live)", "日志（最新内容，实时）"),
    "jobs-stop": _v("Stop", "停止"),
    "jobs-resume": _v("Resume", "继续训练"),
    "jobs-clone": _v("Clone into the form", "复制到表单"),
    "jobs-delete": _v("Delete", "删除"),
    "jobs-delete_confirm": _v("Yes, delete the job and its files", "确认删除任务及其文件"),
    "jobs-delete_cancel": _v("Cancel", "取消"),
    "jobs-chat_with": _v("Chat with it", "与它对话"),
    "jobs-export_it": _v("Export it", "导出"),
    "jobs-zip": _v("Prepare a zip to download", "打包为 zip 以便下载"),
    "jobs-download": _v("⬇ Download the zip", "⬇ 下载 zip"),
    # -- export
    "export-intro": _v("Merge a finished job's LoRA adapter into its base model (or copy a fully fine-tuned "
                       "model) and write a self-contained checkpoint: safetensors, config and tokenizer; "
                       "quantized to int8/int4 if you choose, with what that costs measured on the job's data.",
                       "将已完成任务的 LoRA 适配器合并到基础模型（全量微调则直接复制），写出独立的检查点："
                       "safetensors、配置和分词器；可选量化为 int8/int4，并在任务数据上测量其代价。"),
    "export-job": _l("Completed job", "已完成的任务"),
    "export-dir": {"en": {"label": "Output directory", "info": "Empty: the job's export/ folder. A relative path "
                                                               "is inside the workdir.",
                          "placeholder": "JOB/export"},
                   "zh": {"label": "输出目录", "info": "留空：任务的 export/ 目录。相对路径位于工作目录内。",
                          "placeholder": "任务目录/export"}},
    "export-start": _v("Export", "导出"),
    "export-log": _l("Export log", "导出日志"),
    "export-zip": _v("Prepare a zip of the export", "将导出结果打包为 zip"),
    "export-download": _v("⬇ Download the zip", "⬇ 下载 zip"),
    # -- messages
    "msg-data-stored": _m("Stored **{name}** ({size}).", "已保存 **{name}**（{size}）。"),
    "msg-data-refused": _m("Refused {name}: {error}", "已拒绝 {name}：{error}"),
    "msg-upload-type": _m("{name}: unsupported file type {ext}; upload {supported}",
                          "{name}：不支持的文件类型 {ext}；请上传 {supported}"),
    "msg-upload-no-ext": _m("(no extension)", "（无扩展名）"),
    "msg-upload-link": _m("{name}: a symbolic link is not an upload; upload the file itself",
                          "{name}：符号链接不是上传的文件；请上传文件本身"),
    "msg-upload-too-big": _m("{name}: {size} is over the upload limit of {limit} (start the studio with "
                             "--max-upload-mb to change it)",
                             "{name}：{size} 超过上传上限 {limit}（启动工作室时可用 --max-upload-mb 修改）"),
    "msg-upload-empty": _m("{name}: the file is empty", "{name}：文件为空"),
    "msg-tokens-timeout": _m("counting tokens of {name} took longer than {seconds} s",
                             "统计 {name} 的 token 用时超过 {seconds} 秒"),
    "msg-tokens-failed": _m("cannot count tokens of {name} with {model}: {reason}",
                            "无法用 {model} 统计 {name} 的 token：{reason}"),
    "msg-data-empty": _m("No dataset yet: upload a file above.", "还没有数据集：请在上方上传文件。"),
    "msg-data-summary-ok": _m("**{name}** — format **{format}** ({kind}, {how}); {rows_total} rows: "
                              "{rows_valid} valid, {rows_invalid} invalid. ✓ ready for training.",
                              "**{name}** — 格式 **{format}**（{kind}，{how}）；共 {rows_total} 行：{rows_valid} 行有效，"
                              "{rows_invalid} 行无效。✓ 可用于训练。"),
    "msg-data-summary-bad": _m("**{name}** — format **{format}** ({kind}, {how}); {rows_total} rows: "
                               "{rows_valid} valid, {rows_invalid} invalid. ✗ {issues_total} problem(s); "
                               "fix them, or set *Skip invalid* to train on the valid rows.",
                               "**{name}** — 格式 **{format}**（{kind}，{how}）；共 {rows_total} 行：{rows_valid} 行有效，"
                               "{rows_invalid} 行无效。✗ {issues_total} 个问题；请修正，或开启“跳过无效行”只用有效行训练。"),
    "msg-data-unreadable": _m("**{name}** cannot be used: {error}", "**{name}** 无法使用：{error}"),
    "msg-data-detected": _m("detected", "自动识别"),
    "msg-data-issues-shown": _m("Showing the first {shown} of {total} problems.", "显示前 {shown} 个问题，共 {total} 个。"),
    "msg-data-page": _m("Page {page} of {pages}", "第 {page} / {pages} 页"),
    "msg-data-stats": _m("**Rows** {rows} · **turns per row** mean {turns_mean}, max {turns_max} · "
                         "**multi-turn rows** {multi} · **with system prompt** {system} · "
                         "**with &lt;think&gt;** {think} "
                         "· **characters per row** mean {chars_mean}, max {chars_max}",
                         "**行数** {rows} · **每行轮数** 平均 {turns_mean}，最多 {turns_max} · **多轮行** {multi} · "
                         "**含系统提示** {system} · **含 &lt;think&gt;** {think} · **每行字符数** 平均 {chars_mean}，"
                         "最多 {chars_max}"),
    "msg-data-tokens": _m("**Tokens per row** ({model}): min {min}, mean {mean}, p50 {p50}, p95 {p95}, max {max}; "
                          "**longer than {max_seq_len}**: {over}",
                          "**每行 token 数**（{model}）：最小 {min}，平均 {mean}，p50 {p50}，p95 {p95}，最大 {max}；"
                          "**超过 {max_seq_len}**：{over}"),
    "msg-data-tokens-running": _m("Counting tokens with {model}'s tokenizer …", "正在用 {model} 的分词器统计 token …"),
    "msg-data-tokens-failed": _m("Token statistics unavailable: {error}", "无法统计 token：{error}"),
    "msg-data-delete-question": _m("Delete dataset **{name}** and its file? Jobs that used it keep their results.",
                                   "删除数据集 **{name}** 及其文件？使用过它的任务结果会保留。"),
    "msg-data-deleted": _m("Deleted {name}.", "已删除 {name}。"),
    "msg-data-added": _m("Added {name} to {where} in the Train tab.", "已将 {name} 加入训练页的{where}。"),
    "msg-data-train": _m("the training data", "训练数据"),
    "msg-data-eval": _m("the evaluation data", "评估数据"),
    "msg-data-already": _m("{name} is already in {where}.", "{name} 已在{where}中。"),
    "msg-data-pick": _m("Choose a dataset first.", "请先选择一个数据集。"),
    "msg-data-sample-next": _m("Next: *Add to training data*, then *Start training* in the Train tab.",
                               "下一步：*加入训练数据*，然后在训练页点击*开始训练*。"),
    "msg-col-name": _m("Name", "名称"),
    "msg-col-format": _m("Format", "格式"),
    "msg-col-rows": _m("Rows", "行数"),
    "msg-col-valid": _m("Valid", "有效"),
    "msg-col-invalid": _m("Invalid", "无效"),
    "msg-col-size": _m("Size", "大小"),
    "msg-col-uploaded": _m("Uploaded", "上传时间"),
    "msg-col-id": _m("ID", "ID"),
    "msg-col-file": _m("File", "文件"),
    "msg-col-line": _m("Line", "行"),
    "msg-col-field": _m("Field", "字段"),
    "msg-col-problem": _m("Problem", "问题"),
    "msg-col-ok": _m("OK", "有效"),
    "msg-col-system": _m("System", "系统提示"),
    "msg-col-prompt": _m("Prompt", "提示"),
    "msg-col-response": _m("Response", "回答"),
    "msg-col-chosen": _m("Chosen", "选中回答"),
    "msg-col-rejected": _m("Rejected", "拒绝回答"),
    "msg-col-state": _m("State", "状态"),
    "msg-col-progress": _m("Progress", "进度"),
    "msg-col-model": _m("Model", "模型"),
    "msg-col-method": _m("Method", "方法"),
    "msg-col-created": _m("Created", "创建时间"),
    "msg-train-model-info": _m("**{name}** · {kind} · {total} parameters ({active} active) · {layers} layers · "
                               "context {context}{experts}{builtin}",
                               "**{name}** · {kind} · {total} 参数（激活 {active}）· {layers} 层 · 上下文 {context}"
                               "{experts}{builtin}"),
    "msg-train-experts": _m(" · {experts} experts, top-{top}{shared}", " · {experts} 个专家，top-{top}{shared}"),
    "msg-train-shared": _m(" + {n} shared", " + {n} 个共享专家"),
    "msg-train-builtin": _m(" · built in, trains on CPU", " · 内置，可在 CPU 上训练"),
    "msg-train-custom-model": _m("A local checkpoint directory: {path}", "本地检查点目录：{path}"),
    "msg-train-hub-model": _m("A model from a hub: {path}", "来自模型库的模型：{path}"),
    "msg-train-no-presets": _m("no presets", "无预设"),
    "msg-train-preset-applied": _m("Applied preset {preset}: {changes}", "已应用预设 {preset}：{changes}"),
    "msg-train-preset-same": _m("✓ The form holds preset **{preset}**.", "✓ 表单即预设 **{preset}**。"),
    "msg-train-preset-modified": _m("**{preset} (modified)** · changed: {fields}",
                                    "**{preset}（已修改）** · 改动：{fields}"),
    "msg-train-summary": _m("**Will train** `{model}` · {method} · {tuning} · lr {lr} · {length} · {rows}",
                            "**将训练** `{model}` · {method} · {tuning} · 学习率 {lr} · {length} · {rows}"),
    "msg-train-summary-lora": _m("LoRA rank {rank}", "LoRA 秩 {rank}"),
    "msg-train-summary-full": _m("full fine-tuning", "全参数微调"),
    "msg-train-summary-epochs": _m("epochs {n}", "{n} 轮"),
    "msg-train-summary-steps": _m("steps {n}", "{n} 步"),
    "msg-train-summary-rows": _m("{n} rows", "{n} 行"),
    "msg-train-summary-no-data": _m("no training data yet", "尚无训练数据"),
    "msg-train-stored-file": _m("**{name}** · {rows} rows · `{path}`", "**{name}** · {rows} 行 · `{path}`"),
    "msg-train-problems": _m("**{n} problem(s) — nothing was started.** Each is shown next to its field:",
                             "**发现 {n} 个问题——未启动任务。** 每个问题都显示在对应字段旁："),
    "msg-train-queued": _m("Job **{name}** ({id}) queued. It starts as soon as its device is free; watch it in the "
                           "Jobs tab.", "任务 **{name}**（{id}）已加入队列，设备空闲时立即开始；可在“任务”页查看。"),
    "msg-train-invalid-preview": _m("# not valid yet:\n{problems}", "# 配置尚不合法：\n{problems}"),
    "msg-train-loaded": _m("Loaded {file}.", "已加载 {file}。"),
    "msg-train-load-problems": _m("Loaded {file}, with problems shown next to their fields.",
                                  "已加载 {file}，问题已显示在对应字段旁。"),
    "msg-train-load-failed": _m("Cannot load {file}: {error}", "无法加载 {file}：{error}"),
    "msg-train-imported": _m("Imported ERNIEKit config {file}.", "已导入 ERNIEKit 配置 {file}。"),
    "msg-train-unmapped": _m("Keys with no equivalent here (not imported): {keys}", "此处无对应项（未导入）的键：{keys}"),
    "msg-train-notes": _m("Notes: {notes}", "说明：{notes}"),
    "msg-train-saved": _m("Saved {file}; download it below.", "已保存 {file}，可在下方下载。"),
    "msg-train-cloned": _m("Loaded the config of job {id} into the form; change what you like and start it.",
                           "已将任务 {id} 的配置载入表单；修改后即可开始。"),
    "msg-jobs-none": _m("No jobs yet. Start one in the Train tab.", "还没有任务。请在“训练”页开始一个任务。"),
    "msg-jobs-header": _m("### {name}\n`{id}` · **{state}**{queue} · {model} · {method} · created {created}",
                          "### {name}\n`{id}` · **{state}**{queue} · {model} · {method} · 创建于 {created}"),
    "msg-jobs-queue": _m(" (number {pos} in the queue, waiting for {devices})", "（队列第 {pos} 位，等待 {devices}）"),
    "msg-jobs-progress": _m("step {step} / {total} · {pct}% · elapsed {elapsed} · ETA {eta}",
                            "第 {step} / {total} 步 · {pct}% · 已用 {elapsed} · 预计剩余 {eta}"),
    "msg-jobs-waiting": _m("waiting to start", "等待开始"),
    "msg-jobs-tokens": _m("tokens/s", "tokens/秒"),
    "msg-jobs-cpu": _m("CPU", "CPU"),
    "msg-jobs-ram": _m("RAM", "内存"),
    "msg-jobs-gpu": _m("GPU memory", "GPU 显存"),
    "msg-jobs-loss-now": _m("loss", "损失"),
    "msg-jobs-reward-accuracy": _m("reward accuracy", "奖励准确率"),
    "msg-jobs-experts": _m("Share of each MoE layer's tokens per expert, logging window ending at step {step}",
                           "每个 MoE 层中各专家分到的词元比例（截至第 {step} 步的记录窗口）"),
    "msg-jobs-experts-text": _m("text experts", "文本专家"),
    "msg-jobs-experts-vision": _m("vision experts", "视觉专家"),
    "msg-jobs-stopping": _m("Stopping {id}: it finishes its step and saves a checkpoint.",
                            "正在停止 {id}：完成当前步并保存检查点。"),
    "msg-jobs-resumed": _m("Job {id} is queued to resume from its last checkpoint.", "任务 {id} 已排队，将从最后的检查点继续。"),
    "msg-jobs-delete-question": _m("Delete job **{name}** ({id}) with its checkpoints, logs and outputs?",
                                   "删除任务 **{name}**（{id}）及其检查点、日志和输出？"),
    "msg-jobs-deleted": _m("Deleted job {id}.", "已删除任务 {id}。"),
    "msg-jobs-failed-action": _m("Cannot do that: {error}", "无法执行：{error}"),
    "msg-export-none": _m("No completed job yet.", "还没有已完成的任务。"),
    "msg-export-running": _m("Exporting to `{dir}` …", "正在导出到 `{dir}` …"),
    "msg-export-done": _m("✓ Exported to `{dir}` ({size}).", "✓ 已导出到 `{dir}`（{size}）。"),
    "msg-export-failed": _m("✗ Export failed: {error}", "✗ 导出失败：{error}"),
    "msg-export-refused": _m("Cannot export: {error}", "无法导出：{error}"),
    "msg-export-not-yet": _m("Not exported yet.", "尚未导出。"),
    "msg-output-info": _m("**Output**: {what} · {size}  \n`{path}`", "**输出**：{what} · {size}  \n`{path}`"),
    "msg-output-adapter": _m("LoRA adapter of {base}", "基于 {base} 的 LoRA 适配器"),
    "msg-output-model": _m("full model", "完整模型"),
    "msg-output-not-offered": _m("The Chat tab does not offer {path}: it holds no config.json.",
                                 "对话页没有提供 {path}：其中没有 config.json。"),
    "msg-zip-building": _m("Building the zip … (a large model takes a while)", "正在打包 zip …（大模型需要一些时间）"),
    "msg-zip-ready": _m("✓ {name} ({size}) is ready: use the download button.",
                        "✓ {name}（{size}）已就绪：请点击下载按钮。"),
    "msg-zip-failed": _m("✗ Cannot build the zip: {error}", "✗ 无法打包 zip：{error}"),
    "msg-ckpt-base": _m("{name} (base)", "{name}（基座）"),
    "msg-ckpt-output": _m("{title}: output ({kind})", "{title}：输出（{kind}）"),
    "msg-ckpt-export": _m("{title}: export (merged)", "{title}：导出（已合并）"),
    "msg-ckpt-export-quant": _m("{title}: export (merged, {quant})", "{title}：导出（已合并，{quant}）"),
    "msg-ckpt-export-in": _m("{title}: export in {path} (merged)", "{title}：导出到 {path}（已合并）"),
    "msg-ckpt-export-in-quant": _m("{title}: export in {path} (merged, {quant})",
                                   "{title}：导出到 {path}（已合并，{quant}）"),
    "msg-ckpt-adapter": _m("LoRA adapter", "LoRA 适配器"),
    "msg-ckpt-model": _m("model", "模型"),
    "msg-state-queued": _m("queued", "排队中"),
    "msg-state-running": _m("running", "运行中"),
    "msg-state-stopping": _m("stopping", "正在停止"),
    "msg-state-stopped": _m("stopped", "已停止"),
    "msg-state-completed": _m("completed", "已完成"),
    "msg-state-failed": _m("failed", "失败"),
    "train-nodes-commands": _l("Run on each other node", "在其他每个节点上运行"),  # webui.nodes_panel
    "jobs-nodes-commands": _l("Run on each other node", "在其他每个节点上运行"),
    "msg-nodes-intro": _m(
        "**{nnodes} nodes, {nproc} process(es) each.** This machine is node 0: the studio starts it, and it waits at "
        "`{master}` (shown as queued) until every other node has joined. Run each command below on its node, in a "
        "copy of the studio at `{repo}` with the same Python environment, where the job's config.yaml, the model and "
        "the data are at the same paths as here (a shared filesystem is simplest; resuming, or starting from a LoRA "
        "adapter, needs one). Only node 0 writes the job's status, metrics, checkpoints and output; logs: `{logs}` "
        "(`node-K/` for node K). Stop ends this node's launch, and the other nodes stop after the same step.",
        "**{nnodes} 个节点，每个 {nproc} 个进程。** 本机是 0 号节点：由工作室启动，并在 `{master}` 等待其他节点全部加入"
        "（期间显示为排队中）。请在各节点上运行对应命令：该节点需在 `{repo}` 有相同的工作室代码和 Python 环境，且任务的 "
        "config.yaml、模型和数据位于与本机相同的路径（共享文件系统最简单；从检查点继续或从 LoRA 适配器开始时必须共享）。"
        "只有 0 号节点写入任务的状态、指标、检查点和输出；日志：`{logs}`（K 号节点在 `node-K/`）。停止会结束本节点的启动，其他节点在同一步之后停止。"),
    "msg-nodes-loopback": _m("`{master}` is loopback: only nodes on this machine reach it; other machines need its "
                             "network address.", "`{master}` 是回环地址：只有本机上的节点能访问；其他机器需使用本机的网络地址。"),
    "msg-nodes-placeholder": _m("Start makes the job directory (`<job id>` here); the Jobs tab shows the real paths.",
                                "点击“开始”才会创建任务目录（此处为 `<job id>`）；“任务”页显示真实路径。"),
    "msg-nodes-resume": _m("This launch resumes from a checkpoint: every node runs with `--resume`.",
                           "本次启动从检查点继续：每个节点都要带 `--resume` 运行。"),
}

for _spec in iter_fields():
    _zh = FIELD_ZH.get(_spec.key, (_spec.label, _spec.help))
    _entry = {"en": {"label": _spec.label, "info": _spec.help}, "zh": {"label": _zh[0], "info": _zh[1]}}
    if _spec.item_fields:
        _entry["en"]["headers"] = [item.label for item in _spec.item_fields]
        _entry["zh"]["headers"] = [ENTRY_ZH.get(item.key, item.label) for item in _spec.item_fields]
    CATALOGUE[field_id(_spec.key)] = _entry
for _group, (_en, _zh_label) in GROUPS.items():
    CATALOGUE[group_id(_group)] = _l(_en, _zh_label)
    CATALOGUE[group_id(_group, advanced=True)] = _l(f"{_en}: advanced", f"{_zh_label}：高级")


def props(key: str, lang: str) -> dict[str, str]:
    """The catalogue's properties of `key` in `lang` (English where a translation is missing)."""
    entry = CATALOGUE[key]
    return {**entry["en"], **entry.get(lang, {})}


def t(key: str, lang: str = DEFAULT_LANG, **fields: Any) -> str:
    """A message (or a component's main text) in `lang`, with its {fields} filled in."""
    p = props(key, lang if lang in LANGUAGES else DEFAULT_LANG)
    text = p.get("text", p.get("label", p.get("value", "")))
    return text.format(**fields) if fields else text


def message_text(message: Any, lang: str) -> str:
    """A trainer Message in `lang`, or one as an issue record carries it (`i18n` beside its English
    `message`, in `data check --json` and stored reports); other text as it is."""
    if isinstance(message, Message):
        return message.text(lang if lang in LANGUAGES else DEFAULT_LANG)
    if isinstance(message, dict):
        try:
            return message_text(Message.from_json(message["i18n"]), lang)
        except (KeyError, TypeError, ValueError, IndexError):
            return str(message.get("message", ""))
    return str(message)


class Phrase(NamedTuple):
    """A message not yet put into a language; a field may itself be a Phrase (a translated word) or a
    trainer Message."""
    key: str
    fields: dict = {}

    def text(self, lang: str) -> str:
        return t(self.key, lang, **{name: value.text(lang) if isinstance(value, Phrase) else
                                    message_text(value, lang) if isinstance(value, Message) else value
                                    for name, value in self.fields.items()})


def both(render: Callable[[str], str]) -> str:
    """Markdown holding `render(lang)` for every language, each in a block the page shows only while
    its language is chosen (MESSAGE_CSS, keyed on what SWITCH_JS sets). A status line written this
    way follows a language switch at once, though no handler runs again to redraw it."""
    texts = {code: render(code) for code in LANGUAGES}
    if not any(texts.values()):
        return ""
    return "\n".join(f'<div class="studio-msg" lang="{code}">\n\n{text}\n\n</div>' for code, text in texts.items())


def said(key: str, **fields: Any) -> str:
    """Message `key` in every language (see `both`); fields may be Phrases."""
    return both(Phrase(key, fields).text)


# Hide each language's blocks unless it is chosen; before any choice, the default shows.
MESSAGE_CSS = "\n".join(
    f'html[data-studio-lang]:not([data-studio-lang="{code}"]) .studio-msg[lang="{code}"] {{display: none;}}'
    if code == DEFAULT_LANG else
    f'html:not([data-studio-lang="{code}"]) .studio-msg[lang="{code}"] {{display: none;}}'
    for code in LANGUAGES)
# Run in the page by the language switch before its handler; passes the language on unchanged.
SWITCH_JS = "(lang) => { document.documentElement.dataset.studioLang = lang; return lang; }"


_LABELLED_BUTTONS = (gr.UploadButton, gr.DownloadButton)


def _accepted(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


class Texts:
    """The components whose text comes from the catalogue, in the order they were made."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, dict]] = []

    def make(self, cls: type, key: str, fmt: dict | None = None, **kwargs: Any) -> Any:
        """`cls(elem_id=key, <English text of key>, **kwargs)`, registered for relabelling; `fmt`
        fills {fields} in the text."""
        component = cls(elem_id=key, **self._props(cls, key, DEFAULT_LANG, fmt or {}), **kwargs)
        self._items.append((component, key, fmt or {}))
        return component

    @staticmethod
    def _props(cls: type, key: str, lang: str, fmt: dict) -> dict:
        accepted = _accepted(cls)
        out = {}
        for name, value in props(key, lang).items():
            if name == "value" and issubclass(cls, _LABELLED_BUTTONS):
                name = "label"  # these buttons show their label; their value is a file
            if name in accepted:
                out[name] = value.format(**fmt) if fmt and isinstance(value, str) else value
        return out

    @property
    def components(self) -> list[Any]:
        return [component for component, _, _ in self._items]

    @property
    def keys(self) -> list[str]:
        return [key for _, key, _ in self._items]

    def updates(self, lang: str) -> dict[Any, dict]:
        """An update for every registered component, with its text in `lang`."""
        lang = lang if lang in LANGUAGES else DEFAULT_LANG
        return {c: gr.update(**self._props(type(c), key, lang, fmt)) for c, key, fmt in self._items}
