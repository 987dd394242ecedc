"""Builds the embedded tiny ERNIE 4.5 models (MoE and dense) and their tokenizer from `assets/`.

A built model is an ordinary checkpoint directory (config.json, model.safetensors, tokenizer.model,
tokenizer_config.json, generation_config.json), loaded afterwards exactly like a real ERNIE 4.5
checkpoint. Building is deterministic (fixed seeds, single-threaded tokenizer training) and atomic:
the directory is written under a temporary name and renamed into place, under a file lock so two
processes never build the same model at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from models.chat_template import ERNIE_CHAT_TEMPLATE
from models.checkpoints import VISION_MODEL_TYPES, model_class, save_model
from models.image_facts import IMAGE_PATCH, VISION_SPECIAL_TOKENS
from plumbing.locking import exclusive

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CORPUS_FILES = [ASSETS / "corpus" / "en.txt", ASSETS / "corpus" / "zh.txt"]
BUILD_VERSION = 1
SEED = 20250630

BOS, EOS, CLS, SEP = "<s>", "</s>", "<|begin_of_sentence|>", "<|end_of_sentence|>"
SPECIAL_TOKENS = [CLS, SEP, "<think>", "</think>", "\n"]

VOCAB_SIZE = 1536
EMBEDDING_SCALE = 3.0

_COMMON = dict(
    vocab_size=VOCAB_SIZE, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=500000.0,
    rms_norm_eps=1e-5, use_bias=False, tie_word_embeddings=True, pad_token_id=0, bos_token_id=2,
    eos_token_id=3, use_cache=True, hidden_act="silu",
)

MODEL_CONFIGS = {
    "ernie-4.5-tiny-moe": dict(
        _COMMON, architectures=["Ernie4_5_MoeForCausalLM"], model_type="ernie4_5_moe",
        moe_num_experts=8, moe_k=2, moe_num_shared_experts=1, moe_intermediate_size=64,
        moe_layer_start_index=1, moe_layer_end_index=3, moe_layer_interval=1, moe_capacity=[8, 8, 8],
        moe_use_aux_free=True, moe_norm_min=1e-12, router_aux_loss_coef=1e-2, router_z_loss_coef=0.0,
        moe_orthogonal_loss_lambda=0.0, num_nextn_predict_layers=0,
    ),
    "ernie-4.5-tiny-dense": dict(
        _COMMON, architectures=["Ernie4_5ForCausalLM"], model_type="ernie4_5",
    ),
    # paddleformers' VL architecture: a 2-block vision transformer (14-pixel patches), the resampler
    # that merges 2x2 patches into one token, and MoE layers whose 4 text and 4 vision experts are
    # routed apart by token type, beside a shared expert. `im_patch_id` is filled in by the build.
    "ernie-4.5-tiny-vl": dict(
        _COMMON, architectures=["Ernie4_5_VLMoeForConditionalGeneration"], model_type="ernie4_5_moe_vl",
        moe_num_experts=[4, 4], moe_k=2, moe_num_shared_experts=1, moe_intermediate_size=[64, 64],
        moe_layer_start_index=[1, 1], moe_layer_end_index=[3, 3], moe_layer_interval=1,
        moe_capacity=[8, 8, 8], moe_use_aux_free=True, moe_use_hard_gate=True, moe_norm_min=1e-12,
        moe_multimodal_dispatch_use_allgather="v2-alltoall-unpad", router_aux_loss_coef=1e-2,
        router_z_loss_coef=0.0, moe_orthogonal_loss_lambda=1e-2, fuse_rms_norm=False,
        use_flash_attention=False, rope_3d=True, freq_allocation=4, spatial_conv_size=2,
        temporal_conv_size=2, mm_vocab_size=0, pixel_hidden_size=64,
        vision_config=dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2, in_channels=3,
                           patch_size=14, spatial_merge_size=2, hidden_act="quick_gelu"),
    ),
}
VISION_MODELS = ("ernie-4.5-tiny-vl",)


def corpus_digest() -> str:
    digest = hashlib.sha256(f"v{BUILD_VERSION}".encode())
    for path in CORPUS_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_built(name: str, models_dir: Path) -> Path:
    """Return WORKDIR/models/<name>, building it first if it is missing or stale."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / name
    with exclusive(models_dir / f".{name}.lock"):
        if _is_current(target):
            return target
        staging = models_dir / f".{name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        build(name, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def _is_current(target: Path) -> bool:
    info = target / "build_info.json"
    if not info.is_file():
        return False
    return json.loads(info.read_text()).get("corpus_digest") == corpus_digest()


