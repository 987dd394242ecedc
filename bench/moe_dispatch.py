"""Training step time of the tiny ERNIE 4.5 MoE model on the portable dispatch, against a dense
model with the same activated parameters and against a naive per-token MoE loop, in one process.

    moe:   the embedded ernie-4.5-tiny-moe (layer 0 dense FFN 344 wide; layers 1-3 MoE: 8 experts of
           64, top-2, plus a 64-wide shared expert), on `models.moe_dispatch.PortableMoeBlock`:
           one sort, contiguous slices per expert.
    dense: the same model with each MoE block replaced by one dense FFN 192 wide (2 x 64 + 64), so
           a token passes through the same FFN parameters; attention, embeddings and vocabulary
           are identical. (The separate ernie-4.5-tiny-dense model is not the baseline: on CPU
           its step measured about twice the MoE model's, more than its wider FFNs explain, which
           would flatter the MoE side.)
    naive: the MoE model with each token routed on its own (same routing and weights), the loop a
           straightforward port would write.
A step is forward, backward and an AdamW update on a batch of --batch x --seq tokens; the median
of --steps steps after two warm-up steps counts (the naive side runs fewer steps: it is slow).

Run: .venv/bin/python bench/moe_dispatch.py [--batch 8] [--seq 128] [--steps 20]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 1.5


def naive_block_class():
    import paddle

    from models.moe_dispatch import PortableMoeBlock, route, router_loss

    class NaiveMoeBlock(PortableMoeBlock):
        """Same routing as the portable block, but every token visits its experts one at a time."""

        def forward(self, hidden_states, token_type_ids=None, use_dense_expert=False):
            shape = hidden_states.shape
            x = hidden_states.reshape([-1, shape[-1]])
            routing = route(self, x)
            weights = routing.weights
            ids, rows = routing.expert_ids.tolist(), []
            for token in range(x.shape[0]):
                row = x[token : token + 1]
                out = self.shared_experts(row)
                for slot, expert in enumerate(ids[token]):
                    out = out + self.experts[expert](row) * weights[token, slot].astype(x.dtype)
                rows.append(out)
            counts = paddle.bincount(routing.expert_ids.reshape([-1]), minlength=len(self.experts))
            return (paddle.concat(rows).reshape(shape), weights, router_loss(self, routing, counts),
                    paddle.concat(routing.logits, axis=-1))

    return NaiveMoeBlock


def dense_twin(moe_dir: Path):
    """The MoE model with each MoE block replaced by one dense FFN as wide as the experts a token
    visits (top-k experts plus the shared one): same model class, attention and vocabulary."""
    from paddleformers.nn.mlp import MLP

    from models.loader import load_model
    from models.moe_dispatch import PortableMoeBlock

    model = load_model(moe_dir)
    config = model.config
    width = (config.moe_k + config.moe_num_shared_experts) * config.moe_intermediate_size
    for layer in model.model.layers:
        if isinstance(layer.mlp, PortableMoeBlock):
            layer.mlp = MLP(config, hidden_size=config.hidden_size, intermediate_size=width, fuse_up_gate=True)
    return model


def step_times(model, batch: int, seq: int, steps: int) -> list[float]:
    import paddle

    paddle.seed(0)
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())
    ids = paddle.randint(5, 1500, [batch, seq + 1])
    inputs, labels = ids[:, :-1], ids[:, 1:]
    model.train()
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        loss = model(inputs, labels=labels, return_dict=True).loss
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        float(loss)
        if step >= 2:
            times.append(time.perf_counter() - started)
    return times


def activated_ffn(model) -> int:
    """FFN parameters one token passes through: dense MLPs, or per MoE layer top-k experts plus
    the shared expert."""
    from models.moe_dispatch import PortableMoeBlock

    total = 0
    for name, layer in model.named_sublayers():
        if isinstance(layer, PortableMoeBlock):
            one = sum(p.numel().item() for p in layer.experts[0].parameters())
            total += layer.k * one + sum(p.numel().item() for p in layer.shared_experts.parameters())
        elif name.endswith(".mlp") and not isinstance(layer, PortableMoeBlock):
            total += sum(p.numel().item() for p in layer.parameters())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--naive-steps", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("ERNIE_STUDIO_HOME", tempfile.mkdtemp(prefix="bench-moe-"))
    import paddle

    from models.loader import load_model
    from models.registry import resolve_model_dir

    paddle.set_device("cpu")
    moe_dir = resolve_model_dir("ernie-4.5-tiny-moe")
    moe = load_model(moe_dir)
    dense = dense_twin(moe_dir)
    figures = {"activated_ffn_params": {"moe": activated_ffn(moe), "dense": activated_ffn(dense)}}

    moe_times = step_times(moe, args.batch, args.seq, args.steps)
    dense_times = step_times(dense, args.batch, args.seq, args.steps)
    naive = load_model(moe_dir)
    naive_class = naive_block_class()
    from models.moe_dispatch import PortableMoeBlock

    for layer in naive.sublayers():
        if type(layer) is PortableMoeBlock:
            layer.__class__ = naive_class
    naive_times = step_times(naive, args.batch, args.seq, args.naive_steps)

    moe_s, dense_s, naive_s = (statistics.median(t) for t in (moe_times, dense_times, naive_times))
    ratio, speedup = moe_s / dense_s, naive_s / moe_s
    print(f"tokens per step: {args.batch * args.seq}")
    print(f"{'model':8s} {'step s':>8s}  activated FFN parameters")
    print(f"{'moe':8s} {moe_s:8.4f}  {figures['activated_ffn_params']['moe']:,}")
    print(f"{'dense':8s} {dense_s:8.4f}  {figures['activated_ffn_params']['dense']:,}")
    print(f"{'naive':8s} {naive_s:8.4f}")
    print(f"moe / dense: {ratio:.2f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'ABOVE TARGET'}; "
          f"naive / moe: {speedup:.1f}")
    print(json.dumps({
        "bench": "moe_dispatch", "tokens_per_step": args.batch * args.seq,
        "moe_step_s": round(moe_s, 4), "dense_step_s": round(dense_s, 4), "naive_step_s": round(naive_s, 4),
        "moe_over_dense": round(ratio, 3), "target": TARGET, "naive_over_moe": round(speedup, 2), **figures,
        "steps": args.steps, "naive_steps": args.naive_steps,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "paddle": version("paddlepaddle"),
                    "paddleformers": version("paddleformers"), "loadavg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
