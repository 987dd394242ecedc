"""What is said about an export without loading it (no paddle): where a quantized export goes by
default, the FastDeploy command that serves an export, and the quality report that
`trainer.quant_report` wrote into a quantized export, read back as a table in either language."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from models.chat_template import THINK_OPEN
from models.checkpoints import VISION_MODEL_TYPES
from plumbing.files import human_size
from trainer.jobfiles import JobPaths
from trainer.messages import Message

REPORT_FILE = "quant_report.json"
FASTDEPLOY_SERVER = "fastdeploy.entrypoints.openai.api_server"
# FastDeploy's documented serving settings for ERNIE 4.5; the context is capped at the model's own
FASTDEPLOY_PORT, FASTDEPLOY_MAX_MODEL_LEN, FASTDEPLOY_MAX_NUM_SEQS = 8180, 32768, 32
# FastDeploy's reasoning parsers for ERNIE 4.5: the thinking text models' and the VL models'
# (`ernie-x1` since FastDeploy's pull request #4668; older releases spell it `ernie_x1`)
PARSER_TEXT, PARSER_VL = "ernie-x1", "ernie-45-vl"
# FastDeploy quantizes full-precision weights at load ("online"), every layer to one width,
# channel-wise; it has no online form of the wint4/8 mix
ONLINE_WIDTH = {"wint8": "wint8", "wint4": "wint4", "wint4/8": "wint4"}


def default_export_dir(job_dir, width: str | None = None, group_size: int = -1) -> Path:
    """JOB/export for a full-precision export; JOB/export-<width>[-g<group size>] for a quantized
    one, so a quantized export never replaces the full-precision one FastDeploy is pointed at."""
    plain = JobPaths(job_dir).export
    if width is None:
        return plain
    suffix = width.replace("/", "-") + ("" if group_size == -1 else f"-g{group_size}")
    return plain.with_name(f"{plain.name}-{suffix}")


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class ServeCommand:
    argv: list[str]
    model_dir: Path
    notes: list[Message] = field(default_factory=list)

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def fastdeploy_command(export_dir, job_dir, width: str | None = None, group_size: int = -1,
                       python: str = "python") -> ServeCommand:
    """The FastDeploy command that serves the export in `export_dir` (quantized as `width`, or
    full precision when None), with what the user needs to know about it. FastDeploy reads
    full-precision Paddle checkpoints only, so a quantized export is served from the job's
    full-precision export, which FastDeploy quantizes as it loads it."""
    export_dir = Path(export_dir)
    model_dir = export_dir if width is None else default_export_dir(job_dir)
    config = _json(export_dir / "config.json")
    context = min(FASTDEPLOY_MAX_MODEL_LEN, int(config.get("max_position_embeddings") or FASTDEPLOY_MAX_MODEL_LEN))
    argv = [python, "-m", FASTDEPLOY_SERVER, "--model", str(model_dir), "--port", str(FASTDEPLOY_PORT),
            "--max-model-len", str(context), "--max-num-seqs", str(FASTDEPLOY_MAX_NUM_SEQS)]
    if width is None:
        notes = [Message("fd-serve", dir=str(model_dir))]
    else:
        argv += ["--quantization", ONLINE_WIDTH[width]]
        notes = [Message("fd-online", dir=str(model_dir), online=ONLINE_WIDTH[width])]
        if not (model_dir / "config.json").is_file():
            notes.append(Message("fd-missing", dir=str(model_dir)))
        if ONLINE_WIDTH[width] != width:
            notes.append(Message("fd-mix"))
        if group_size != -1:
            notes.append(Message("fd-group", group=group_size))
    template = _json(export_dir / "tokenizer_config.json").get("chat_template") or ""
    parser = (PARSER_VL if config.get("model_type") in VISION_MODEL_TYPES else
              PARSER_TEXT if THINK_OPEN in str(template) else None)
    if parser:
        argv += ["--reasoning-parser", parser]
        notes.append(Message("fd-parser", parser=parser))
    else:
        notes.append(Message("fd-no-parser"))
    return ServeCommand(argv, model_dir, notes)


def read_report(export_dir) -> dict | None:
    """The quality report of a quantized export, or None when it has none (or one this module cannot
    read: unreadable, or written by another version)."""
    report = _json(Path(export_dir) / REPORT_FILE)
    needed = {"width", "dtype", "results", "sample", "answers"}
    return report if needed <= set(report) and isinstance(report["results"], list) else None


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def report_table(report: dict, lang: str = "en") -> tuple[list[str], list[list[str]]]:
    """(column headers, rows) of a quality report in `lang`: one row per measured width, full
    precision first."""
    headers = [Message(key).text(lang) for key in ("qr-col-weights", "qr-col-perplexity", "qr-col-change",
                                                    "qr-col-same", "qr-col-bytes", "qr-col-load")]
    rows = []
    for result in report["results"]:
        width = result["width"]
        if width == "full":
            name = Message("qr-full-precision", dtype=report["dtype"])
        elif width == report["width"]:
            name = Message("qr-exported", width=width)
        else:
            name = width
        load = result.get("load")
        rows.append([
            name.text(lang) if isinstance(name, Message) else name,
            f"{result['perplexity']:.4f}" if result.get("perplexity") is not None else "—",
            f"{result['perplexity_change'] * 100:+.2f}%" if result.get("perplexity_change") is not None else "—",
            Message("qr-same", same=result["same_answers"], total=len(report["answers"]),
                    share=_percent(result["same_share"])).text(lang) if result.get("same_share") is not None else "—",
            human_size(result["weight_bytes"]),
            human_size(load["increase_bytes"]) if load else Message("qr-not-written").text(lang),
        ])
    return headers, rows


def report_notes(report: dict) -> list[Message]:
    """What the table was measured on and how."""
    sample = report["sample"]
    rows = Message(f"qr-source-{sample['source']}", rows=sample["rows"])
    notes = [Message("qr-title", source=rows)]
    if sample.get("images_skipped"):
        notes.append(Message("qr-images-skipped", n=sample["images_skipped"]))
    if report.get("method") == "dpo":
        notes.append(Message("qr-dpo-chosen"))
    notes.append(Message("qr-how", tokens=sample["max_new_tokens"]))
    return notes


def report_text(report: dict) -> str:
    """The report as the command line prints it: its notes and an aligned table, in English."""
    headers, rows = report_table(report)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in (headers, *rows)]
    return "\n".join([str(note) for note in report_notes(report)] + [""] + lines)
