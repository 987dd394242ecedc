"""`python -m trainer export`: a self-contained checkpoint from a finished job.

For a LoRA job the adapter is merged into its base model and the merged weights are written with
the tokenizer (safetensors + config + tokenizer files, and a VL model's processor configs), ready
for `models.serve` or any paddleformers loader. A VL model's adapters on its vision transformer and
resampler merge like the language model's, in the model's own layout (paddleformers stores VL
linear weights transposed and transposes them back on load, so adding an adapter to the stored
tensors would be wrong), and the export holds exactly the base's tensor names. For a full
fine-tuning job the output already is such a checkpoint and is copied. The export directory
appears only once complete (written under a temporary name). A quantized export is
trainer.quant_export's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.checkpoints import (
    ModelNotFound, adapter_base, copy_tokenizer_files, is_adapter, save_model, staged, stored_dtype,
)
from trainer.jobfiles import COMPLETED, JobPaths, read_status


class ExportError(Exception):
    """The job cannot be exported, and why."""


def load_merged(adapter_dir: Path):
    """The base model with the adapter in `adapter_dir` merged in, as a plain model with the base's
    layers, in the precision the base is stored in."""
    from models.loader import load_checkpoint

    try:
        base_dir = adapter_base(adapter_dir)
    except ModelNotFound as exc:
        raise ExportError(str(exc)) from exc
    lora_model, _ = load_checkpoint(str(adapter_dir))
    without_bias = {name for name, layer in lora_model.model.named_sublayers() if getattr(layer, "bias", 0) is None}
    lora_model.merge()
    model = lora_model.restore_original_model()
    # paddleformers restores each adapted layer as a new Linear, with a zero bias the base never had
    for name, layer in model.named_sublayers():
        if name in without_bias:
            layer.bias = None
    cast_for_storage(model, stored_dtype(base_dir))
    return model, base_dir


def cast_for_storage(model, dtype: str) -> None:
    """Store the merged weights in `dtype` (the base's precision; the merge itself runs in fp32),
    except the parameters paddleformers keeps in fp32 (the router's)."""
    import paddle

    if dtype == "float32":
        return
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    with paddle.no_grad():
        for layer_path, layer in model.named_sublayers(include_self=True):
            for name, parameter in layer.named_parameters(include_sublayers=False):
                if parameter.dtype == paddle.float32 and not any(k in f"{layer_path}.{name}" for k in keep):
                    layer._transform(parameter, None, dtype, None)  # in place, as Layer.to casts


def check_job(job_dir: Path, merge: bool, quantized: bool = False) -> tuple[JobPaths, bool]:
    """(the job's paths, whether its output is a LoRA adapter) of a job that can be exported."""
    paths = JobPaths(job_dir)
    status = read_status(job_dir)
    if status.get("state") != COMPLETED:
        raise ExportError(f"job {job_dir} is {status.get('state', 'unknown')}, not completed; nothing to export")
    if not paths.output.is_dir():
        raise ExportError(f"job {job_dir} has no output directory")
    adapter = is_adapter(paths.output)
    if adapter and not merge:
        if quantized:
            raise ExportError("this job produced a LoRA adapter, and a quantized checkpoint is made of the merged "
                              "weights: add --merge")
        raise ExportError("this job produced a LoRA adapter; pass --merge to write a self-contained model")
    return paths, adapter


def export(job_dir: Path, merge: bool = True, out_dir: Path | None = None) -> Path:
    paths, adapter = check_job(job_dir, merge)
    out_dir = Path(out_dir) if out_dir else paths.export
    with staged(out_dir) as staging:
        if adapter:
            write_merged(paths.output, staging)
        else:
            shutil.copytree(paths.output, staging)
    return out_dir


def write_merged(adapter_dir: Path, directory: Path) -> None:
    """Write the adapter merged into its base, with the adapter's tokenizer (and a VL model's
    processor) files, to `directory`; the base's fill in any the adapter was saved without."""
    model, base_dir = load_merged(adapter_dir)
    directory.mkdir(parents=True)
    save_model(model, directory, (base_dir / "config.json").read_text(encoding="utf-8"))
    copy_tokenizer_files(base_dir, directory)
    copy_tokenizer_files(adapter_dir, directory)
