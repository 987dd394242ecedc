"""Whole-file validation with bounded memory, and loading of a validated file.

`validate_file` streams a file once, checks every row and keeps only counters and the first
`max_issues_kept` issues, so its memory does not grow with the file. Problems with the file as
a whole (missing, empty, not UTF-8, unknown format) raise `DataError` instead of a Report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .formats import FORMATS, Example, open_records, try_convert
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

    def summary(self) -> str:
        text = (f"{self.rows_total} row{_s(self.rows_total)}: {self.rows_valid} valid, "
                f"{self.rows_invalid} invalid")
        return text + (f" ({self.rows_skipped} skipped)" if self.rows_skipped else "")

    def error(self) -> DataError | None:
        """The DataError describing why the file is refused, or None when it is ok."""
        if self.ok:
            return None
        if self.rows_valid == 0:
            reason = "no valid rows"
        else:
            reason = f"invalid rows refuse the file (skip_invalid would use the {self.rows_valid} valid rows)"
        return DataError(self.issues, f"{self.path} (format {self.format}): {self.summary()}; {reason}",
                         self.issues_total)

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
            "issues": [{**issue._asdict(), "text": str(issue)} for issue in self.issues],
        }


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def validate_file(path: str | os.PathLike, format: str = "auto", skip_invalid: bool = False,
                  max_issues_kept: int = 200,
                  on_example: Callable[[Example], None] | None = None) -> Report:
    """Check every row of the file. `on_example` is called with each valid example as it is read
    (for statistics or collection) so one pass serves both."""
    path = os.fspath(path)
    name, records = open_records(path, format)
    report = Report(path, name, FORMATS[name].kind, detected=format == "auto", skip_invalid=skip_invalid)
    for line, row in records:
        report.rows_total += 1
        example, issues = try_convert(row, name, path, line)
        if example is not None:
            report.rows_valid += 1
            if on_example is not None:
                on_example(example)
            continue
        report.rows_invalid += 1
        report.issues_total += len(issues)
        room = max_issues_kept - len(report.issues)
        if room > 0:
            report.issues.extend(issues[:room])
    return report


def load_examples(path: str | os.PathLike, format: str = "auto",
                  skip_invalid: bool = False) -> tuple[list[Example], Report]:
    """All valid examples of the file with its Report; raises `DataError` when the file is not ok."""
    examples: list[Example] = []
    report = validate_file(path, format, skip_invalid, on_example=examples.append)
    error = report.error()
    if error is not None:
        raise error
    return examples, report