def build(name: str, out_dir: Path) -> None:
    """Write a complete checkpoint for built-in model `name` into the empty directory `out_dir`."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown built-in model {name!r}; built-ins: {', '.join(MODEL_CONFIGS)}")
    vision = name in VISION_MODELS
    build_tokenizer(out_dir, VISION_SPECIAL_TOKENS if vision else ())
    config = dict(MODEL_CONFIGS[name])
    if vision:
        patch_id = _piece_id(out_dir / "tokenizer.model", IMAGE_PATCH)
        config.update(im_patch_id=patch_id, max_text_id=patch_id)
        build_image_processor(out_dir)
    # The tied embedding doubles as the output projection. At the default init its rows are so short
    # that, with the final norm frozen (as under LoRA), no hidden state can make any token likely;
    # real checkpoints have learned, longer rows. Give the tiny model a comparable logit range.
    build_weights(config, out_dir, EMBEDDING_SCALE)
    (out_dir / "build_info.json").write_text(
        json.dumps({"name": name, "build_version": BUILD_VERSION, "corpus_digest": corpus_digest()}, indent=2)
    )


def build_tokenizer(out_dir: Path, extra_special_tokens: tuple[str, ...] = ()) -> None:
    import sentencepiece as spm

    missing = [str(p) for p in CORPUS_FILES if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer corpus missing: {', '.join(missing)}")
    # Sentences come from an iterator and the model goes to memory, so no file path ends up in the
    # model's recorded trainer spec and the bytes depend on the corpus alone.
    sentences = [line for path in CORPUS_FILES for line in path.read_text(encoding="utf-8").splitlines() if line]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece="<pad>", unk_piece="<unk>", bos_piece=BOS, eos_piece=EOS,
        user_defined_symbols=SPECIAL_TOKENS + list(extra_special_tokens),
        num_threads=1,
        seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    sep_id = _piece_id(out_dir / "tokenizer.model", SEP)
    tokenizer_config = {
        "tokenizer_class": "Ernie4_5Tokenizer",
        "bos_token": BOS, "eos_token": EOS, "pad_token": "<pad>", "unk_token": "<unk>",
        "cls_token": CLS, "sep_token": SEP,
        "additional_special_tokens": [CLS, SEP, *extra_special_tokens],
        "add_bos_token": False, "add_eos_token": False,
        "model_max_length": _COMMON["max_position_embeddings"],
        "chat_template": ERNIE_CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {k: tokenizer_config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token")},
        indent=2,
    ))
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": _COMMON["bos_token_id"], "eos_token_id": [_COMMON["eos_token_id"], sep_id],
         "pad_token_id": _COMMON["pad_token_id"], "use_cache": True},
        indent=2,
    ))


def _piece_id(model_file: Path, piece: str) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model_file)).piece_to_id(piece)


def build_weights(config: dict, out_dir: Path, embedding_scale: float = 1.0) -> None:
    """Seeded random weights for the model `config` (a config.json as a dict) describes, saved into
    `out_dir` with `config` as its config.json. Real configs get their checkpoints built this way
    too (tests build reduced-depth real-width ERNIE 4.5 models from the released files)."""
    import paddle
    from paddleformers.transformers import AutoConfig

    paddle.set_device("cpu")
    config_json = json.dumps(config, indent=2)
    (out_dir / "config.json").write_text(config_json)
    model_config = AutoConfig.from_pretrained(str(out_dir))
    paddle.seed(SEED)
    model = model_class(model_config.model_type).from_config(model_config)
    if embedding_scale != 1.0:
        embedding = model.get_input_embeddings().weight
        embedding.set_value(embedding * embedding_scale)
    # paddleformers' VL class builds each expert group as copies of one expert; give every expert
    # weights of its own, at the same scale, as a trained checkpoint's are.
    for name, parameter in model.named_parameters():
        if config.get("model_type") in VISION_MODEL_TYPES and ".mlp.experts." in name:
            parameter.set_value(paddle.randn(parameter.shape, dtype=parameter.dtype) * float(parameter.std()))
    save_model(model, out_dir, config_json)


def build_image_processor(out_dir: Path) -> None:
    """preprocessor_config.json: paddleformers' ERNIE-VL image processor with its defaults."""
    from paddleformers.transformers.ernie4_5_moe_vl.image_processor import Ernie4_5_VLImageProcessor

    Ernie4_5_VLImageProcessor().save_pretrained(str(out_dir))
