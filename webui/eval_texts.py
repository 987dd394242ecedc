"""English and Chinese text of the Evaluate tab (webui/eval_tab.py) and of the evaluation figures the
Jobs tab shows (webui/eval_figures.py), merged into webui.i18n's CATALOGUE: the components' labels,
and the messages as message id -> (English, Chinese). Imports nothing of the project, so the
catalogue file stays within its size. The metric names are the Compare tab's (`msg-compare-metric-*`)."""

from __future__ import annotations

_FILTERS_EN = [("all rows", "all"), ("where A differs from the reference", "a-ref"), ("where A and B differ", "a-b")]
_FILTERS_ZH = [("全部行", "all"), ("A 与参考答案不同的行", "a-ref"), ("A 与 B 不同的行", "a-b")]


def _l(en: str, zh: str, en_info: str = "", zh_info: str = "") -> dict:
    if en_info:
        return {"en": {"label": en, "info": en_info}, "zh": {"label": zh, "info": zh_info}}
    return {"en": {"label": en}, "zh": {"label": zh}}


EVAL_COMPONENTS: dict[str, dict[str, dict]] = {
    "tab-evaluate": _l("Evaluate", "评估"),
    "eval-intro": {
        "en": {"value": "Let checkpoints answer a data set greedily and score the answers against its references "
                        "(exact match, ROUGE, BLEU, perplexity). The evaluation runs as a job of the queue: it "
                        "shows in the Jobs tab too, and Stop keeps the answers written so far."},
        "zh": {"value": "让检查点以贪心解码回答一个数据集，并与参考答案比较打分（精确匹配、ROUGE、BLEU、困惑度）。"
                        "评估作为队列中的任务运行，也会显示在“任务”页；停止时保留已写出的回答。"}},
    "eval-models": _l("Checkpoints", "检查点", "Built-in models, completed jobs' outputs and their exports.",
                      "内置模型、已完成任务的输出及其导出的模型。"),
    "eval-other": {"en": {"label": "Other checkpoints", "info": "Directories or hub ids, one per line.",
                          "placeholder": "/path/to/checkpoint"},
                   "zh": {"label": "其他检查点", "info": "目录或模型仓库 ID，每行一个。",
                          "placeholder": "/path/to/checkpoint"}},
    "eval-data": _l("Data", "数据", "A stored dataset, the evaluation rows of a training job, or a file path.",
                    "已保存的数据集、某个训练任务的评估行，或文件路径。"),
    "eval-max_new_tokens": _l("Max new tokens", "最大生成长度", "The longest answer per prompt.",
                              "每个提示最多生成的词元数。"),
    "eval-batch_size": _l("Batch size", "批大小", "Prompts decoded together.", "同时解码的提示数。"),
    "eval-device": _l("Device", "设备"),
    "eval-start": {"en": {"value": "Start evaluation"}, "zh": {"value": "开始评估"}},
    "eval-select": _l("Evaluation", "评估", "Evaluation jobs, newest first, and the evaluations after training.",
                      "评估任务（最新在前）以及训练后的评估。"),
    "eval-stop": {"en": {"value": "Stop"}, "zh": {"value": "停止"}},
    "eval-metrics": _l("Figures per checkpoint", "各检查点的指标"),
    "eval-filter": {"en": {"label": "Rows", "choices": _FILTERS_EN}, "zh": {"label": "显示的行", "choices": _FILTERS_ZH}},
    "eval-model_a": _l("Model A", "模型 A"),
    "eval-model_b": _l("Model B", "模型 B"),
    "eval-examples": _l("Answers side by side", "并排查看回答"),
    "eval-csv": {"en": {"value": "Download CSV"}, "zh": {"value": "下载 CSV"}},
    "eval-jsonl": {"en": {"value": "Download JSONL"}, "zh": {"value": "下载 JSONL"}},
    "jobs-eval_table": _l("Evaluation figures", "评估指标"),
}

