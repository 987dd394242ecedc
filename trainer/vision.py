"""What a run does differently for an ERNIE 4.5 VL model: which parts train (`vl.*` options), the
vision transformer's learning rate, the batch collator and the loss.

The model's parts, by parameter name: the vision transformer (`vision_model.`), the adapter that
maps its features into the language model (`model.resampler_model.`), and the language model
(everything else: embeddings, decoder layers with their text and vision experts, the head).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from models.checkpoints import VISION_MODEL_TYPES
from plumbing.files import atomic_write_json
from trainer.data.tokenize import IGNORE_INDEX

VISION_PREFIX = "vision_model."
ADAPTER_PREFIX = "model.resampler_model."


def is_vision_model(model_dir: str | Path) -> bool:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type") in VISION_MODEL_TYPES


def part_of(name: str) -> str:
    """'vision', 'adapter' or 'lm' for a parameter or layer name of the model."""
    if name.startswith(VISION_PREFIX):
        return "vision"
    if name.startswith(ADAPTER_PREFIX):
        return "adapter"
    return "lm"


def frozen_parts(vl) -> set[str]:
    """The parts the run's `vl` options keep fixed."""
    return {part for part, frozen in (("vision", vl.freeze_vision), ("adapter", vl.freeze_adapter),
                                      ("lm", vl.freeze_lm)) if frozen}


_PART_PATTERNS = {"vision": re.escape(VISION_PREFIX) + ".*", "adapter": re.escape(ADAPTER_PREFIX) + ".*",
                  "lm": f"(?!{re.escape(VISION_PREFIX)}|{re.escape(ADAPTER_PREFIX)}).*"}


def lora_exclusions(vl) -> list[str]:
    """Layer-name patterns that get no LoRA adapter: the parts `vl` keeps fixed."""
    return [_PART_PATTERNS[part] for part in sorted(frozen_parts(vl))]


def apply_vl_options(vl, model) -> None:
    """Freeze the parts `vl` names (full fine-tuning; LoRA leaves them without adapters) and give
    the vision transformer's trainable parameters (a LoRA model's adapters there) its learning-rate
    ratio (paddle multiplies the optimizer's rate by a parameter's `optimize_attr['learning_rate']`).
    `model` is the VL model itself, a LoRA model's inner one."""
    frozen = frozen_parts(vl)
    for name, parameter in model.named_parameters():
        part = part_of(name)
        if part in frozen:
            parameter.stop_gradient = True
        elif part == "vision":
            parameter.optimize_attr["learning_rate"] = vl.vision_lr_ratio


def ship_pixel_limits(out_dir: Path, vl) -> None:
    """Write the run's `vl.min_pixels`/`vl.max_pixels` into the output's preprocessor_config.json
    (when it has one), so the model sees images at the size it was trained on wherever it is loaded."""
    path = Path(out_dir) / "preprocessor_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(min_pixels=vl.min_pixels, max_pixels=vl.max_pixels)
    config["size"] = {**config.get("size", {}), "min_pixels": vl.min_pixels, "max_pixels": vl.max_pixels}
    atomic_write_json(path, config)


class VisionCollator:
    """Pads a batch of VL features on the right (labels -100, token type 0, positions continuing
    past each row's last) and stacks every row's image patches in order."""

    def __init__(self, pad_id: int, with_lengths: bool = False):
        self.pad_id = pad_id
        self.with_lengths = with_lengths

    def __call__(self, batch):
        import paddle

        width = max(len(item["input_ids"]) for item in batch)
        rows = len(batch)
        input_ids = np.full([rows, width], self.pad_id, dtype="int64")
        labels = np.full([rows, width], IGNORE_INDEX, dtype="int64")
        types = np.zeros([rows, width + 1], dtype="int64")
        positions = np.zeros([rows, width, 3], dtype="int64")
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            input_ids[row, :n] = item["input_ids"]
            labels[row, :n] = item["labels"]
            types[row, : n + 1] = item["token_type_ids"]
            positions[row, :n] = item["position_ids"]
            after = (max(max(p) for p in item["position_ids"]) + 1) if n else 0
            positions[row, n:] = np.arange(after, after + width - n)[:, None]
        out = {"input_ids": paddle.to_tensor(input_ids), "labels": paddle.to_tensor(labels),
               "token_type_ids": paddle.to_tensor(types), "position_ids": paddle.to_tensor(positions)}
        images = [item["images"] for item in batch if item["images"] is not None]
        if images:
            grids = [grid for item in batch for grid in item["grid_thw"]]
            out["images"] = paddle.to_tensor(np.concatenate(images))
            out["grid_thw"] = paddle.to_tensor(np.asarray(grids, dtype="int64"))
            out["image_type_ids"] = paddle.zeros([len(grids)], dtype="int64")
        if self.with_lengths:
            out["sequence_lengths"] = paddle.to_tensor([len(item["input_ids"]) for item in batch], dtype="int64")
        return out


def model_inputs(inputs: dict) -> dict:
    """The batch without what only the loss reads."""
    return {key: value for key, value in inputs.items() if key not in ("labels", "sequence_lengths")}


def vl_loss(model, inputs: dict, return_outputs: bool = False):
    """The VL model's own loss (the text tokens' cross entropy plus the router losses)."""
    outputs = model(**model_inputs(inputs), labels=inputs["labels"], return_dict=True)
    return (outputs.loss, outputs) if return_outputs else outputs.loss
