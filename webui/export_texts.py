"""English and Chinese text of the Export tab's quantization choice, quality report and FastDeploy
command (webui/export_tab.py), merged into webui.i18n's CATALOGUE. The widths and group sizes
offered are models.quant_spec's; the report's and the command's own words are the trainer's
Messages (trainer/export_messages.py)."""

from __future__ import annotations

from models.quant_spec import GROUP_SIZES, WIDTHS

NO_QUANTIZATION = "none"


def _choices(none: str, channel: str) -> tuple[list, list]:
    widths = [(none, NO_QUANTIZATION)] + [(width, width) for width in WIDTHS]
    groups = [(channel if size == -1 else str(size), str(size)) for size in GROUP_SIZES]
    return widths, groups


_EN_WIDTHS, _EN_GROUPS = _choices("none (full precision)", "-1 (one scale per output channel)")
_ZH_WIDTHS, _ZH_GROUPS = _choices("不量化（全精度）", "-1（每个输出通道一个缩放）")

EXPORT_TEXTS = {
    "export-quant": {
        "en": {"label": "Quantization", "choices": _EN_WIDTHS,
               "info": "Weight-only int8/int4 of the merged model, measured on the job's data against full precision "
                       "(wint4/8: int4 experts, int8 the rest). Written to the job's export-WIDTH/ folder."},
        "zh": {"label": "量化", "choices": _ZH_WIDTHS,
               "info": "对合并后的模型做仅权重的 int8/int4 量化，并在任务数据上与全精度对比（wint4/8：专家层 int4，"
                       "其余 int8）。写入任务的 export-位宽/ 目录。"}},
    "export-group": {
        "en": {"label": "Group size", "choices": _EN_GROUPS,
               "info": "64 or 128: one scale per that many input rows; every quantized layer's input size must "
                       "divide by it (the built-in tiny models take -1 only)."},
        "zh": {"label": "分组大小", "choices": _ZH_GROUPS,
               "info": "64 或 128：每这么多输入行一个缩放；每个量化层的输入维度都必须能被它整除（内置的小模型只能用 -1）。"}},
    "export-serve": {"en": {"label": "Serve it with FastDeploy"}, "zh": {"label": "用 FastDeploy 部署"}},
}
