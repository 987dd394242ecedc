"""`python -m trainer export JOB --merge --quantize W [--group-size N] [--report]`: a finished job
as a self-contained weight-only quantized checkpoint (models.quant_io's format), with the quality
report of trainer.quant_report when asked.

Everything that can be refused is refused before anything is written: an adapter without --merge
(the quantized weights are those of the merged model), a base that is already quantized, a group
size that does not divide a layer, a report whose data cannot be read. The checkpoint, its
tokenizer files (the adapter's over the base's, as the plain export) and the report are written
into `<dir>.partial`, renamed into place only once complete and removed on any failure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.checkpoints import (ModelNotFound, adapter_base, copy_tokenizer_files, read_model_config, staged,
                                staging_dir, stored_dtype)
from models.quant_spec import QuantError, QuantSpec, is_studio_quantized
from plumbing.files import atomic_write_json
from trainer.export import ExportError, check_job, load_merged
from trainer.export_facts import REPORT_FILE, default_export_dir
from trainer.quant_report import FULL, ReportError, build_sample, load_memory, measure
from trainer.vision import is_vision_model


def _job_config(paths):
    from trainer.config import ConfigError, load_config

    try:
        return load_config(paths.config)
    except (ConfigError, OSError) as exc:
        raise ExportError(f"the report reads the job's data through {paths.config}, which is no longer valid: "
                          f"{exc}") from exc


def export_quantized(job_dir, spec: QuantSpec, merge: bool, out_dir=None, report_widths: list[str] | None = None,
                     log=print) -> tuple[Path, dict | None]:
    """Write the job's model quantized as `spec` to `out_dir` (default JOB/export-<width>); with
    `report_widths` (a list, maybe empty) also measure the report, comparing full precision with
    `spec.width` and those widths. Returns (the export directory, the report or None)."""
    from models.loader import load_model, load_tokenizer, tokenizer_dir
    from models.quant import check_divisible, eligible_layers, quantize_model
    from models.quant_io import save_quantized

    paths, adapter = check_job(job_dir, merge, quantized=True)
    try:
        source = adapter_base(paths.output) if adapter else paths.output
        source_config = read_model_config(source)
    except ModelNotFound as exc:
        raise ExportError(str(exc)) from exc
    if is_studio_quantized(source_config):
        raise ExportError(f"{source} is already a quantized checkpoint "
                          f"({source_config['quantization_config'].get('weight_quantize_algo')}); quantizing it "
                          "again would compound the error: export from a full-precision model")
    out_dir = Path(out_dir) if out_dir else default_export_dir(job_dir, spec.width, spec.group_size)
    tokenizer = load_tokenizer(tokenizer_dir(source, paths.output if adapter else None))
    sample = cfg = processor = None
    if report_widths is not None:
        cfg = _job_config(paths)
        if is_vision_model(source):
            from models.vl_inputs import ImageProcessor

            processor = ImageProcessor(source, cfg.vl.min_pixels, cfg.vl.max_pixels)
        try:
            sample = build_sample(cfg, tokenizer, processor)
        except ReportError as exc:
            raise ExportError(str(exc)) from exc
    log(f"[export] loading {'the adapter merged into ' + str(source) if adapter else source}")
    model = load_merged(paths.output)[0] if adapter else load_model(paths.output, dtype=stored_dtype(paths.output))
    model.eval()
    try:
        check_divisible(eligible_layers(model), spec)
    except QuantError as exc:
        raise ExportError(str(exc)) from exc
    report = None
    if sample is not None:
        report = {"job": str(paths.dir), "method": cfg.method, "dtype": stored_dtype(source),
                  **measure(model, tokenizer, sample, spec, report_widths, processor, log)}
    else:
        quantize_model(model, spec)
    log(f"[export] writing {spec.width} (group size {spec.group_size}) to {out_dir}")
    try:
        with staged(out_dir) as staging:
            save_quantized(model, spec, staging, source_dir=source)
            if adapter:
                copy_tokenizer_files(paths.output, staging)
            if report is not None:
                log("[report] loading memory: the job's output and the export, each in a fresh process")
                loads = {FULL: load_memory(paths.output), spec.width: load_memory(staging)}
                for result in report["results"]:
                    result["load"] = loads.get(result["width"])
                report["export_dir"] = str(out_dir)
                atomic_write_json(staging / REPORT_FILE, report)
    except BaseException:
        shutil.rmtree(staging_dir(out_dir), ignore_errors=True)
        raise
    return out_dir, report
