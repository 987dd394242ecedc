"""The trainer's messages in English and Chinese: what config validation, the ERNIEKit import and the
data checks say about bad input.

A check builds `Message(id, **fields)`. It is a `str` whose value is the English text, so the
command line, logs and every caller that joins or formats messages go on as with plain strings,
while `.key` and `.fields` let the web UI show it in the chosen language (`Message.text(lang)`).
Fields hold what is not translated (keys, file names, values, numbers, library error text) or a
nested Message (a described value, a role); a list field is shown one item a line. `to_json` and
`from_json` carry a message through `trainer data check --json` and the UI's stored reports.
The data checks' entries are in trainer/data/messages.py and a quantized export's report's in
trainer/export_messages.py, merged into CATALOGUE here. Imports nothing else of the project.
"""

from __future__ import annotations

from typing import Any

from trainer.data.messages import DATA_MESSAGES
from trainer.export_messages import EXPORT_MESSAGES

LANGUAGES = ("en", "zh")


def _m(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


CATALOGUE: dict[str, dict[str, str]] = {
    # -- values, as a message describes them
    "value-null": _m("null", "空值"),
    "value-mapping": _m("a mapping", "映射"),
    "value-list": _m("a list", "列表"),
    "value-none": _m("(none)", "（无）"),
    "value-bool": _m("boolean {value}", "布尔值 {value}"),
    "value-int": _m("int {value}", "整数 {value}"),
    "value-float": _m("float {value}", "浮点数 {value}"),
    "value-string": _m("string {value}", "字符串 {value}"),
    "value-items-one": _m("a list of {n} item", "含 {n} 项的列表"),
    "value-items": _m("a list of {n} items", "含 {n} 项的列表"),
    "value-object": _m("an object with keys {keys}", "含键 {keys} 的对象"),
    "value-empty-object": _m("an empty object", "空对象"),
    "value-end-of-file": _m("end of file", "文件结尾"),
    "word-a": _m("a {word}", "{word}"),
    "word-an": _m("an {word}", "{word}"),
    "role-user": _m("user", "用户"),
    "role-assistant": _m("assistant", "助手"),
    "kind-sft": _m("sft", "SFT 对话"),
    "kind-preference": _m("preference", "偏好对"),
    # -- the run's data (trainer/datasets.py); what the data checks say is in trainer/data/messages.py
    "data-kind-mismatch": _m("{key}: {path} holds {kind} rows (format {format}); method {method} needs {wanted} data",
                             "{key}：{path} 中是{kind}数据（格式 {format}）；{method} 方法需要{wanted}数据"),
    # -- the run config (trainer/config.py)
    "config-expected-bool": _m("{key}: expected true or false, got {value}", "{key}：应为布尔值，实际为 {value}"),
    "config-expected-int": _m("{key}: expected an integer, got {value}", "{key}：应为整数，实际为 {value}"),
    "config-expected-number": _m("{key}: expected a number, got {value}", "{key}：应为数字，实际为 {value}"),
    "config-expected-finite": _m("{key}: expected a finite number, got {value}", "{key}：应为有限的数字，实际为 {value}"),
    "config-expected-string": _m("{key}: expected a string, got {value}", "{key}：应为字符串，实际为 {value}"),
    "config-expected-strings": _m("{key}: expected a list of strings, got {value}",
                                  "{key}：应为字符串列表，实际为 {value}"),
    "config-expected-choice": _m("{key}: expected one of {choices}; got {value}",
                                 "{key}：应为 {choices} 之一；实际为 {value}"),
    "config-out-of-range": _m("{key}: {range}, got {value}", "{key}：{range}，实际为 {value}"),
    "range-between": _m("must be in {interval}", "必须在 {interval} 范围内"),
    "range-bound": _m("must be {op} {limit}", "必须 {op} {limit}"),
    "config-datasets-not-list": _m("{key}: expected a list of {shape} entries, got {value}",
                                   "{key}：应为 {shape} 条目的列表，实际为 {value}"),
    "config-dataset-not-mapping": _m("{key}: expected a mapping with a path, got {value}",
                                     "{key}：应为包含文件路径的映射，实际为 {value}"),
    "config-path-empty": _m("{key}: must not be empty", "{key}：不能为空"),
    "config-path-missing": _m("{key}: missing; every data file needs a path", "{key}：缺失；每个数据文件都需要路径"),
    "config-unknown-key": _m("unknown key '{key}'", "未知的键 '{key}'"),
    "config-unknown-key-guess": _m("unknown key '{key}' — did you mean '{guess}'?", "未知的键 '{key}'——是否想写 '{guess}'？"),
    "config-key-not-string": _m("{key}: keys must be strings", "{key}：键必须是字符串"),
    "config-given-twice": _m("{key}: given twice", "{key}：重复给出"),
    "config-section-not-mapping": _m("{key}: expected a mapping of settings, got {value}",
                                     "{key}：应为设置项的映射，实际为 {value}"),
    "config-top-not-mapping": _m("expected a mapping of settings at the top level, got {value}",
                                 "顶层应为设置项的映射，实际为 {value}"),
    "config-model-empty": _m("{key}: must not be empty; give a built-in model name such as {example} or a "
                             "checkpoint directory", "{key}：不能为空；请填写内置模型名称（如 {example}）或检查点目录"),
    "config-no-train-data": _m("{key}: needs at least one file, e.g. {example}", "{key}：至少需要一个文件，例如 {example}"),
    "config-prompt-len": _m("{key}: must be below {other} ({limit}) for method dpo, got {value}",
                            "{key}：dpo 方法下必须小于 {other}（{limit}），实际为 {value}"),
    "config-max-steps": _m("{key}: must be -1 (use the number of epochs) or >= 1, got {value}",
                           "{key}：必须为 -1（按训练轮数）或 >= 1，实际为 {value}"),
    "config-precision-cpu": _m("{key}: {precision} needs a GPU; on cpu use fp32",
                               "{key}：{precision} 需要 GPU；在 cpu 上请使用 fp32"),
    "config-format-needs-dpo": _m("{key}: {format} holds preference pairs; it needs method dpo",
                                  "{key}：{format} 是偏好对数据，需要 dpo 方法"),
    "config-eval-needs-data": _m("{key}: evaluation needs data: give data.eval or set data.eval_split above 0",
                                 "{key}：评估需要数据：请提供 data.eval，或将 data.eval_split 设为大于 0"),
    "config-gpu-ids-required": _m("{key}: required when devices.device is gpu, e.g. 0 or 0,1",
                                  "{key}：devices.device 为 gpu 时必填，例如 0 或 0,1"),
    "config-gpu-ids-not-ints": _m("{key}: expected comma-separated integers, got {value}",
                                  "{key}：应为逗号分隔的整数，实际为 {value}"),
    "config-gpu-ids-twice": _m("{key}: a GPU is listed twice in {value}", "{key}：{value} 中有 GPU 重复列出"),
    "config-nproc-gpus": _m("{key}: {nproc} process(es) per node but {gpus} GPU id(s) in devices.gpu_ids; they "
                            "must match (one process per GPU)",
                            "{key}：每节点 {nproc} 个进程，但 devices.gpu_ids 中有 {gpus} 个 GPU 编号；两者必须一致"
                            "（每个 GPU 一个进程）"),
    "config-master-required": _m("{key}: required as host:port when devices.nnodes > 1, got {value}",
                                 "{key}：devices.nnodes > 1 时必须以“主机:端口”的形式给出，实际为 {value}"),
    "config-moe-coef": _m("{key}: must be -1 (keep the checkpoint's value) or >= 0, got {value}",
                          "{key}：必须为 -1（保留检查点中的值）或 >= 0，实际为 {value}"),
    "config-bias-lora": _m("{key}: aux-loss-free balancing updates the routing biases, which a LoRA adapter does "
                           "not carry; use finetuning.type full or set it to 0",
                           "{key}：无辅助损失均衡会更新路由偏置，而 LoRA 适配器不包含这些偏置；"
                           "请使用 finetuning.type full，或将其设为 0"),
    "config-token-balanced": _m("{key}: applies to the SFT loss; method {method} has its own",
                                "{key}：仅适用于 SFT 损失；{method} 方法有自己的损失"),
    "config-freeze-router-lora": _m("{key}: LoRA never trains the router; the option is for finetuning.type full",
                                    "{key}：LoRA 从不训练路由；此选项用于 finetuning.type full"),
    "config-target-modules-empty": _m("{key}: needs at least one pattern; {example} adapts every linear layer",
                                      "{key}：至少需要一个模式；{example} 表示所有线性层"),
    "config-target-pattern": _m("{key}: {pattern} is not a valid pattern ({error})",
                                "{key}：{pattern} 不是有效的模式（{error}）"),
    "config-override-form": _m("override {item}: expected KEY=VALUE, e.g. {example}",
                               "覆盖项 {item}：应为“键=值”的形式，例如 {example}"),
    "config-override-yaml": _m("{key}: the value {text} is not valid YAML ({reason})",
                               "{key}：值 {text} 不是有效的 YAML（{reason}）"),
    "config-no-such-file": _m("no such file", "文件不存在"),
    "config-cannot-read": _m("cannot read it ({error})", "无法读取（{error}）"),
    "config-yaml-syntax": _m("YAML syntax error at {reason}", "YAML 语法错误：{reason}"),
    "config-yaml-too-deep": _m("YAML nested too deeply to read", "YAML 嵌套过深，无法读取"),
    "yaml-at": _m("line {line}, column {column}: {problem}", "第 {line} 行第 {column} 列：{problem}"),
    "yaml-alias": _m("aliases (*{anchor}) are not allowed in a run config; write the value out",
                     "运行配置中不允许使用别名（*{anchor}）；请直接写出值"),
    "yaml-key-twice": _m("key {key} is given twice (first on line {line})", "键 {key} 重复给出（第一次在第 {line} 行）"),
    "config-data-file-missing": _m("{key}: file not found: {path}", "{key}：文件不存在：{path}"),
    "config-data-invalid-rows": _m("{key}: {name} has {n} invalid row(s); fix the file or set data.skip_invalid",
                                   "{key}：{name} 有 {n} 行无效；请修正文件或开启 data.skip_invalid"),
    # -- GPU-scale settings (trainer/parallel.py) and this machine (trainer/preflight.py)
    "gpu-on-cpu": _m("{key}: {value} is a GPU-scale setting and devices.device is cpu ({reason}); set it back to "
                     "{default} or run on gpu",
                     "{key}：{value} 是 GPU 规模训练的设置，而 devices.device 为 cpu（{reason}）；请改回 {default}，"
                     "或在 gpu 上运行"),
    "gpu-reason-model-parallel": _m("model parallelism runs on NCCL, paddle's collectives between GPUs",
                                    "模型并行依赖 NCCL，即 paddle 在 GPU 之间的集合通信"),
    "gpu-reason-sharding": _m("paddle's sharding optimizers run on GPUs", "paddle 的分片优化器只在 GPU 上运行"),
    "gpu-reason-recompute": _m("it trades compute for GPU memory; a CPU run keeps its activations",
                               "它以计算换取 GPU 显存；CPU 运行保留全部激活值"),
    "gpu-reason-offload": _m("a CPU run keeps the optimizer state in CPU memory already",
                             "CPU 运行的优化器状态本来就在内存中"),
    "gpu-sharding-degree-zero": _m("{key}: must be -1 (every process left after tensor and pipeline parallelism) "
                                   "or >= 1, got 0", "{key}：应为 -1（张量并行和流水线并行之后剩下的所有进程）或 >= 1，"
                                                     "实际为 0"),
    "gpu-degrees-divide": _m("{key} x gpu.pipeline_parallel_degree = {tensor} x {pipeline} must divide "
                             "devices.nproc x devices.nnodes = {world} process(es); give more processes or lower "
                             "the degrees",
                             "{key} × gpu.pipeline_parallel_degree = {tensor} × {pipeline} 必须整除 devices.nproc × "
                             "devices.nnodes = {world} 个进程；请增加进程数或降低并行度"),
    "gpu-sharding-no-stage": _m("{key}: {degree} shards nothing while gpu.sharding is none; choose stage1, stage2 "
                                "or stage3", "{key}：gpu.sharding 未选分片阶段时，{degree} 不会分片任何内容；请选择 "
                                             "stage1、stage2 或 stage3"),
    "gpu-sharding-divide": _m("{key}: tensor x pipeline x sharding = {tensor} x {pipeline} x {degree} must divide "
                              "devices.nproc x devices.nnodes = {world} process(es)",
                              "{key}：张量 × 流水线 × 分片 = {tensor} × {pipeline} × {degree} 必须整除 devices.nproc × "
                              "devices.nnodes = {world} 个进程"),
    "gpu-pipeline-stage": _m("{key}: {stage} does not combine with pipeline parallelism (paddleformers allows "
                             "stage1 there); use stage1",
                             "{key}：{stage} 不能与流水线并行同时使用（paddleformers 只允许 stage1）；请使用 stage1"),
    "gpu-expert-divide": _m("{key}: pipeline x expert = {pipeline} x {experts} must divide devices.nproc x "
                            "devices.nnodes = {world} process(es)",
                            "{key}：流水线 × 专家 = {pipeline} × {experts} 必须整除 devices.nproc × devices.nnodes = "
                            "{world} 个进程"),
    "gpu-expert-data": _m("{key}: paddleformers runs expert parallelism with sharding, not with plain data "
                          "parallelism ({replicas} replicas here); set gpu.sharding stage1 with "
                          "gpu.sharding_parallel_degree -1",
                          "{key}：paddleformers 的专家并行需配合分片，不能与普通数据并行同时使用（此处有 {replicas} "
                          "个副本）；请设 gpu.sharding 为 stage1、gpu.sharding_parallel_degree 为 -1"),
    "gpu-offload-data": _m("{key}: paddleformers offloads the optimizer only without plain data parallelism "
                           "({replicas} replicas here); set gpu.sharding stage1 with gpu.sharding_parallel_degree -1 "
                           "so the ranks share the optimizer state instead",
                           "{key}：paddleformers 只在没有普通数据并行时才把优化器卸载到内存（此处有 {replicas} 个副本）；"
                           "请设 gpu.sharding 为 stage1、gpu.sharding_parallel_degree 为 -1，让各进程分担优化器状态"),
    "gpu-expert-dense": _m("{key}: {model} is a dense model without experts; set it to 1",
                           "{key}：{model} 是没有专家的稠密模型；请设为 1"),
    "gpu-tensor-heads": _m("{key}: {tensor} must divide the model's attention heads ({heads})",
                           "{key}：{tensor} 必须整除模型的注意力头数（{heads}）"),
    "gpu-pipeline-layers": _m("{key}: {pipeline} stages for a model of {layers} layers; at most {layers}",
                              "{key}：{layers} 层的模型分成 {pipeline} 个阶段；最多 {layers} 个"),
    "machine-no-paddle": _m("{key}: a GPU run needs PaddlePaddle, and none is installed in this environment; "
                            "install paddlepaddle-gpu (README, \"GPU machines\")",
                            "{key}：GPU 运行需要 PaddlePaddle，但当前环境未安装；请安装 paddlepaddle-gpu"
                            "（见 README.md 中 GPU 机器一节）"),
    "machine-cpu-build": _m("{key}: gpu needs PaddlePaddle built with CUDA, but this environment has the CPU build "
                            "({build}); install the GPU build from Paddle's own package index, choosing the index of "
                            "your CUDA version (README, \"GPU machines\"): {command}; or train here with "
                            "devices.device=cpu precision=fp32",
                            "{key}：gpu 需要带 CUDA 的 PaddlePaddle，但当前环境是 CPU 版（{build}）；请从 Paddle 自己的"
                            "软件包索引安装 GPU 版，并选择与 CUDA 版本对应的索引（见 README.md 中 GPU 机器一节）："
                            "{command}；或在本机使用 devices.device=cpu precision=fp32 训练"),
    "model-vision-dpo": _m("{key}: dpo is not supported for the vision-language model {name}; use sft",
                           "{key}：视觉语言模型 {name} 不支持 dpo；请使用 sft"),
    "vl-text-model": _m("{key}: {name} is a text model; this option is for vision-language models",
                        "{key}：{name} 是文本模型；此选项只适用于视觉语言模型"),
    "vl-nothing-to-train": _m("{key}: vl.freeze_vision, vl.freeze_adapter and vl.freeze_lm together leave nothing "
                              "to train", "{key}：vl.freeze_vision、vl.freeze_adapter 与 vl.freeze_lm 同时开启，"
                              "没有可训练的部分"),
    "vl-pixels-order": _m("{key}: {low} is above vl.max_pixels {high}", "{key}：{low} 大于 vl.max_pixels {high}"),
    "model-unusable": _m("{key}: {reason}", "{key}：{reason}"),
    # -- LoRA on a quantized base (trainer/quantized_base.py)
    "base-quant-full": _m("{key}: {width} holds the frozen base in low bit, and full fine-tuning updates every base "
                          "weight, which a quantized base no longer has in full precision; use finetuning.type lora, "
                          "or fine-tune in full precision and quantize the result at export",
                          "{key}：{width} 以低比特保存冻结的基座，而全量微调要更新基座的每个权重，量化后的基座已没有"
                          "这些全精度权重；请使用 finetuning.type lora，或以全精度微调后在导出时量化"),
    "base-quant-tensor-parallel": _m("{key}: a quantized base needs gpu.tensor_parallel_degree 1 (its layers are not "
                                     "split across GPUs), got {tensor}; spread the model with pipeline parallelism "
                                     "or sharding instead",
                                     "{key}：量化基座要求 gpu.tensor_parallel_degree 为 1（其各层不在多块 GPU 之间切分），"
                                     "实际为 {tensor}；请改用流水线并行或分片来分布模型"),
    "base-quant-group-size": _m("{key}: group size {group} does not divide the {rows} input rows of layer {layer} "
                                "(shape [{rows}, {cols}]); every quantized layer's input rows must divide by it; use "
                                "-1 (one scale per output channel)",
                                "{key}：分组大小 {group} 不能整除层 {layer}（形状 [{rows}, {cols}]）的 {rows} 个输入行；"
                                "每个量化层的输入行数都必须能被它整除；请使用 -1（每个输出通道一个缩放因子）"),
    "model-quantized": _m("{key}: {path} is a quantized checkpoint ({width}); training needs the full-precision "
                          "weights: train on the full-precision checkpoint it was made from, with "
                          "finetuning.base_quant {width} to hold that base in low bit",
                          "{key}：{path} 是量化检查点（{width}）；训练需要全精度权重：请在它所源自的全精度检查点上训练，"
                          "并设 finetuning.base_quant 为 {width}，以低比特保存该基座"),
    # -- the preference losses of a DPO run (trainer/dpo_losses.py)
    "dpo-gamma-not-simpo": _m("{key}: SimPO's target margin; dpo.loss_type {loss} does not use it; choose simpo or "
                              "set it back to {default}",
                              "{key}：这是 SimPO 的目标间隔；dpo.loss_type {loss} 不使用它；请选择 simpo，或将其改回 "
                              "{default}"),
    "dpo-reference-free-kto": _m("{key}: {loss} takes its divergence terms against the reference model, and "
                                 "paddleformers has no reference-free {loss}; turn it off or use sigmoid, ipo or hinge",
                                 "{key}：{loss} 的散度项要相对参考模型计算，paddleformers 没有无参考模型的 {loss}；"
                                 "请关闭此项，或使用 sigmoid、ipo 或 hinge"),
    "dpo-sft-ratio-orpo": _m("{key}: the orpo loss holds the chosen replies' SFT loss already, at weight 1 "
                             "(dpo.beta weighs its odds-ratio term); set it to 0",
                             "{key}：orpo 损失已包含所选回答的 SFT 损失，权重为 1（dpo.beta 是其优势比项的权重）；"
                             "请设为 0"),
    "import-note-gpu-layout": _m("ERNIEKit takes its GPUs from CUDA_VISIBLE_DEVICES, not from the file; its degrees "
                                 "(tensor {tensor} x pipeline {pipeline} x sharding {sharding}) need {n} processes, "
                                 "so devices.nproc is {nproc} on GPUs {ids}; change them to the GPUs you train on",
                                 "ERNIEKit 从 CUDA_VISIBLE_DEVICES 而不是文件中获取 GPU；其并行度（张量 {tensor} × "
                                 "流水线 {pipeline} × 分片 {sharding}）需要 {n} 个进程，因此 devices.nproc 设为 {nproc}，"
                                 "使用 GPU {ids}；请按训练所用的 GPU 修改"),
    "import-note-gpu-nodes": _m("ERNIEKit takes its GPUs from CUDA_VISIBLE_DEVICES, not from the file; its degrees "
                                "(tensor {tensor} x pipeline {pipeline} x sharding {sharding}) need {n} processes, so "
                                "the run spans devices.nnodes = {nnodes} nodes of {nproc} GPUs ({ids}); set "
                                "devices.master to the first node's host:port",
                                "ERNIEKit 从 CUDA_VISIBLE_DEVICES 而不是文件中获取 GPU；其并行度（张量 {tensor} × "
                                "流水线 {pipeline} × 分片 {sharding}）需要 {n} 个进程，因此运行跨 devices.nnodes = "
                                "{nnodes} 个节点，每个节点 {nproc} 块 GPU（{ids}）；请把 devices.master 设为第一个节点的"
                                "地址（主机:端口）"),
    "import-note-gpu-cpu": _m("{keys}: GPU-scale settings, not imported for this cpu run",
                              "{keys}：GPU 规模训练的设置，此次 cpu 运行不导入"),
    "import-note-sharding-offload": _m("{key} {value}: paddleformers does not offload sharded state in hybrid "
                                       "parallelism; gpu.sharding is {stage} (gpu.offload_optimizer keeps the "
                                       "optimizer state in CPU memory instead)",
                                       "{key} {value}：paddleformers 在混合并行中不卸载分片状态；gpu.sharding 设为 "
                                       "{stage}（可用 gpu.offload_optimizer 把优化器状态放在内存中）"),
    "import-note-sharding-unknown": _m("{key} {value} is not a stage ERNIE Studio knows; gpu.sharding keeps its "
                                       "default (none)",
                                       "{key} {value} 不是 ERNIE Studio 认识的分片阶段；gpu.sharding 保持默认值（不分片）"),
    "import-note-recompute": _m("recompute_granularity {value}: ERNIE Studio recomputes whole decoder layers "
                                "(full) when gpu.recompute is on",
                                "recompute_granularity {value}：开启 gpu.recompute 时，ERNIE Studio 重算整个解码层"
                                "（full）"),
    "import-note-prompt-len": _m("max_prompt_len applies to DPO only; it is not imported for this SFT run",
                                 "max_prompt_len 只用于 DPO；此次 SFT 运行不导入"),
    # -- the ERNIEKit import (trainer/erniekit_import.py)
    "import-dataset-counts": _m("{paths_key} lists {paths} file(s) but {types_key} has {types} and {probs_key} "
                                "{probs}; they must match",
                                "{paths_key} 列出 {paths} 个文件，但 {types_key} 有 {types} 个、{probs_key} 有 "
                                "{probs} 个；数量必须一致"),
    "import-stage": _m("{key}: {stage} cannot be imported; ERNIE Studio runs SFT and DPO",
                       "{key}：无法导入 {stage}；ERNIE Studio 只运行 SFT 和 DPO"),
    "import-fine-tuning": _m("{key}: expected LoRA or Full, got {value}", "{key}：应为 LoRA 或 Full，实际为 {value}"),
    "import-note-defaults": _m("not in the file, so ERNIEKit's defaults were used: {values}",
                               "文件中未给出，因此使用了 ERNIEKit 的默认值：{values}"),
    "import-note-batch-both": _m("both batch_size and per_device_train_batch_size are set; batch_size (ERNIEKit's "
                                 "per-GPU batch size) was used", "同时设置了 batch_size 和 per_device_train_batch_size；"
                                                                 "使用了 batch_size（ERNIEKit 中每个 GPU 的批大小）"),
    "import-note-save-limit": _m("save_total_limit not set: ERNIEKit keeps every checkpoint, ERNIE Studio keeps "
                                 "logging.save_total_limit ({n}) of them",
                                 "未设置 save_total_limit：ERNIEKit 保留所有检查点，ERNIE Studio 只保留 "
                                 "logging.save_total_limit（{n}）个"),
    "import-note-model": _m("model.name_or_path is {name}: nothing is downloaded here, so it must be a local "
                            "checkpoint directory (or a built-in model name) before the run starts",
                            "model.name_or_path 为 {name}：这里不会下载任何文件，因此在运行开始前它必须是本地检查点目录"
                            "（或内置模型名称）"),
    "import-note-lora-alpha": _m("lora_alpha not set: ERNIEKit then uses {rule}, so finetuning.lora.alpha is {alpha}",
                                 "未设置 lora_alpha：ERNIEKit 此时使用 {rule}，因此 finetuning.lora.alpha 为 {alpha}"),
    "import-rule-rslora": _m("4 with rslora", "4（使用 rslora 时）"),
    "import-rule-rank": _m("2 x lora_rank", "2 × lora_rank"),
    "import-note-template": _m("template {template} has no equivalent; model.template is auto",
                               "模板 {template} 在此没有对应项；model.template 设为 auto"),
    "import-note-constant": _m("lr_scheduler_type constant_with_warmup became constant (warmup_steps still apply)",
                               "lr_scheduler_type constant_with_warmup 已改为 constant（warmup_steps 仍然生效）"),
    "import-note-scheduler": _m("lr_scheduler_type {value} is not supported here; optim.lr_scheduler is cosine",
                                "此处不支持 lr_scheduler_type {value}；optim.lr_scheduler 设为 cosine"),
    "import-note-loss": _m("loss_type {value} is not offered here (ERNIE Studio offers sigmoid, ipo, kto_pair, "
                           "simpo, orpo and hinge); dpo.loss_type is sigmoid",
                           "此处不提供 loss_type {value}（ERNIE Studio 提供 sigmoid、ipo、kto_pair、simpo、orpo 和 "
                           "hinge）；dpo.loss_type 设为 sigmoid"),
    "import-note-orpo": _m("loss_type {value}: ERNIEKit's loss is pref_loss_ratio × the odds-ratio loss + sft_loss_ratio × "
                           "the SFT loss, and orpo here is the SFT loss + dpo.beta × the odds-ratio loss, so dpo.beta "
                           "is {pref} / {sft} = {beta} (the same objective divided by sft_loss_ratio)",
                           "loss_type {value}：ERNIEKit 的损失为 pref_loss_ratio × 优势比损失 + sft_loss_ratio × SFT 损失，"
                           "而此处的 orpo 为 SFT 损失 + dpo.beta × 优势比损失，因此 dpo.beta 为 {pref} / {sft} = "
                           "{beta}（即同一目标除以 sft_loss_ratio）"),
    "import-note-orpo-alone": _m("loss_type {value} without sft_loss_ratio trains the odds-ratio loss alone; orpo here "
                                 "adds the chosen replies' SFT loss at weight 1, with dpo.beta = pref_loss_ratio = "
                                 "{beta}", "不带 sft_loss_ratio 的 loss_type {value} 只训练优势比损失；此处的 orpo 还加入"
                                           "所选回答的 SFT 损失（权重为 1），dpo.beta = pref_loss_ratio = {beta}"),
    "import-note-pref-ratio": _m("pref_loss_ratio {pref}: the preference loss has weight 1 here, so "
                                 "dpo.sft_loss_ratio is sft_loss_ratio / pref_loss_ratio = {ratio} (the same "
                                 "objective divided by pref_loss_ratio)",
                                 "pref_loss_ratio {pref}：此处偏好损失的权重为 1，因此 dpo.sft_loss_ratio 为 "
                                 "sft_loss_ratio / pref_loss_ratio = {ratio}（即同一目标除以 pref_loss_ratio）"),
    "import-note-dataset-type": _m("{key} {value} for {path} is not an ERNIEKit format we know; its format is "
                                   "detected from the file (format: auto)",
                                   "{path} 的 {key} {value} 不是已知的 ERNIEKit 格式；将从文件自动识别格式（格式：auto）"),
    "import-note-relative": _m("data paths are relative, as in ERNIEKit's examples: they resolve against the "
                               "directory the run starts in; make them absolute or add the files as datasets in the "
                               "studio", "数据路径是相对路径（与 ERNIEKit 的示例相同）：将相对于运行开始时所在的目录解析；"
                                         "请改为绝对路径，或在工作室中把这些文件添加为数据集"),
    "import-note-eval-off": _m("evaluation is off in the file (do_eval / evaluation_strategy); the eval files are "
                               "kept in data.eval and logging.eval_steps is 0",
                               "文件中关闭了评估（do_eval / evaluation_strategy）；评估文件保留在 data.eval 中，"
                               "logging.eval_steps 为 0"),
    "import-note-eval-strategy": _m("evaluation_strategy {value} is not supported here (evaluation runs every "
                                    "logging.eval_steps steps); logging.eval_steps is 0",
                                    "此处不支持 evaluation_strategy {value}（评估每隔 logging.eval_steps 步运行一次）；"
                                    "logging.eval_steps 为 0"),
    "import-note-eval-no-data": _m("evaluation is on but no eval_dataset_path is given; logging.eval_steps is 0",
                                   "开启了评估，但未给出 eval_dataset_path；logging.eval_steps 为 0"),
    "import-note-compute": _m("compute_type {value} (quantised training) is not supported here; precision is bf16 "
                              "on GPU", "此处不支持 compute_type {value}（量化训练）；精度设为 bf16（GPU 上）"),
    "import-note-device": _m("device {value} is not supported here; devices.device is gpu",
                             "此处不支持设备 {value}；devices.device 设为 gpu"),
    "import-note-gpu": _m("ERNIEKit takes its GPUs from CUDA_VISIBLE_DEVICES, not from the file: devices.gpu_ids is "
                          "0 with one process; set devices.gpu_ids and devices.nproc to the GPUs you train on (or "
                          "devices.device=cpu precision=fp32 for a CPU run)",
                          "ERNIEKit 从 CUDA_VISIBLE_DEVICES 而不是文件中获取 GPU：devices.gpu_ids 设为 0，使用一个"
                          "进程；请按训练所用的 GPU 设置 devices.gpu_ids 和 devices.nproc（CPU 运行请设 "
                          "devices.device=cpu precision=fp32）"),
    "import-note-precision-cpu": _m("{precision} needs a GPU; precision is fp32 for this cpu run",
                                    "{precision} 需要 GPU；此次 cpu 运行的精度设为 fp32"),
}

CATALOGUE.update({key: _m(en, zh) for key, (en, zh) in {**DATA_MESSAGES, **EXPORT_MESSAGES}.items()})
_JSON_ERRORS = {CATALOGUE[key]["en"]: key for key in CATALOGUE if key.startswith("json-")}


class Message(str):
    """A message of the catalogue: its value is the English text; `.key` and `.fields` name it."""

    key: str
    fields: dict[str, Any]

    def __new__(cls, key: str, /, **fields: Any) -> Message:
        self = super().__new__(cls, _render(key, fields, "en"))
        self.key = key
        self.fields = fields
        return self

    def __reduce__(self):
        return _rebuild, (self.key, self.fields)

    def text(self, lang: str) -> str:
        """The message in `lang` ("en" or "zh"; English for any other)."""
        return _render(self.key, self.fields, lang)

    def to_json(self) -> dict:
        """{"key": ..., "fields": ...}: nested messages as the same kind of mapping, lists as lists."""
        return {"key": self.key, "fields": {name: _encode(value) for name, value in self.fields.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Message:
        """The message `to_json` wrote; KeyError when its id is not in this catalogue."""
        return cls(data["key"], **{name: _decode(value) for name, value in (data.get("fields") or {}).items()})


def _rebuild(key: str, fields: dict) -> Message:
    return Message(key, **fields)


def _render(key: str, fields: dict, lang: str) -> str:
    entry = CATALOGUE[key]
    return entry.get(lang, entry["en"]).format(**{name: _value(v, lang) for name, v in fields.items()})


def _value(value: Any, lang: str) -> Any:
    if isinstance(value, Message):
        return value.text(lang)
    if isinstance(value, (list, tuple)):
        return "\n".join(str(_value(item, lang)) for item in value)
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return Message.from_json(value)
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def json_error(text: str) -> str:
    """What Python's json module said (its message without the position), as a Message where the
    catalogue knows it."""
    key = _JSON_ERRORS.get(text)
    return Message(key) if key else text


def plural(count: int, one: str, many: str, /, **fields: Any) -> Message:
    """Message `one` when `count` is 1, else `many` (English needs the difference, Chinese does not)."""
    return Message(one if count == 1 else many, **fields)
