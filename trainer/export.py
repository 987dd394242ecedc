"""`python -m trainer export`: a self-contained checkpoint from a finished job.

For a LoRA job the adapter is merged into its base model and the merged weights are written with
the tokenizer (safetensors + config + tokenizer files), ready for `models.serve` or any
paddleformers loader. For a full fine-tuning job the output already is such a checkpoint and is
copied. The export directory appears only once complete (written under a temporary name).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.checkpoints import ModelNotFound, adapter_base, copy_tokenizer_files, is_adapter, save_model, staged
from trainer.jobfiles import COMPLETED, JobPaths, read_status


class ExportError(Exception):
    """The job cannot be exported, and why."""


def load_merged(adapter_dir: Path):
    """The base model with the adapter in `adapter_dir` merged in, as a plain model."""
    from models.loader import load_checkpoint

    try:
        base_dir = adapter_base(adapter_dir)
    except ModelNotFound as exc:
        raise ExportError(str(exc)) from exc
    lora_model, _ = load_checkpoint(str(adapter_dir))
    lora_model.merge()
    return lora_model.restore_original_model(), base_dir


def export(job_dir: Path, merge: bool = True, out_dir: Path | None = None) -> Path:
    paths = JobPaths(job_dir)
    status = read_status(job_dir)
    if status.get("state") != COMPLETED:
        raise ExportError(f"job {job_dir} is {status.get('state', 'unknown')}, not completed; nothing to export")
    if not paths.output.is_dir():
        raise ExportError(f"job {job_dir} has no output directory")
    out_dir = Path(out_dir) if out_dir else paths.export
    adapter = is_adapter(paths.output)
    if adapter and not merge:
        raise ExportError("this job produced a LoRA adapter; pass --merge to write a self-contained model")
    with staged(out_dir) as staging:
        if adapter:
            write_merged(paths.output, staging)
        else:
            shutil.copytree(paths.output, staging)
    return out_dir


def write_merged(adapter_dir: Path, directory: Path) -> None:
    """Write the adapter merged into its base, with the adapter's tokenizer files, to `directory`."""
    model, base_dir = load_merged(adapter_dir)
    directory.mkdir(parents=True)
    save_model(model, directory, (base_dir / "config.json").read_text(encoding="utf-8"))
    copy_tokenizer_files(adapter_dir, directory)
