"""What a quantized export's quality report and the FastDeploy serving note say, in English and
Chinese: message id -> (English, Chinese), with the same {fields}. Part of the trainer's catalogue
(trainer/messages.py merges it in), so the command line prints the English and the Export tab shows
either language. Imports nothing."""

EXPORT_MESSAGES: dict[str, tuple[str, str]] = {
    # -- the quality report's table (trainer/quant_report.py, trainer/export_facts.py)
    "qr-col-weights": ("weights", "权重"),
    "qr-col-perplexity": ("perplexity", "困惑度"),
    "qr-col-change": ("vs full precision", "相对全精度"),
    "qr-col-same": ("same greedy answer as full precision", "贪心回答与全精度相同"),
    "qr-col-bytes": ("weight bytes", "权重大小"),
    "qr-col-load": ("load memory", "加载内存"),
    "qr-full-precision": ("full precision ({dtype})", "全精度（{dtype}）"),
    "qr-exported": ("{width} (exported)", "{width}（已导出）"),
    "qr-same": ("{same} of {total} ({share})", "{same} / {total}（{share}）"),
    "qr-not-written": ("not written", "未写出"),
    "qr-source-eval": ("{rows} rows of the job's evaluation files (data.eval)", "任务评估文件（data.eval）中的 {rows} 行"),
    "qr-source-split": ("{rows} rows the job held out of its training data for evaluation (data.eval_split)",
                        "任务从训练数据中留出用于评估的 {rows} 行（data.eval_split）"),
    "qr-source-train": ("{rows} rows of the training data, chosen with a fixed seed: the job held none out, so the "
                        "model saw them in training",
                        "训练数据中以固定种子选出的 {rows} 行：任务没有留出评估数据，模型训练时见过这些行"),
    "qr-images-skipped": ("{n} rows with images were left out: the report measures text rows only",
                          "{n} 行含图片的数据未计入：报告只测量纯文本行"),
    "qr-dpo-chosen": ("A preference job's rows are measured with their chosen replies.",
                      "偏好数据按其选中的回复测量。"),
    "qr-how": ("Perplexity: over the replies' tokens. Greedy answers: up to {tokens} new tokens after each row's "
               "first user turn. Load memory: what a fresh process's peak resident memory grows by while it loads "
               "the checkpoint (full precision: the job's output as the Chat tab loads it).",
               "困惑度：按回复部分的词元计算。贪心回答：每行第一个用户轮次之后最多生成 {tokens} 个新词元。加载内存："
               "新进程加载该检查点时常驻内存峰值的增量（全精度：按对话页的方式加载任务输出）。"),
    "qr-title": ("Quality of the quantized export, measured on {source}", "量化导出的质量，测量数据：{source}"),
    # -- serving an export with FastDeploy (trainer/export_facts.py)
    "fd-serve": ("Serve it with FastDeploy (a CUDA GPU): the command points at `{dir}`",
                 "用 FastDeploy 部署（需 CUDA GPU）：命令指向 `{dir}`"),
    "fd-online": ("FastDeploy cannot read the studio's quantized format: it quantizes full-precision weights itself "
                  "as it loads them. So the command points at the full-precision export `{dir}` and asks FastDeploy "
                  "for {online}.",
                  "FastDeploy 无法读取本工作室的量化格式：它在加载全精度权重时自行量化。因此命令指向全精度导出 `{dir}`，"
                  "并让 FastDeploy 使用 {online}。"),
    "fd-missing": ("`{dir}` holds no export yet: export this job once more with quantization none.",
                   "`{dir}` 中还没有导出：请以不量化的方式再导出一次此任务。"),
    "fd-mix": ("FastDeploy quantizes every layer to one width at load; wint4/8 has no such form, so the command "
               "asks for wint4 (expert and other layers all int4): choose wint8 instead to keep more quality.",
               "FastDeploy 加载时把所有层量化为同一位宽；wint4/8 没有这种形式，所以命令使用 wint4（专家层和其余层"
               "都为 int4）：如需更高质量请改用 wint8。"),
    "fd-group": ("FastDeploy's load-time quantization is channel-wise: the group size {group} chosen here does not "
                 "carry over.", "FastDeploy 加载时的量化为逐通道：此处选择的分组大小 {group} 不会沿用。"),
    "fd-parser": ("The reasoning parser {parser} splits the model's thinking from its answer.",
                  "推理解析器 {parser} 把模型的思考过程与回答分开。"),
    "fd-no-parser": ("No reasoning parser: this model's chat template has no thinking mode.",
                     "无需推理解析器：此模型的对话模板没有思考模式。"),
}
