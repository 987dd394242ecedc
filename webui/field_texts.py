"""Chinese text of the run-config schema's fields, the form's groups and the dataset tables' columns.

The English is the schema's own label and help (trainer/schema.py); webui.i18n builds the
catalogue entries of the form's widgets from both, and a test checks that FIELD_ZH covers exactly
the schema's keys.
"""

from __future__ import annotations

# Chinese label and help of every run-config key (English comes from the schema).
FIELD_ZH: dict[str, tuple[str, str]] = {
    "model.name_or_path": ("模型", "内置模型名称、本地检查点目录，或模型库的仓库名（owner/name，需先下载）。"),
    "model.template": ("对话模板", "对话模板；auto 使用模型自带的模板。"),
    "method": ("训练方法", "监督微调（sft）或偏好优化（dpo）。"),
    "finetuning.type": ("微调方式", "训练低秩适配器（lora）或全部权重（full）。"),
    "finetuning.lora.rank": ("LoRA 秩", "LoRA 的秩 r。"),
    "finetuning.lora.alpha": ("LoRA alpha", "LoRA alpha；更新量按 alpha / r 缩放（rsLoRA 时为 alpha / sqrt(r)）。"),
    "finetuning.lora.dropout": ("LoRA dropout", "LoRA 输入上的 dropout。"),
    "finetuning.lora.target_modules": ("LoRA 目标模块", "加适配器的层：模块名或正则表达式（qkv_proj、o_proj、"
                                                      "up_gate_proj、down_proj 等）；all-linear 表示所有线性层。"
                                                      "可用逗号分隔。"),
    "finetuning.lora.rslora": ("rsLoRA", "秩稳定的 LoRA 缩放（alpha / sqrt(r)）。"),
    "finetuning.base_quant": ("量化基座", "训练时把冻结的基座模型以低比特保存，适配器仍以全精度训练：wint8（int8 权重）、"
                                         "wint4（int4）或 wint4/8（ERNIEKit 的 WINT8MIX：路由专家用 int4，其余线性层用 "
                                         "int8）。词嵌入、输出头、路由和归一化层保持全精度；基座先以全精度加载，再量化。"
                                         "训练出的适配器同样适用于全精度基座。仅用于 LoRA；需要 "
                                         "gpu.tensor_parallel_degree 为 1。"),
    "finetuning.base_quant_group_size": ("量化基座分组大小", "量化基座的缩放因子：-1 表示每个输出通道一个缩放因子；"
                                                           "64 或 128 表示每个通道每这么多输入行一个（更精细，"
                                                           "必须整除每个量化层的输入行数）。"),
    "dpo.beta": ("DPO beta", "DPO 的 beta：策略可以偏离参考模型多远（各损失中间隔的缩放；orpo 中为优势比损失的权重）。"),
    "dpo.loss_type": ("DPO 损失", "偏好损失，其中 m = 所选回答与被拒回答的对数概率之差（策略减参考）：sigmoid 为 "
                                 "-log σ(β·m)（DPO）；hinge 为 max(0, 1 - β·m)；ipo 为按每 token 平均对数概率计算的 "
                                 "(m - 1/(2β))²（IPO）；kto_pair 为成对的 KTO 损失，需要参考模型；simpo 为只用策略模型、"
                                 "按每 token 平均对数概率计算的 -log σ(β·m - γ)（SimPO）；orpo 为所选回答的 SFT 损失 + "
                                 "β × 优势比损失（ORPO）。simpo 和 orpo 不需要参考模型：不会加载或运行参考模型。"),
    "dpo.simpo_gamma": ("SimPO γ", "SimPO 的目标间隔 γ：所选回答与被拒回答的平均对数概率之间的间隔，按 β 缩放。"
                                       "仅用于 simpo。"),
    "dpo.reference_free": ("无参考模型", "无参考模型的 DPO：只对策略模型打分（参考对数概率取 0），因此不加载参考模型，"
                                     "也不运行关闭适配器的前向计算。适用于 sigmoid、ipo 和 hinge；kto_pair 需要参考模型；"
                                     "simpo 和 orpo 从不使用参考模型。"),
    "dpo.sft_loss_ratio": ("SFT 损失权重", "所选回答的 SFT 损失（每 token 的负对数似然）加到偏好损失上的权重；0 表示不加。"
                                         "不用于 orpo，其损失已以权重 1 包含它。"),
    "vl.freeze_vision": ("冻结视觉编码器", "保持视觉编码器（ViT）的权重不变（LoRA 时不在其上加适配器）。仅适用于视觉语言模型。"),
    "vl.freeze_adapter": ("冻结适配器", "保持把图像特征映射到语言模型的适配器（重采样器）不变（LoRA 时不在其上加适配器）。"
                          "仅适用于视觉语言模型。"),
    "vl.freeze_lm": ("冻结语言模型", "保持语言模型（词嵌入、解码层、输出头）不变，只训练视觉部分。仅适用于视觉语言模型。"),
    "vl.vision_lr_ratio": ("视觉学习率倍数", "视觉编码器的学习率为学习率乘以此值（ERNIEKit 的 vit_lr_ratio）。仅适用于视觉语言模型。"),
    "vl.min_pixels": ("最少像素", "图像面积的下限（像素）：更小的图像算作数据问题；每 28x28 的块是一个图像 token。仅适用于视觉语言模型。"),
    "vl.max_pixels": ("最多像素", "图像面积的上限（像素）：更大的图像算作数据问题（聊天时会缩小）；默认 1280 个图像 token。"
                      "仅适用于视觉语言模型。"),
    "moe.aux_loss_coef": ("负载均衡损失", "路由负载均衡损失的权重；-1 保留检查点中的值，0 表示关闭。仅适用于 MoE 模型。"),
    "moe.z_loss_coef": ("路由 z 损失", "路由 z 损失的权重（使门控 logits 保持较小）；-1 保留检查点中的值，0 表示关闭。"
                                     "仅适用于 MoE 模型。"),
    "moe.orthogonal_loss_coef": ("路由正交损失", "路由正交损失的权重（使各专家的门控向量彼此分开）；-1 保留检查点中的值，"
                                             "0 表示关闭。仅适用于 MoE 模型。"),
    "moe.bias_update_rate": ("均衡偏置更新率", "无辅助损失负载均衡：每次优化器更新后，每个专家的路由校正偏置按此幅度调整，"
                                         "被选中少于平均的专家上调，多于平均的下调（ERNIE 4.5 使用 1e-3）；0 表示偏置不变。"
                                         "仅限全参数微调：LoRA 适配器不包含这些偏置。仅适用于 MoE 模型。"),
    "moe.token_balanced_loss": ("令牌平衡损失", "多模态令牌平衡损失：每条序列的损失除以其总长度（提示与回答、文本与图像"
                                            "令牌），而不是带损失的令牌数，使回答较短的序列不会占更大权重。仅适用于 SFT。"),
    "moe.freeze_router": ("冻结路由", "全参数微调时保持路由（门控）权重不变；LoRA 从不训练路由。仅适用于 MoE 模型。"),
    "moe.train_experts": ("训练的专家", "哪些专家 FFN 参与训练：全部、仅共享专家，或都不训练（只训练注意力和稠密层）。"
                                      "使用 LoRA 时决定适配器加在哪里。仅适用于 MoE 模型。"),
    "data.train": ("训练数据", "训练文件，按概率混合（视觉语言模型的图像文件与纯文本文件也这样混合）。"),
    "data.eval": ("评估数据", "评估文件（可选）。"),
    "data.eval_split": ("评估集比例", "未提供评估文件时，从训练数据中留出用于评估的比例。"),
    "data.max_seq_len": ("最大序列长度", "训练序列的最大 token 数（提示与回答合计）。"),
    "data.max_prompt_len": ("最大提示长度", "偏好对中提示的最大 token 数；必须小于最大序列长度。仅用于 DPO：SFT 的行只受"
                                       "最大序列长度限制。"),
    "data.truncation": ("截断方式", "超过最大序列长度的行如何处理。"),
    "data.skip_invalid": ("跳过无效行", "跳过校验失败的行，而不是拒绝整个文件。"),
    "optim.learning_rate": ("学习率", "峰值学习率。"),
    "optim.lr_scheduler": ("学习率调度", "预热之后的学习率调度方式。"),
    "optim.warmup_steps": ("预热步数", "线性预热步数（优先于预热比例）。"),
    "optim.warmup_ratio": ("预热比例", "预热占全部步数的比例。"),
    "optim.weight_decay": ("权重衰减", "AdamW 权重衰减。"),
    "optim.num_train_epochs": ("训练轮数", "遍历训练数据的次数（可为小数）。"),
    "optim.max_steps": ("最大步数", "训练的优化器步数；-1 表示按训练轮数。"),
    "optim.per_device_batch_size": ("每设备批大小", "每个进程每步的序列数。"),
    "optim.gradient_accumulation_steps": ("梯度累积步数", "累积成一次优化器更新的批次数。"),
    "optim.max_grad_norm": ("最大梯度范数", "梯度裁剪范数；0 表示不裁剪。"),
    "optim.seed": ("随机种子", "随机种子。"),
    "precision": ("精度", "训练精度；bf16 和 fp16 需要 GPU。"),
    "logging.logging_steps": ("日志间隔步数", "每 N 步记录一次损失和学习率。"),
    "logging.save_steps": ("保存间隔步数", "每 N 步保存一次检查点。"),
    "logging.eval_steps": ("评估间隔步数", "每 N 步评估一次；0 表示训练中不评估。"),
    "logging.save_total_limit": ("保留检查点数", "保留的检查点数量；更早的会被删除。"),
    "eval.after_training": ("训练后评估", "训练结束时，用基础模型和微调后的模型回答本次运行的评估数据（data.eval，否则为 "
                            "data.eval_split 留出的部分），并给两者打分（精确匹配、ROUGE、BLEU、困惑度），写入 JOB/eval。"),
    "eval.max_new_tokens": ("评估回答长度", "该评估中回答的最大 token 数。"),
    "devices.device": ("设备", "在 CPU 或 GPU 上运行。"),
    "devices.gpu_ids": ("GPU 编号", "逗号分隔的 GPU 编号，如 0,1；使用 GPU 时必填，每个进程一个。"),
    "devices.nproc": ("每节点进程数", "每个节点的进程数（数据并行）；在 CPU 上多个进程共享 CPU。"),
    "devices.nnodes": ("节点数", "机器数量；本机是 0 号节点，工作室会显示其他每个节点要运行的命令。"),
    "devices.master": ("主节点地址", "本机（0 号节点）可被其他节点访问的 host:port；节点数大于 1 时必填。"),
    "gpu.tensor_parallel_degree": ("张量并行度", "张量并行：每层的权重矩阵切分到这么多块 GPU 上，共同处理每个 token（需要高速"
                                              "互联，宜在单个节点内）；1 表示关闭。必须整除注意力头数。仅用于 GPU 运行。"),
    "gpu.pipeline_parallel_degree": ("流水线并行度", "流水线并行：把各层切成这么多个阶段，每个阶段在各自的 GPU 上，微批次依次"
                                                "流过；1 表示关闭。仅用于 GPU 运行。"),
    "gpu.sharding": ("分片阶段", "分片数据并行（ZeRO）：stage1 把优化器状态分到参与分片的 GPU 上，stage2 还分梯度，stage3 "
                                "还分权重；none 表示每块数据并行 GPU 保留完整副本。只有一个进程时不起作用。仅用于 GPU 运行。"),
    "gpu.sharding_parallel_degree": ("分片并行度", "一个分片组包含的 GPU 数；-1 表示张量并行和流水线并行之后剩下的所有进程，"
                                              "更小的数则在各分片组之间使用普通数据并行。仅用于 GPU 运行。"),
    "gpu.expert_parallel_degree": ("专家并行度", "专家并行：每个 MoE 层的路由专家分到这么多块 GPU 上，token 被发送到所选专家"
                                            "所在的 GPU；1 表示每块 GPU 保留全部专家。仅适用于 MoE 模型；paddleformers 要求"
                                            "同时在这些 GPU 上分片（不能使用普通数据并行）。仅用于 GPU 运行。"),
    "gpu.recompute": ("重计算激活", "反向传播时重新计算每个解码层的激活值而不保存它们：长序列时显存大幅减少，计算量约增加三分之一。"
                                  "仅用于 GPU 运行。"),
    "gpu.offload_optimizer": ("优化器卸载到内存", "把优化器状态放在 CPU 内存中，只在参数更新时搬到 GPU：显存更少，步骤更慢。"
                                          "不能与普通数据并行同时使用（请配合分片）。仅用于 GPU 运行。"),
    "output.dir": ("输出目录", "最终模型或适配器的写入位置；留空则写入任务目录。"),
}

# the schema's groups: the accordions of the Train tab's form
GROUPS = {
    "model": ("Model", "模型"),
    "method": ("Method", "训练方法"),
    "moe": ("Mixture of experts", "混合专家"),
    "vl": ("Vision-language", "视觉语言"),
    "data": ("Data", "数据"),
    "optim": ("Optimisation", "优化"),
    "logging": ("Checkpoints and logging", "检查点与日志"),
    "devices": ("Devices", "设备"),
    "output": ("Output", "输出"),
}

# the columns of a dataset table (data.train, data.eval), by DatasetEntry field
ENTRY_ZH = {"path": "文件", "format": "格式", "probability": "概率"}
