"""ERNIE 4.5's multi-token-prediction (MTP) layer: loaded, frozen, never run, saved back unchanged.

The released MoE checkpoints (21B-A3B, 300B-A47B) hold one MTP layer (`num_nextn_predict_layers:
1`; parameters `model.mtp_block.N.*`, `model.mtp_linear_proj.N`, `model.mtp_emb_norm.N`,
`model.mtp_hidden_norm.N`) that FastDeploy runs as the draft model of speculative decoding. The
studio trains, merges, exports and serves the main model and carries this layer through as it
came; docs/real_models.md ("Multi-token prediction") says why it is not trained.

paddleformers reads `num_nextn_predict_layers` in three places: when it builds the model (the MTP
layers exist only if it is above 0), in the forward and the loss (training runs the MTP layer and
needs `nbatch_pack_offset`; the loss drops the last label even in evaluation), and when it saves
(which MTP weights it transposes into the Hugging Face layout, and config.json). So a loaded model
is built with the checkpoint's number, then runs with 0 in its config, and gets the number back
for the duration of each save.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MTP_LAYERS_KEY = "num_nextn_predict_layers"
_MTP_PART = r"(?:.*\.)?mtp_(?:block|linear_proj|emb_norm|hidden_norm)\."
# Names (sub-layers and parameters) that belong to the MTP layer.
MTP_MODULES = _MTP_PART + r"\d+(?:\..*)?"
# Set on the causal LM by `carry_mtp`: how many MTP layers its checkpoint has.
_CARRIED = "carried_mtp_layers"


def is_mtp(name: str) -> bool:
    return re.fullmatch(MTP_MODULES, name) is not None


def stored_weight_names(model_dir: Path) -> list[str] | None:
    """Names of the tensors in a checkpoint's safetensors files (from the index, or from each file's
    header); None when it has none."""
    index = Path(model_dir) / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    names = []
    for path in files:
        with open(path, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        names += [name for name in header if name != "__metadata__"]
    return names


def stored_mtp_layers(model_dir: Path) -> int | None:
    """How many MTP layers a checkpoint's weights hold; None when its weights cannot be listed."""
    names = stored_weight_names(model_dir)
    if names is None:
        return None
    pattern = re.compile(_MTP_PART + r"(\d+)\.")
    return len({match.group(1) for name in names if (match := pattern.match(name))})


def carry_mtp(model) -> int:
    """Freeze the MTP parameters of a just-loaded causal LM and let it run as the main model alone;
    returns the number of MTP layers it carries (0 for a model without any)."""
    layers = int(getattr(model.config, MTP_LAYERS_KEY, 0) or 0)
    if layers <= 0:
        return 0
    for name, parameter in model.named_parameters():
        if is_mtp(name):
            parameter.stop_gradient = True
    setattr(model, _CARRIED, layers)
    setattr(model.config, MTP_LAYERS_KEY, 0)
    # the loss picked its MTP variant when the model was built (and that variant fails without MTP
    # outputs); built again it is the plain one
    if hasattr(model, "criterion"):
        model.criterion = type(model.criterion)(model.config)
    return layers


def _carrier(model):
    """The causal LM that `carry_mtp` marked: `model` itself, or the one a LoRAModel wraps."""
    for layer in (model, getattr(model, "model", None)):
        if layer is not None and getattr(layer, _CARRIED, 0):
            return layer
    return None


def carried_layers(model) -> int:
    carrier = _carrier(model)
    return getattr(carrier, _CARRIED) if carrier is not None else 0


@contextmanager
def checkpoint_layout(model) -> Iterator[None]:
    """While saving `model`: its config names its MTP layers again, so paddleformers lays out and
    records their weights as the checkpoint has them."""
    carrier = _carrier(model)
    if carrier is None:
        yield
        return
    setattr(carrier.config, MTP_LAYERS_KEY, getattr(carrier, _CARRIED))
    try:
        yield
    finally:
        setattr(carrier.config, MTP_LAYERS_KEY, 0)
