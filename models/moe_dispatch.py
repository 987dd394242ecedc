"""Portable (pure-Paddle) forward for ERNIE 4.5 MoE blocks, and the expert-usage bookkeeping that
aux-loss-free balancing and the job's expert-load record share.

paddleformers' MoE blocks (`Ernie4_5_MoeSparseMoeBlock` of the text models, the VL model's
`MOEAllGatherLayerV2`) dispatch through fused GPU kernels, so they cannot run on CPU.
`use_portable_moe(model)` switches every such block to a portable subclass that keeps the very
same sub-layers (`gate`, `experts.N`, `shared_experts`, `moe_statics`), hence the checkpoint's
parameter names, and routes tokens with ordinary Paddle ops as paddleformers' fused path does:

- gate logits in fp32, softmax scores per expert group;
- `moe_statics.e_score_correction_bias` chooses the top-k experts but does not weight them;
- modality isolation: when the config lays experts out in groups (`moe_num_experts: [text,
  vision]`, the VL models), a token of type 0 routes only among the text experts, with the text
  gate (`gate.weight`) and bias row 0, and a token of type 1 only among the vision experts, with
  `gate.weight_1` and bias row 1;
- capacity (`moe_capacity`: training, evaluation, evaluation with fewer tokens than experts) as
  the fused kernel applies it: each expert takes at most `int(factor * tokens // experts)`
  tokens, later tokens are dropped first, and the surviving weights are renormalised;
- tokens are sorted by expert once and each expert runs on one contiguous slice;
- shared experts see every token;
- the router loss (load balancing, z-loss and orthogonal terms, per expert group and with the
  config's coefficients) carries a gradient into the gate while the gate trains.

In training each block adds the tokens every expert was chosen for to `moe_statics.expert_usage`
(as the fused path does), or to a counter of its own when the checkpoint has no correction bias.
`balance_step` reads and resets those counts once per optimizer step, across ranks, and moves the
correction biases towards balance (aux-loss-free balancing) when asked to.

Nothing is patched at import time: the loader calls `use_portable_moe` explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddleformers.transformers.ernie4_5_moe.modeling import Ernie4_5_MoeSparseMoeBlock


@dataclass
class Routing:
    """The router's decision for N tokens: per expert group its logits and softmax scores and the
    mask of the tokens it routes (None when it routes them all); then each token's k chosen
    experts (global ids) and their normalised weights."""

    logits: list[paddle.Tensor]
    scores: list[paddle.Tensor]
    masks: list[paddle.Tensor | None]
    expert_ids: paddle.Tensor
    weights: paddle.Tensor


def expert_groups(block) -> list[tuple[int, int]]:
    """(first expert id, number of experts) of each expert group: one for text models, text then
    vision for the VL models."""
    sizes = block.config.moe_num_experts
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    groups, offset = [], 0
    for size in sizes:
        groups.append((offset, int(size)))
        offset += int(size)
    return groups


def gate_weights(block) -> list[paddle.Tensor]:
    """The gate matrix [hidden, experts] of each expert group (`weight`, `weight_1`, ...)."""
    return [block.gate.weight] + [getattr(block.gate, f"weight_{i}") for i in range(1, len(expert_groups(block)))]


def _correction_bias(block) -> paddle.Tensor | None:
    statics = getattr(block, "moe_statics", None)
    return statics.e_score_correction_bias.detach() if statics is not None else None


def _group_of_tokens(block, token_type_ids, num_tokens: int) -> paddle.Tensor | None:
    groups = len(expert_groups(block))
    if token_type_ids is None or groups == 1:
        return None
    types = token_type_ids.reshape([-1]).astype("int64")
    if types.shape[0] != num_tokens:
        raise ValueError(f"token_type_ids has {types.shape[0]} entries for {num_tokens} tokens")
    bad = paddle.logical_or(types < 0, types >= groups)
    if bool(bad.any()):
        found = sorted(set(types[bad].tolist()))
        raise ValueError(f"token_type_ids {found} name no expert group: this model has {groups} groups "
                         f"(0 = text, 1 = vision); dense-expert token types are not supported")
    return types


def route(block, x: paddle.Tensor, token_type_ids: paddle.Tensor | None = None) -> Routing:
    """Route tokens `x` [N, H]; `token_type_ids` [N] (or any shape with N entries) picks each
    token's expert group on a model with several."""
    token_group = _group_of_tokens(block, token_type_ids, x.shape[0])
    bias = _correction_bias(block)
    logits, scores, masks, ids, weights = [], [], [], None, None
    with paddle.amp.auto_cast(False):
        x32 = x.astype("float32")
        for g, ((offset, _), weight) in enumerate(zip(expert_groups(block), gate_weights(block))):
            if token_group is None and g > 0:
                break  # without token types every token is text
            group_logits = F.linear(x32, weight.astype("float32"))
            group_scores = F.softmax(group_logits, axis=-1)
            choice = group_scores if bias is None else group_scores + bias[g]
            _, group_ids = paddle.topk(choice, k=block.k, axis=-1)
            group_weights = paddle.take_along_axis(group_scores, group_ids, axis=-1)
            group_ids = group_ids + offset
            mask = None if token_group is None else (token_group == g).astype("float32")
            logits.append(group_logits)
            scores.append(group_scores)
            masks.append(mask)
            if mask is None:
                ids, weights = group_ids, group_weights
            else:
                chosen = mask.astype("bool").unsqueeze(-1)
                ids = group_ids if ids is None else paddle.where(chosen, group_ids, ids)
                weights = group_weights if weights is None else paddle.where(chosen, group_weights, weights)
        weights = weights / paddle.clip(weights.sum(axis=-1, keepdim=True), min=getattr(block.config, "moe_norm_min", 1e-12))
    return Routing(logits, scores, masks, ids, weights)


