"""ERNIE 4.5 VL models (`ernie4_5_moe_vl`) on any device: the pieces of paddleformers' VL model
that only run on a GPU, switched to pure-Paddle equivalents that keep every parameter name.

- The vision transformer's attention (`VisionFlashAttention2`) calls `flashmask_attention` in
  bf16; the portable attention computes the same block-diagonal attention (each image attends only
  to its own patches) with ordinary matmuls in the model's dtype, image by image.
- `vision_forward` insists on bf16 pixels (or uint8 with a preprocessing hook); the studio's takes
  normalised pixels in any float dtype and casts them to the vision tower's (`take_float_pixels`,
  applied on every device: the GPU attention casts to bf16 itself).
- The decoder layer asks an async-offload loader (CUDA only) whether a batch holds image tokens;
  here the answer is read synchronously.
- A batch without image tokens goes through each layer's hidden text-only MoE view (`mlp_text`),
  which the portable dispatch does not see; it is pointed at the layer's own MoE block with every
  token typed text, which routes among the text experts with the text gate, as `mlp_text` does.

`use_portable_vl(model)` applies the rest; the loader calls it wherever the fused kernels are
missing, beside `models.moe_dispatch.use_portable_moe`.
"""

from __future__ import annotations

import types

import numpy as np
import paddle
import paddle.nn.functional as F

class _Ready:
    """What the decoder waits on for an offloaded value: already there."""

    def cpu_wait(self) -> None:
        return None


def _synchronous_offload(tensor, loader):
    return tensor.cpu(), _Ready()


def _portable_attention(self, hidden_states, startend_row_indices, rotary_pos_emb=None, attn_sep=False):
    from paddleformers.transformers.ernie4_5_moe_vl.model.dfnrope.modeling import apply_rotary_pos_emb_vision

    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape([n, 3, self.num_heads, -1]).transpose([1, 2, 0, 3]).unbind(0)
    # [heads, n, head_dim]; the rotary helper takes [1, n, heads, head_dim]
    q = apply_rotary_pos_emb_vision(q.transpose([1, 0, 2]).unsqueeze(0), rotary_pos_emb).squeeze(0)
    k = apply_rotary_pos_emb_vision(k.transpose([1, 0, 2]).unsqueeze(0), rotary_pos_emb).squeeze(0)
    q, k = q.transpose([1, 0, 2]).astype(v.dtype), k.transpose([1, 0, 2]).astype(v.dtype)
    # flashmask's non-causal rows: query i sees key j when ute[j] <= i < lts[j], i.e. the same image.
    # An image's rows are contiguous and share their start (ute), so attention runs image by image:
    # one masked n x n product over a batch's patches costs (patches per image / n) times more.
    starts = startend_row_indices[0, 0, :, 1].numpy()
    edges = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), n]
    scale = q.shape[-1] ** -0.5
    outs = [paddle.matmul(F.softmax(paddle.matmul(q[:, a:b], k[:, a:b], transpose_y=True) * scale, axis=-1),
                          v[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
    out = paddle.concat(outs, axis=1) if len(outs) > 1 else outs[0]
    return self.proj(out.transpose([1, 0, 2]).reshape([n, -1]))


def _vision_forward(self, images, image_position_ids, image_attention_mask, grid_thw):
    if grid_thw is not None:
        grid_thw = grid_thw[grid_thw > 0].reshape([-1, 3])
        grid_thw = F.pad(paddle.repeat_interleave(grid_thw[:, 1:], grid_thw[:, 0], 0), [0, 0, 1, 0], value=1)
    dtype = self.vision_model.patch_embed.proj.weight.dtype
    return self.vision_model.extract_feature(images.astype(dtype), grid_thw)


class _TextOnly:
    """A layer's MoE block called on text alone, in the shape `mlp_text()` is called."""

    def __init__(self, block):
        self.block = block

    def __call__(self, hidden_states, token_type_ids=None):
        batch, length = hidden_states.shape[0], hidden_states.shape[1]
        return self.block(hidden_states, paddle.zeros([batch, length + 1], dtype="int64"))


def use_portable_vl(model) -> int:
    """Switch a VL model's GPU-only parts to portable ones; returns how many vision attention
    layers were switched."""
    from paddleformers.transformers.ernie4_5_moe_vl.model import modeling_moe
    from paddleformers.transformers.ernie4_5_moe_vl.model.dfnrope.modeling import VisionFlashAttention2

    modeling_moe.async_offload = _synchronous_offload
    modeling_moe.get_async_loader = lambda: None
    portable = type("PortableVisionAttention", (VisionFlashAttention2,), {"forward": _portable_attention})
    switched = 0
    for layer in model.sublayers(include_self=True):
        if type(layer) is VisionFlashAttention2:
            layer.__class__ = portable
            switched += 1
        if hasattr(layer, "mlp_text") and hasattr(layer, "mlp"):
            layer.mlp_text = types.MethodType(lambda self: _TextOnly(self.mlp), layer)
    return switched


def take_float_pixels(model) -> None:
    """Let a VL model take the normalised float pixels models/vl_inputs.py makes."""
    for layer in model.sublayers(include_self=True):
        if hasattr(layer, "vision_forward") and hasattr(layer, "vision_model"):
            layer.vision_forward = types.MethodType(_vision_forward, layer)
