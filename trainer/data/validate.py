"""Whole-file validation with bounded memory, and loading of a validated file.

`validate_file` streams a file once, checks every row and keeps only counters and the first
`max_issues_kept` issues, so its memory does not grow with the file. Problems with the file as
a whole (missing, empty, not UTF-8, unknown format) raise `DataError` instead of a Report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ..messages import Message, plural
from .formats import FORMATS, Example, open_records, try_convert
from .images import ImageContext, ImageLimits
from .readers import DataError, DataIssue

__all__ = ["Report", "DataError", "DataIssue", "validate_file", "load_examples"]


@dataclass
class Report:
    path: str
    format: str
    kind: str  # 'sft' | 'preference'
    detected: bool = False  # the format was auto-detected rather than given
    skip_invalid: bool = False
    rows_total: int = 0
    rows_valid: int = 0
    rows_invalid: int = 0
    issues: list[DataIssue] = field(default_factory=list)  # the first ones only
    issues_total: int = 0

    @property
    def ok(self) -> bool:
        """Usable for training: no invalid rows, or invalid rows skipped and some valid rows left."""
        if self.rows_valid == 0:
            return False
        return self.rows_invalid == 0 or self.skip_invalid

    @property
    def rows_skipped(self) -> int:
        return self.rows_invalid if self.skip_invalid else 0

    def summary(self) -> Message:
        skipped = Message("report-skipped", n=self.rows_skipped) if self.rows_skipped else ""
        return plural(self.rows_total, "report-rows-one", "report-rows", rows_total=self.rows_total,
                      rows_valid=self.rows_valid, rows_invalid=self.rows_invalid, skipped=skipped)

    def error(self) -> DataError | None:
        """The DataError describing why the file is refused, or None when it is ok."""
        if self.ok:
            return None
        if self.rows_valid == 0:
            reason = Message("report-no-valid")
        else:
            reason = Message("report-invalid-refuse", n=self.rows_valid)
        summary = Message("report-refused", path=self.path, format=self.format, summary=self.summary(), reason=reason)
        return DataError(self.issues, summary, self.issues_total)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "kind": self.kind,
            "detected": self.detected,
            "skip_invalid": self.skip_invalid,
            "ok": self.ok,
            "rows_total": self.rows_total,
            "rows_valid": self.rows_valid,
            "rows_invalid": self.rows_invalid,
            "rows_skipped": self.rows_skipped,
            "issues_total": self.issues_total,
            "issues": [issue.to_dict() for issue in self.issues],
        }


def validate_file(path: str | os.PathLike, format: str = "auto", skip_invalid: bool = False,
                  max_issues_kept: int = 200,
                  on_example: Callable[[Example], None] | None = None,
                  limits: ImageLimits | None = None) -> Report:
    """Check every row of the file. `on_example` is called with each valid example as it is read
    (for statistics or collection) so one pass serves both; problems it returns (a row the model's
    chat template cannot render, say) make the row invalid. Images must lie in the file's folder
    and, given `limits` (the run config's vl.min_pixels/max_pixels), have an area within them."""
    path = os.fspath(path)
    name, records = open_records(path, format)
    report = Report(path, name, FORMATS[name].kind, detected=format == "auto", skip_invalid=skip_invalid)
    images = ImageContext.for_file(path, limits)
    for line, row in records:
        report.rows_total += 1
        example, issues = try_convert(row, name, path, line, images)
        if example is not None:
            issues = (on_example(example) if on_example is not None else None) or []
            if not issues:
                report.rows_valid += 1
                continue
        report.rows_invalid += 1
        report.issues_total += len(issues)
        room = max_issues_kept - len(report.issues)
        if room > 0:
            report.issues.extend(issues[:room])
    return report


def load_examples(path: str | os.PathLike, format: str = "auto", skip_invalid: bool = False,
                  limits: ImageLimits | None = None) -> tuple[list[Example], Report]:
    """All valid examples of the file with its Report; raises `DataError` when the file is not ok."""
    examples: list[Example] = []
    report = validate_file(path, format, skip_invalid, on_example=examples.append, limits=limits)
    error = report.error()
    if error is not None:
        raise error
    return examples, report
