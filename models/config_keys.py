"""What the studio does with each key of an ERNIE 4.5 `config.json` (no paddle).

Every key of the released text configs is in `KEY_HANDLING`: read by paddleformers' ERNIE 4.5
classes (or by the studio's MoE dispatch) and so honoured, carried through unchanged for
FastDeploy, or without bearing on the weights. Values that paddleformers would accept and then
silently ignore, so that the model built is not the one the file describes, are refused by
`refusals`, each naming its key. docs/real_models.md has the reasons.
"""

from __future__ import annotations

from models.quant_spec import QuantError, QuantSpec, is_studio_quantized

HONOURED = "honoured"
CARRIED = "carried"
NO_BEARING = "no bearing on the weights"

KEY_HANDLING = {
    **{key: HONOURED for key in (
        "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta",
        "max_position_embeddings", "use_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id",
        "pad_token_id", "use_rmsnorm", "moe_num_experts", "moe_num_shared_experts", "moe_intermediate_size",
        "moe_k", "moe_gate", "moe_capacity", "moe_layer_start_index", "moe_layer_end_index",
        "moe_layer_interval", "moe_use_aux_free", "moe_norm_min", "router_aux_loss_coef", "router_z_loss_coef",
        "moe_orthogonal_loss_lambda",
    )},
    # the MTP layer: loaded, frozen and saved back unchanged (models/mtp.py)
    "num_nextn_predict_layers": CARRIED,
    # FastDeploy's recipe for quantizing the full-precision weights as it loads them, or the
    # studio's own quantized format (models/quant_spec.py), which the loader reads
    "quantization_config": CARRIED,
    # the file's storage precision: weights are loaded in the run's precision
    "dtype": NO_BEARING, "torch_dtype": NO_BEARING,
    # a generation default; the chat engine always decodes with a KV cache
    "use_cache": NO_BEARING,
    # Hugging Face remote-code classes; paddleformers has its own ERNIE 4.5 classes
    "auto_map": NO_BEARING,
    # ERNIEKit's weight of the MTP loss in pre-training; the studio never trains the MTP layer
    "multi_token_pred_lambda": NO_BEARING,
}

# FastDeploy's keys in `quantization_config`: how to quantize full-precision weights when serving.
FASTDEPLOY_QUANTIZATION_KEYS = ("quantization", "dense_quant_type", "moe_quant_type", "kv_cache_quant_type",
                                "modules_to_quant")
# ERNIEKit's names for paddleformers' router loss coefficients, which paddleformers does not read.
ERNIEKIT_NAMES = {"moe_aux_loss_lambda": "router_aux_loss_coef", "moe_z_loss_lambda": "router_z_loss_coef"}


def refusals(config: dict) -> list[str]:
    """Why the model paddleformers would build from `config` is not the one it describes: one
    message per key, naming it; empty when the config can be used as it is."""
    found = []
    if config.get("use_rmsnorm", True) is not True:
        found.append(f"use_rmsnorm is {config['use_rmsnorm']!r}: paddleformers' ERNIE 4.5 classes always use "
                     "RMSNorm")
    if config.get("moe_gate", "topk") != "topk":
        found.append(f"moe_gate is {config['moe_gate']!r}: paddleformers' ERNIE 4.5 MoE block routes with its "
                     "top-k gate only ('topk')")
    if config.get("model_type") == "ernie4_5" and config.get("num_nextn_predict_layers", 0):
        found.append(f"num_nextn_predict_layers is {config['num_nextn_predict_layers']!r}: paddleformers' dense "
                     "ERNIE 4.5 class has no multi-token-prediction layer, so its weights would be dropped")
    for ours, theirs in ERNIEKIT_NAMES.items():
        if ours in config:
            found.append(f"{ours} is ERNIEKit's name, which paddleformers does not read: rename it to {theirs}")
    quantization = config.get("quantization_config")
    if is_studio_quantized(config):
        try:
            QuantSpec.from_config(quantization)
        except QuantError as exc:
            found.append(str(exc))
    elif quantization is not None:
        unknown = (sorted(set(quantization) - set(FASTDEPLOY_QUANTIZATION_KEYS)) if isinstance(quantization, dict)
                   else [])
        if not isinstance(quantization, dict) or unknown:
            names = ", ".join(f"quantization_config.{key}" for key in unknown) or "quantization_config"
            found.append(f"{names}: only FastDeploy's serving recipe ({', '.join(FASTDEPLOY_QUANTIZATION_KEYS)}) "
                         "can be carried; the studio loads quantized weights only in its own format (docs/quant.md)")
    return found