def capacity(block, num_tokens: int) -> int:
    """Most tokens one expert takes, by the config's `moe_capacity` [training, evaluation,
    evaluation with fewer tokens than experts], as paddleformers' gate computes it."""
    factors = block.config.moe_capacity
    if not (isinstance(factors, (list, tuple)) and len(factors) == 3
            and all(isinstance(f, (int, float)) and f > 0 for f in factors)):
        raise ValueError(f"moe_capacity in the model's config.json must be three positive numbers "
                         f"[training, evaluation, evaluation with fewer tokens than experts], got {factors!r}")
    experts = sum(size for _, size in expert_groups(block))
    if block.training:
        factor = factors[0]
    else:
        factor = factors[2] if num_tokens < experts else factors[1]
    limit = int(factor * num_tokens // experts)
    if limit < 1:
        raise ValueError(f"moe_capacity {list(factors)} lets an expert take no token of a batch of "
                         f"{num_tokens} tokens over {experts} experts (capacity = factor x tokens // "
                         f"experts = {limit}); raise the factors in the model's config.json")
    return limit


def _drop_over_capacity(routing: Routing, order, counts: list[int], limit: int):
    """Keep each expert's first `limit` tokens (in token order), renormalise the surviving weights;
    returns the kept part of `order` and the kept count per expert."""
    flat_ids = routing.expert_ids.reshape([-1])
    counts_tensor = paddle.to_tensor(counts, dtype="int64")
    starts = paddle.cumsum(counts_tensor) - counts_tensor
    sorted_ids = paddle.gather(flat_ids, order)
    position = paddle.arange(order.shape[0], dtype="int64") - paddle.gather(starts, sorted_ids)
    keep_sorted = position < limit
    keep = paddle.zeros(order.shape, dtype="float32").scatter(order, keep_sorted.astype("float32"))
    weights = routing.weights * keep.reshape(routing.weights.shape).astype(routing.weights.dtype)
    routing.weights = weights / paddle.clip(weights.sum(axis=-1, keepdim=True), min=1e-12)
    return paddle.masked_select(order, keep_sorted), [min(count, limit) for count in counts]


def orthogonal_loss(gate_weight: paddle.Tensor) -> paddle.Tensor:
    """Mean squared distance of the row-normalised expert gate vectors from an orthonormal set."""
    rows = gate_weight.astype("float32").transpose([1, 0])
    rows = rows / paddle.clip(rows.norm(axis=1, keepdim=True), min=1e-12)
    gram = paddle.matmul(rows, rows, transpose_y=True)
    eye = paddle.eye(gram.shape[0], dtype=gram.dtype)
    return (gram - eye).square().mean()


def _coefficient(value, group: int) -> float:
    if isinstance(value, (list, tuple)):
        return float(value[group])
    return float(value or 0.0)


def router_loss(block, routing: Routing, counts: paddle.Tensor) -> paddle.Tensor:
    """Load-balancing + z + orthogonal losses of each expert group, weighted by the model config's
    coefficients; zero unless the block trains with a trainable gate (as in paddleformers)."""
    loss = paddle.zeros([1], dtype="float32")
    if not block.training or block.gate.weight.stop_gradient:
        # zero, yet tied to the graph: the decoder layer's gradient hook expects a loss that has one
        return loss + 0.0 * routing.logits[0][:1, :1].sum()
    config = block.config
    corrected = _correction_bias(block) is not None
    for g, (offset, size) in enumerate(expert_groups(block)):
        logits, scores, mask = routing.logits[g], routing.scores[g], routing.masks[g]
        tokens = paddle.clip(mask.sum(), min=1e-6) if mask is not None else float(scores.shape[0])
        weight_rows = mask.unsqueeze(-1) if mask is not None else None
        aux = _coefficient(config.router_aux_loss_coef, g)
        if aux:
            if corrected or mask is not None:
                # paddleformers balances what the router prefers (top-k of the unbiased scores) over
                # the tokens of this group only
                _, ids = paddle.topk(scores, k=block.k, axis=-1)
                token_weights = None if mask is None else mask.unsqueeze(-1).expand(ids.shape).reshape([-1])
                group_counts = paddle.bincount(ids.reshape([-1]), weights=token_weights, minlength=size)
            else:
                group_counts = counts[offset : offset + size]
            share = group_counts.astype("float32").detach() / tokens
            mean_score = (scores if weight_rows is None else scores * weight_rows).sum(axis=0) / tokens
            loss = loss + aux * (mean_score * share).sum() * size
        z = _coefficient(config.router_z_loss_coef, g)
        if z:
            squared = paddle.logsumexp(logits, axis=-1).square()
            loss = loss + z * ((squared if mask is None else squared * mask).sum() / tokens)
        orthogonal = _coefficient(config.moe_orthogonal_loss_lambda, g)
        if orthogonal:
            loss = loss + orthogonal * orthogonal_loss(gate_weights(block)[g])
    return loss


def check_portable(config) -> None:
    """Refuse, with the reason, MoE settings the portable dispatch does not reproduce."""
    unsupported = [
        ("moe_group_experts", getattr(config, "moe_group_experts", False), "grouped top-1 routing"),
        ("moe_use_token_type_bias", getattr(config, "moe_use_token_type_bias", False), "token-type gate biases"),
    ]
    for key, value, what in unsupported:
        if value:
            raise ValueError(f"{key}: true in the model's config.json asks for {what}, which the portable "
                             f"(CPU) MoE dispatch does not implement; use a GPU with paddleformers' fused kernels")
    scoring = getattr(config, "scoring_func", "softmax")
    if scoring != "softmax":
        raise ValueError(f"scoring_func: {scoring!r} in the model's config.json; the portable MoE dispatch "
                         f"implements ERNIE 4.5's softmax gate only")


class PortableMoeMixin:
    """The portable forward, shared by the text and the VL MoE block classes."""

    def forward(self, hidden_states, token_type_ids=None, use_dense_expert=False):
        shape = hidden_states.shape
        x = hidden_states.reshape([-1, shape[-1]])
        routing = route(self, x, token_type_ids)

        flat_ids = routing.expert_ids.reshape([-1])
        num_experts = len(self.experts)
        order = paddle.argsort(flat_ids, stable=True)
        counts = paddle.bincount(flat_ids, minlength=num_experts)
        counts_list = counts.tolist()
        if self.training and paddle.is_grad_enabled():
            _record_usage(self, counts)
        limit = capacity(self, x.shape[0])
        kept_counts = counts_list
        if max(counts_list) > limit:
            order, kept_counts = _drop_over_capacity(routing, order, counts_list, limit)

        token_index = order // self.k
        tokens_sorted = paddle.gather(x, token_index)
        weights_sorted = paddle.gather(routing.weights.reshape([-1]), order).astype(x.dtype).unsqueeze(-1)
        outputs, start = [], 0
        for expert, count in zip(self.experts, kept_counts):
            # An expert no token chose still runs, on no rows: its gradient is zero rather than
            # missing, as with the fused kernels, so the optimizer keeps a state for every expert
            # (a checkpoint taken before an expert's first token resumes) and data-parallel ranks
            # reduce the same gradients.
            outputs.append(expert(tokens_sorted[start : start + count]))
            start += count
        combined = paddle.zeros_like(x)
        if outputs:
            combined = combined.index_add(token_index, 0, paddle.concat(outputs, axis=0) * weights_sorted)
        if self.shared_experts is not None:
            combined = combined + self.shared_experts(x)

        loss = router_loss(self, routing, counts)
        return combined.reshape(shape), routing.weights, loss, paddle.concat(routing.logits, axis=-1)


class PortableVLMoeMixin(PortableMoeMixin):
    """The VL decoder hands its MoE block the token types of the labels too (one more per row than
    there are tokens, as paddleformers' VL block expects); the last column is dropped here."""

    def forward(self, hidden_states, token_type_ids=None, use_dense_expert=False):
        if token_type_ids is not None:
            token_type_ids = token_type_ids[:, :-1]
        return super().forward(hidden_states, token_type_ids, use_dense_expert)


class PortableMoeBlock(PortableMoeMixin, Ernie4_5_MoeSparseMoeBlock):
    """An ERNIE 4.5 text-model MoE block whose forward uses only portable Paddle ops."""


_PORTABLE_CLASSES: dict[type, type] = {Ernie4_5_MoeSparseMoeBlock: PortableMoeBlock}


def _portable_class(cls: type) -> type | None:
    if cls in _PORTABLE_CLASSES:
        return _PORTABLE_CLASSES[cls]
    if cls.__name__ == "MOEAllGatherLayerV2" and "ernie4_5_moe_vl" in cls.__module__:
        _PORTABLE_CLASSES[cls] = type("PortableVLMoeBlock", (PortableVLMoeMixin, cls), {
            "__doc__": "The ERNIE 4.5 VL MoE block (text and vision experts) on portable Paddle ops."})
        return _PORTABLE_CLASSES[cls]
    return None


def use_portable_moe(model) -> int:
    """Switch every ERNIE 4.5 MoE block in `model` to the portable dispatch; returns how many.
    Raises ValueError for MoE settings the portable dispatch does not reproduce."""
    switched = 0
    for layer in model.sublayers(include_self=True):
        portable = _portable_class(type(layer))
        if portable is not None:
            check_portable(layer.config)
            layer.__class__ = portable
            switched += 1
    return switched


def is_moe_block(layer) -> bool:
    return isinstance(layer, (PortableMoeMixin, Ernie4_5_MoeSparseMoeBlock)) or _portable_class(type(layer)) is not None


def moe_blocks(model) -> list[tuple[int, object]]:
    """(decoder layer index, block) of every MoE block, portable or fused."""
    blocks = []
    for name, layer in model.named_sublayers(include_self=True):
        if is_moe_block(layer):
            index = int(name.split("layers.")[1].split(".")[0]) if "layers." in name else len(blocks)
            blocks.append((index, layer))
    return blocks


def _record_usage(block, counts: paddle.Tensor) -> None:
    statics = getattr(block, "moe_statics", None)
    counts = counts.detach().astype("int64")
    if statics is not None:
        statics.expert_usage += counts.reshape(statics.expert_usage.shape)
        return
    usage = block.__dict__.get("_usage")
    block.__dict__["_usage"] = counts if usage is None else usage + counts


def _take_usage(block) -> paddle.Tensor:
    statics = getattr(block, "moe_statics", None)
    if statics is not None:
        usage = statics.expert_usage.reshape([-1]).clone()
        statics.expert_usage.zero_()
        return usage
    usage = block.__dict__.pop("_usage", None)
    return usage if usage is not None else paddle.zeros([len(block.experts)], dtype="int64")


@dataclass
class ExpertLoad:
    """Tokens each expert of one MoE layer was chosen for; `groups` are the sizes of its expert
    groups (one for text models, text then vision for VL)."""

    layer: int
    tokens: list[int]
    groups: list[int]

    def imbalance(self) -> float:
        """Max over mean of the experts' token counts, the worst of the expert groups."""
        worst, start = 0.0, 0
        for size in self.groups:
            part = self.tokens[start : start + size]
            start += size
            if sum(part):
                worst = max(worst, max(part) * size / sum(part))
        return round(worst, 3)


def balance_step(blocks: list[tuple[int, object]], bias_update_rate: float = 0.0,
                 all_reduce: bool = False) -> list[ExpertLoad]:
    """For `blocks` (from `moe_blocks`), read and reset the expert usage counted since the last
    call (summed over ranks with `all_reduce`); with a rate above zero, move every correction bias
    by the rate towards balance: up for experts chosen less than their group's mean, down for those
    chosen more (aux-loss-free balancing). Call once per optimizer step on every rank."""
    if not blocks:
        return []
    usage = [_take_usage(block) for _, block in blocks]
    if all_reduce:
        import paddle.distributed as dist

        stacked = paddle.concat(usage)
        dist.all_reduce(stacked)
        usage = paddle.split(stacked, [u.shape[0] for u in usage])
    loads = []
    for (index, block), counts in zip(blocks, usage):
        groups = [size for _, size in expert_groups(block)]
        loads.append(ExpertLoad(index, [int(c) for c in counts.tolist()], groups))
        statics = getattr(block, "moe_statics", None)
        if bias_update_rate and statics is not None:
            rows = counts.astype("float32").reshape(statics.e_score_correction_bias.shape)
            step = paddle.sign(rows.mean(axis=-1, keepdim=True) - rows) * bias_update_rate
            with paddle.no_grad():
                statics.e_score_correction_bias.set_value(statics.e_score_correction_bias + step)
    return loads