EVAL_MESSAGES: dict[str, tuple[str, str]] = {
    "msg-eval-none": ("No evaluation yet: pick checkpoints and data above and press Start evaluation.",
                      "还没有评估：请在上方选择检查点和数据，然后点击“开始评估”。"),
    "msg-eval-pick-models": ("Pick at least one checkpoint, or write one under Other checkpoints.",
                             "请至少选择一个检查点，或在“其他检查点”中填写。"),
    "msg-eval-pick-data": ("Pick the data to evaluate on.", "请选择用于评估的数据。"),
    "msg-eval-no-such-data": ("{data} is not a file or a job directory.", "{data} 既不是文件也不是任务目录。"),
    "msg-eval-no-such-checkpoint": ("{path} does not exist.", "{path} 不存在。"),
    "msg-eval-gone": ("{what} no longer exists: pick another one.", "{what} 已不存在：请另选一个。"),
    "msg-eval-refused": ("Cannot start the evaluation: {error}", "无法开始评估：{error}"),
    "msg-eval-queued": ("Queued evaluation {name} ({id}); it starts when the device is free.",
                        "评估 {name}（{id}）已排队，设备空闲时开始。"),
    "msg-eval-cloned": ("The form holds the settings of evaluation {id}: press Start evaluation to run it again.",
                        "表单已填入评估 {id} 的设置：点击“开始评估”即可再次运行。"),
    "msg-eval-stopping": ("Stopping {name}: the answers written so far are kept.", "正在停止 {name}：已写出的回答会保留。"),
    "msg-eval-failed-action": ("Cannot do that: {error}", "无法执行：{error}"),
    "msg-eval-job-rows": ("Evaluation rows of job {name} · {id}", "任务 {name} 的评估行 · {id}"),
    "msg-eval-after": ("Evaluation after training: {name} · {state} · {id}", "训练后评估：{name} · {state} · {id}"),
    "msg-eval-failed": ("The evaluation failed: {error}", "评估失败：{error}"),
    "msg-eval-waiting": ("The figures show here once the first checkpoint has answered every row.",
                         "第一个检查点回答完所有行后，这里会显示指标。"),
    "msg-eval-rows": ("Data: {data} ({format}), {rows} rows.", "数据：{data}（{format}），共 {rows} 行。"),
    "msg-eval-images-left-out": ("{count} rows with images were left out: the evaluation answers text rows only.",
                                 "{count} 行含图片，已略过：评估只回答纯文本行。"),
    "msg-eval-now": (" · now: {model}", " · 正在评估：{model}"),
    "msg-eval-legend": ("Red: an answer that differs from the reference; green: one equal to it.",
                        "红色：与参考答案不同的回答；绿色：与参考答案相同的回答。"),
    "msg-eval-shown": ("{count} of {total} rows match; the first {shown} are shown (the CSV holds every row).",
                       "{total} 行中有 {count} 行符合；只显示前 {shown} 行（CSV 含全部行）。"),
    "msg-eval-matching": ("{count} of {total} rows shown.", "显示 {total} 行中的 {count} 行。"),
    "msg-eval-no-rows": ("No row matches: pick other rows or other models.", "没有符合条件的行：请换一种筛选或模型。"),
    "msg-eval-col-index": ("#", "#"),
    "msg-eval-col-reference": ("Reference", "参考答案"),
    "msg-eval-no-reference": ("(no reference)", "（无参考答案）"),
    "msg-eval-skipped": ("skipped: {why}", "已跳过：{why}"),
    "msg-eval-not-answered": ("no answer", "无回答"),
    "msg-eval-model-failed": ("not evaluated: the checkpoint failed (its error is in the figures)",
                              "未评估：该检查点出错（错误见指标表）"),
    "msg-eval-row-answered": ("answered", "已回答"),
    "msg-eval-row-truncated": ("prompts shortened to fit", "为放入上下文而截短的提示"),
    "msg-eval-row-skipped": ("prompts skipped (too long)", "跳过的提示（过长）"),
    "msg-eval-row-error": ("error", "错误"),
    "msg-eval-not-computed": ("not computed: {why}", "未计算：{why}"),
    "msg-jobs-progress-answers": ("answer {step} / {total} · {pct}% · elapsed {elapsed} · ETA {eta}",
                                  "回答 {step} / {total} · {pct}% · 已用 {elapsed} · 预计剩余 {eta}"),
    "msg-jobs-evaluating": (" · training done, evaluating the base and the tuned model: answer {step} / {total}",
                            " · 训练已完成，正在评估基座模型与微调后的模型：回答 {step} / {total}"),
    "msg-jobs-header-eval": ("### {name}\n`{id}` · **{state}**{queue} · {models} on {data} · created {created}",
                             "### {name}\n`{id}` · **{state}**{queue} · 在 {data} 上评估 {models} · 创建于 {created}"),
    "msg-jobs-evaluation": ("evaluation", "评估"),
    "msg-jobs-eval-own": ("**The figures of this evaluation.** The Evaluate tab shows every answer beside its "
                          "reference.", "**本次评估的指标。**“评估”页可逐条查看回答与参考答案。"),
    "msg-jobs-eval-after": ("**Evaluation after training** on the job's evaluation rows: the base model against the "
                            "tuned one. The Evaluate tab shows every answer.",
                            "**训练后评估**（使用本任务的评估行）：基座模型与微调后的模型对比。“评估”页可逐条查看回答。"),
}
