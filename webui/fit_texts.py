"""English and Chinese text of the Train tab's memory estimate (webui/fit_panel.py), merged into
webui.i18n's CATALOGUE (kept here, importing nothing, so the catalogue file stays within its size)."""

from __future__ import annotations


def _m(en: str, zh: str) -> dict:
    return {"en": {"text": en}, "zh": {"text": zh}}


FIT_TEXTS = {
    "msg-fit-estimate": _m("**Memory {per}: ≈ {need}** ({parts}; the peak comes {phase}) · {have}",
                           "**内存{per}：约 {need}**（{parts}；峰值出现在{phase}）· {have}"),
    "msg-fit-per-process": _m("per process", "（每个进程）"),
    "msg-fit-processes": _m("for {n} processes ({each} each)", "（{n} 个进程，每个 {each}）"),
    "msg-fit-per-gpu": _m("per GPU", "（每块 GPU）"),
    "msg-fit-parts": _m("weights {weights} · gradients {gradients} · optimizer {optimizer} · activations "
                        "{activations} · runtime {runtime}",
                        "权重 {weights} · 梯度 {gradients} · 优化器 {optimizer} · 激活 {activations} · 运行时 {runtime}"),
    "msg-fit-reference-parts": _m("{parts} · reference model {reference}",
                                  "{parts} · 参考模型 {reference}"),
    "msg-fit-phase-training": _m("in a training step", "训练步中"),
    "msg-fit-phase-loading": _m("while the model loads", "加载模型时"),
    "msg-fit-phase-saving": _m("while a checkpoint is saved", "保存检查点时"),
    "msg-fit-ram": _m("this machine has {have} of RAM", "本机内存 {have}"),
    "msg-fit-gpu": _m("the GPUs have {have} each", "每块 GPU 显存 {have}"),
    "msg-fit-gpu-unknown": _m("GPU memory unknown (nvidia-smi not found)",
                              "GPU 显存未知（未找到 nvidia-smi）"),
    "msg-fit-too-big": _m("⚠ **Likely too big for this machine:** it needs ≈ {need}, {have} is there. Start still "
                          "queues it. Smaller batches or max_seq_len, LoRA, or on GPUs recompute, sharding or more "
                          "GPUs need less.",
                          "⚠ **本机可能放不下：**需要约 {need}，只有 {have}。仍可点击开始排队。"
                          "减小批大小或 max_seq_len、改用 LoRA，或在 GPU 上启用重计算、分片或使用更多 GPU，"
                          "可减少内存。"),
    "msg-fit-invalid": _m("Memory estimate: once the form's problems are fixed.",
                          "内存估计：请先修正表单中的问题。"),
    "msg-fit-no-model": _m("Memory estimate: needs the model's config.json ({reason}).",
                           "内存估计：需要模型的 config.json（{reason}）。"),
    "msg-fit-unsupported": _m("Memory estimate: {reason}.", "内存估计：{reason}。"),
}
