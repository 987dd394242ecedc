"""`python -m trainer data check FILE`: validate a dataset file and print its report and statistics.

Exit status: 0 when the file is usable for training, 1 when it is not (invalid rows, unknown
format, unreadable content), 2 for usage errors (bad arguments, missing file, unsupported
extension). `add_arguments` and `run` are separate from `main` so the trainer CLI can add
options (such as a tokenizer for token statistics) and pass `token_length` in. Images are held to
the run config's vl.min_pixels/vl.max_pixels (`image_limits`): given with --min-pixels and
--max-pixels, the schema's defaults otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, TextIO

from trainer.schema import VlSection

from .formats import FORMATS, Example
from .images import ImageLimits
from .readers import SUPPORTED_EXTENSIONS, DataError
from .stats import StatsCollector
from .validate import validate_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help=f"dataset file ({', '.join(SUPPORTED_EXTENSIONS)})")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                        help="data format; detected from the first rows by default")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="accept the file when some rows are valid, skipping the invalid ones")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    defaults = image_limits()
    parser.add_argument("--min-pixels", type=int, default=defaults.min_pixels,
                        help="smallest image area allowed, as the run config's vl.min_pixels (default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels,
                        help="largest image area allowed, as the run config's vl.max_pixels (default %(default)s)")


def image_limits(vl: VlSection | None = None) -> ImageLimits:
    """The image area limits of a run config's vl section; the schema's defaults without one."""
    vl = vl or VlSection()
    return ImageLimits(vl.min_pixels, vl.max_pixels)


def run(args: argparse.Namespace, token_length: Callable[[Example], int] | None = None,
        max_seq_len: int | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = args.file
    usage_error = _usage_error(path)
    if usage_error:
        print(f"error: {path}: {usage_error}", file=sys.stderr)
        return 2
    limits = ImageLimits(args.min_pixels, args.max_pixels)
    collector = StatsCollector(token_length, max_seq_len, limits)
    try:
        report = validate_file(path, args.format, args.skip_invalid, on_example=collector.add, limits=limits)
    except DataError as e:
        if args.json:
            print(json.dumps({"path": path, "ok": False, **e.to_dict()}, ensure_ascii=False), file=out)
        else:
            print(f"error: {e}", file=out)
        return 1
    stats = collector.result()
    if args.json:
        print(json.dumps({**report.to_dict(), "stats": stats}, ensure_ascii=False), file=out)
        return 0 if report.ok else 1
    how = "detected" if report.detected else "given"
    print(f"file:    {path}", file=out)
    print(f"format:  {report.format} ({report.kind}, {how})", file=out)
    print(f"rows:    {report.summary()}", file=out)
    if report.issues_total:
        print(f"issues:  {report.issues_total}", file=out)
        for issue in report.issues:
            print(f"  {issue}", file=out)
        hidden = report.issues_total - len(report.issues)
        if hidden:
            print(f"  ... and {hidden} more", file=out)
    if stats["rows"]:
        _print_stats(stats, out)
    if report.ok:
        print("result:  OK" + (f" ({report.rows_skipped} invalid rows skipped)" if report.rows_skipped else ""),
              file=out)
    elif report.rows_valid == 0:
        print("result:  INVALID (no valid rows)", file=out)
    else:
        print(f"result:  INVALID ({report.rows_invalid} invalid rows; --skip-invalid would use the "
              f"{report.rows_valid} valid rows)", file=out)
    return 0 if report.ok else 1


def _usage_error(path: str) -> str | None:
    if not os.path.exists(path):
        return "file not found"
    if not os.path.isfile(path):
        return "not a regular file"
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_EXTENSIONS:
        return f"unsupported file extension {ext or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
    return None


def _print_stats(stats: dict, out: TextIO) -> None:
    turns, chars = stats["turns"], stats["characters"]
    print("stats (valid rows):", file=out)
    print(f"  turns per row: mean {turns['mean']}, min {turns['min']}, max {turns['max']}; "
          f"multi-turn rows: {stats['multi_turn_rows']}", file=out)
    print(f"  characters per row: mean {chars['mean']}, max {chars['max']} (total {chars['total']})", file=out)
    print(f"  with system prompt: {stats['with_system']}; with <think>: {stats['with_think']}; "
          f"untrained turns: {stats['untrained_turns']}", file=out)
    images = stats.get("images")
    if images:
        per_row, size, image_tokens = images["per_row"], images["size"], images["tokens_per_row"]
        sizes = ", ".join(f"{name} {w}x{h}" for name, (w, h) in size.items())
        print(f"  images: {images['total']} in {images['rows']} rows; per row: mean {per_row['mean']}, "
              f"min {per_row['min']}, max {per_row['max']}; sizes: {sizes}", file=out)
        print(f"  image tokens per row with images: min {image_tokens['min']}, mean {image_tokens['mean']}, "
              f"max {image_tokens['max']}", file=out)
    tokens = stats["tokens"]
    if tokens and tokens["max"] is not None:
        print(f"  tokens per row: min {tokens['min']}, mean {tokens['mean']}, p50 {tokens['p50']}, "
              f"p95 {tokens['p95']}, max {tokens['max']}", file=out)
        if tokens["max_seq_len"] is not None:
            print(f"  rows longer than max_seq_len {tokens['max_seq_len']}: {tokens['over_max_seq_len']}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer data check",
                                     description="Validate a dataset file and show its statistics.")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
