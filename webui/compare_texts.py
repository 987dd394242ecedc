"""English and Chinese text of the Compare tab (webui/compare_tab.py), merged into webui.i18n's
CATALOGUE: its components' labels, and its messages and table rows as message id -> (English,
Chinese). Imports nothing of the project, so the catalogue file stays within its size."""

from __future__ import annotations


def _plot(en: str, en_y: str, zh: str, zh_y: str) -> dict:
    return {"en": {"label": en, "x_title": "step", "y_title": en_y, "color_title": "job"},
            "zh": {"label": zh, "x_title": "步数", "y_title": zh_y, "color_title": "任务"}}


# the DPO curves one can pick, by webui.monitor.REWARD_SERIES name
_REWARDS_EN = [("chosen reward", "chosen"), ("rejected reward", "rejected"), ("reward margin", "margin"),
               ("reward accuracy", "accuracy")]
_REWARDS_ZH = [("选中回复的奖励", "chosen"), ("拒绝回复的奖励", "rejected"), ("奖励差", "margin"),
               ("奖励准确率", "accuracy")]

COMPARE_COMPONENTS: dict[str, dict[str, dict]] = {
    "tab-compare": {"en": {"label": "Compare"}, "zh": {"label": "对比"}},
    "compare-intro": {
        "en": {"value": "Pick two to four jobs, in any state, to see their curves overlaid, their final figures "
                        "side by side and only the settings they differ in. A running job shows its curves so far."},
        "zh": {"value": "选择两到四个任务（任意状态），叠加查看它们的曲线、并排比较最终指标，并只列出不同的设置。"
                        "运行中的任务显示到目前为止的曲线。"}},
    "compare-jobs": {"en": {"label": "Jobs to compare", "info": "Two to four jobs."},
                     "zh": {"label": "要对比的任务", "info": "两到四个任务。"}},
    "compare-refresh": {"en": {"value": "Refresh"}, "zh": {"value": "刷新"}},
    "compare-loss": _plot("Training loss", "loss", "训练损失", "损失"),
    "compare-evals": _plot("Evaluation loss", "eval loss", "评估损失", "评估损失"),
    "compare-reward_series": {"en": {"label": "DPO curve", "choices": _REWARDS_EN},
                              "zh": {"label": "DPO 曲线", "choices": _REWARDS_ZH}},
    "compare-rewards": _plot("DPO rewards", "value", "DPO 奖励", "数值"),
    "compare-metrics": {"en": {"label": "Final figures"}, "zh": {"label": "最终指标"}},
    "compare-differ": {"en": {"label": "Settings that differ"}, "zh": {"label": "不同的设置"}},
}

COMPARE_MESSAGES: dict[str, tuple[str, str]] = {
    "msg-compare-too-few": ("Pick at least two jobs to compare ({count} chosen).",
                            "请至少选择两个任务进行对比（已选 {count} 个）。"),
    "msg-compare-too-many": ("Pick at most four jobs to compare ({count} chosen).",
                             "最多只能对比四个任务（已选 {count} 个）。"),
    "msg-compare-gone": ("Job {id} no longer exists: pick another one.", "任务 {id} 已不存在：请另选一个。"),
    "msg-compare-no-config": ("The settings of {name} cannot be read ({error}): its column shows none.",
                              "无法读取 {name} 的设置（{error}）：其列不显示设置。"),
    "msg-compare-not-training": ("{name} is an evaluation, not a training run: pick another job.",
                                 "{name} 是评估任务，不是训练任务：请另选一个。"),
    "msg-compare-same": ("The chosen jobs have the same settings.", "所选任务的设置完全相同。"),
    "msg-compare-col-figure": ("Figure", "指标"),
    "msg-compare-col-setting": ("Setting", "设置"),
    "msg-compare-col-key": ("Key", "键"),
    "msg-compare-row-state": ("state", "状态"),
    "msg-compare-row-steps": ("steps done", "已完成步数"),
    "msg-compare-row-loss": ("final training loss", "最终训练损失"),
    "msg-compare-row-best-eval": ("best eval loss", "最佳评估损失"),
    "msg-compare-row-final-eval": ("final eval loss", "最终评估损失"),
    "msg-compare-row-reward-accuracy": ("final reward accuracy", "最终奖励准确率"),
    "msg-compare-row-reward-margin": ("final reward margin", "最终奖励差"),
    "msg-compare-row-runtime": ("runtime", "运行时长"),
    "msg-compare-row-tokens": ("tokens/s (last logging step)", "tokens/秒（最后一次记录）"),
    "msg-compare-row-eval": ("{metric} · {model}", "{metric} · {model}"),
    "msg-compare-base": ("base", "基座"),  # the checkpoints of the evaluation after training, as it labels them
    "msg-compare-tuned": ("tuned", "微调后"),
    "msg-compare-metric-exact_match": ("exact match", "精确匹配"),
    "msg-compare-metric-rouge-1": ("ROUGE-1", "ROUGE-1"),
    "msg-compare-metric-rouge-2": ("ROUGE-2", "ROUGE-2"),
    "msg-compare-metric-rouge-l": ("ROUGE-L", "ROUGE-L"),
    "msg-compare-metric-bleu-4": ("BLEU-4", "BLEU-4"),
    "msg-compare-metric-perplexity": ("perplexity", "困惑度"),
}
