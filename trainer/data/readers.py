"""Streaming record readers for dataset files, and the package's error types.

`iter_records(path)` yields `Record(line, row)` pairs from a JSONL, JSON, CSV or Parquet file
without loading the whole file: `line` is the 1-based line where the record starts (for Parquet,
the 1-based row number). `row` is the decoded value (normally a dict). A line of a line-oriented
file (JSONL, CSV) that cannot be parsed does not stop the file: its `row` is a `BadRecord`
holding the message, so validation can report it and `skip_invalid` can skip it. Problems that
make the whole file unreadable (missing, empty, not UTF-8, unknown extension, a malformed JSON
document) raise `ReadError`.

Accepted shapes:
- .jsonl / .ndjson: one JSON value per line; blank lines are skipped.
- .json: a top-level array of objects (streamed element by element); or an object whose first
  key is one of WRAPPER_KEYS ("data", "rows", ...) holding that array (other keys are ignored);
  or one or more top-level values one after another, as in JSON Lines (paddleformers reads .json
  files as JSON Lines, so ERNIEKit data often comes this way).
- .csv: a header row, then one record per row; cells of structured columns (`messages`,
  `src`, `label`, ...) that hold JSON are decoded (see `_STRUCTURED_CELLS`).
- .parquet: one record per row; string cells of structured columns are decoded like CSV's.
All text is UTF-8; a leading UTF-8 byte order mark is accepted. A UTF-16 byte order mark or a NUL
byte (UTF-16 without a mark, or a binary file) is refused as not UTF-8 text.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

from ..messages import Message, json_error

SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
WRAPPER_KEYS = ("data", "rows", "records", "examples", "instances", "items", "train")

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_CHUNK = 1 << 16
_WHITESPACE = " \t\n\r"


class DataIssue(NamedTuple):
    """One problem in one row: file, line (row number for Parquet; 0 for the whole file), field
    (dotted path such as "messages[2].content"; empty when the problem is not one field's)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f": row {self.line}" if is_row_numbered(self.file) else f":{self.line}"
        if self.field:
            return f"{where}: field '{self.field}': {self.message}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        """The issue as `trainer data check --json` and the web UI's stored reports hold it: its
        fields, `text` (the English line above) and, for a catalogue message, `i18n` (its
        `Message.to_json()`, from which the UI shows it in the chosen language)."""
        record = {**self._asdict(), "text": str(self)}
        if isinstance(self.message, Message):
            record["i18n"] = self.message.to_json()
        return record


class DataError(Exception):
    """Data that cannot be used as given. `.issues` lists what is wrong (possibly only the first
    ones); `.issues_total` counts all of them."""

    def __init__(self, issues: list[DataIssue], summary: str = "", issues_total: int | None = None,
                 shown: int = 5):
        self.issues = list(issues)
        self.issues_total = len(self.issues) if issues_total is None else issues_total
        self.summary = summary
        lines = [summary] if summary else []
        lines += [str(issue) for issue in self.issues[:shown]]
        more = self.issues_total - min(shown, len(self.issues))
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__("\n".join(lines))

    def to_dict(self) -> dict:
        """The error as JSON: `error` (the English text), `issues` (each `DataIssue.to_dict()`),
        `issues_total` and, where the summary or else the first issue is a catalogue message,
        `error_i18n` (its `Message.to_json()`)."""
        out = {"error": str(self), "issues": [issue.to_dict() for issue in self.issues],
               "issues_total": self.issues_total}
        headline = self.summary or (self.issues[0].message if self.issues else "")
        if isinstance(headline, Message):
            out["error_i18n"] = headline.to_json()
        return out


class ReadError(DataError):
    """The file as a whole cannot be read (missing, empty, not UTF-8, malformed JSON document,
    unsupported extension)."""

    def __init__(self, path: str, message: str, line: int = 0):
        self.path = str(path)
        self.line = line
        super().__init__([DataIssue(self.path, line, "", message)])


@dataclass(frozen=True)
class BadRecord:
    """Stands in for a row that could not be parsed (a malformed JSON line, a CSV row with the
    wrong number of cells), with the start of its text so a preview can show the line itself."""

    message: str
    text: str = ""


class Record(NamedTuple):
    line: int
    row: object


def is_row_numbered(path: str) -> bool:
    """Whether records of this file are numbered by row (Parquet) rather than by line."""
    return str(path).lower().endswith(".parquet")


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Yield every record of a dataset file, chosen by its extension; see the module docstring."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    reader = _READERS.get(ext)
    if reader is None:
        raise ReadError(path, Message("read-unsupported-ext", ext=repr(ext) if ext else Message("read-no-ext"),
                                      supported=", ".join(SUPPORTED_EXTENSIONS)))
    if not os.path.exists(path):
        raise ReadError(path, Message("read-not-found"))
    if not os.path.isfile(path):
        raise ReadError(path, Message("read-not-file"))
    if os.path.getsize(path) == 0:
        raise ReadError(path, Message("read-empty"))
    if reader is not _iter_parquet:
        with open(path, "rb") as f:
            if f.read(2) in _UTF16_BOMS:
                raise ReadError(path, Message("read-utf16"), 1)
    return reader(path)


def _utf8_error(path: str, position: int, byte: int) -> ReadError:
    """`position` is the 0-based byte offset of the bad byte in the file."""
    line, left = 1, position
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, _CHUNK))
            if not chunk:
                break
            line += chunk.count(b"\n")
            left -= len(chunk)
    return ReadError(path, Message("read-not-utf8", byte=f"{byte:02x}", line=line, position=position), line)


def _nul_error(path: str, line: int) -> ReadError:
    # Valid in UTF-8 but never in JSON or CSV text: this is UTF-16 without a byte order mark, or binary.
    return ReadError(path, Message("read-nul", line=line), line)


def _decode_line(path: str, raw: bytes, offset: int, line: int) -> str:
    if b"\0" in raw:
        raise _nul_error(path, line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, offset + e.start, raw[e.start]) from None


def _text_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each physical line, newline kept, BOM stripped."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            start = offset
            offset += len(raw)
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
                start += len(_BOM)
            yield number, _decode_line(path, raw, start, number)


def _start(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _iter_jsonl(path: str) -> Iterator[Record]:
    seen = False
    for number, text in _text_lines(path):
        stripped = text.strip()
        if not stripped:
            continue
        seen = True
        try:
            value, end = _DECODER.raw_decode(stripped)
            if end != len(stripped):
                raise json.JSONDecodeError("Extra data after the JSON value", stripped, end)
        except json.JSONDecodeError as e:
            column = e.pos + 1 + (len(text) - len(text.lstrip()))
            hint: str = ""
            if stripped in ("[", "{"):
                hint = Message("read-hint-document")
            elif "\r" in stripped[:e.pos + 1] and "\n" not in stripped:
                hint = Message("read-hint-cr")
            yield Record(number, BadRecord(Message("read-json-column", column=column, error=json_error(e.msg),
                                                   hint=hint), _start(stripped)))
            continue
        except (ValueError, RecursionError) as e:
            yield Record(number, BadRecord(Message("read-json-decode", reason=_decode_failure(e)), _start(stripped)))
            continue
        yield Record(number, value)
    if not seen:
        raise ReadError(path, Message("read-empty-blank"))


class _JsonStream:
    """A growing window of decoded text over a file, tracking the line number of its start."""

    def __init__(self, path: str, f):
        self.path = path
        self.file = f
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.base = 0  # characters dropped from the front of buf so far
        self.last_newline = -1  # absolute index of the last newline before pos
        self.bytes_read = 0
        self.eof = False
        self.first = True

    def fill(self, at_least: int = _CHUNK) -> bool:
        """Drop consumed text and read at least `at_least` more bytes; False at end of file."""
        if self.eof:
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos:]
        self.pos = 0
        raw = self.file.read(max(at_least, _CHUNK))
        self.eof = not raw
        pending = self.decoder.getstate()[0]
        try:
            text = self.decoder.decode(raw, final=self.eof)
        except UnicodeDecodeError as e:
            offset = self.bytes_read - len(pending) + e.start
            raise _utf8_error(self.path, offset, e.object[e.start]) from None
        self.bytes_read += len(raw)
        if self.first and text:
            self.first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        self.buf += text
        nul = self.buf.find("\0", len(self.buf) - len(text))
        if nul >= 0:
            raise _nul_error(self.path, self.location(nul)[0])
        return not self.eof or bool(text)

    def advance(self, new_pos: int) -> None:
        newlines = self.buf.count("\n", self.pos, new_pos)
        if newlines:
            self.line += newlines
            self.last_newline = self.base + self.buf.rfind("\n", self.pos, new_pos)
        self.pos = new_pos

    def peek(self) -> str:
        """The next non-whitespace character ('' at end of file), skipping whitespace."""
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            while pos < n and buf[pos] in _WHITESPACE:
                pos += 1
            self.advance(pos)
            if pos < n:
                return buf[pos]
            if not self.fill():
                return ""

    def location(self, pos: int) -> tuple[int, int]:
        line = self.line + self.buf.count("\n", self.pos, pos)
        newline = self.buf.rfind("\n", self.pos, pos)
        newline = self.base + newline if newline >= 0 else self.last_newline
        return line, self.base + pos - newline

    def fail(self, message: str, pos: int | None = None) -> ReadError:
        line, column = self.location(self.pos if pos is None else pos)
        return ReadError(self.path, Message("read-json-at", line=line, column=column, error=message), line)

    def expect(self, char: str, what: Message) -> None:
        got = self.peek()
        if got != char:
            raise self.fail(Message("read-expected", what=what, got=_show_char(got)))
        self.advance(self.pos + 1)

    def value(self) -> tuple[int, object]:
        """Decode the JSON value at the cursor; returns (line it starts on, value)."""
        self.peek()
        decode = _DECODER.raw_decode
        while True:
            base = self.base
            try:
                value, end = decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                truncated = e.pos >= len(self.buf) - 8 or e.msg.startswith("Unterminated string")
                # Grow geometrically so a very large value is not re-parsed once per small chunk.
                if truncated and self.fill(len(self.buf)):
                    continue
                # a fill that found the end of the file still dropped the consumed text before the value
                raise self.fail(json_error(e.msg), e.pos - (self.base - base)) from None
            except (ValueError, RecursionError) as e:
                raise self.fail(Message("read-json-decode", reason=_decode_failure(e))) from None
            if end >= len(self.buf) and self.fill(len(self.buf)):
                # A number or literal touching the end of the window may continue in the next chunk.
                continue
            line = self.line
            self.advance(end - (self.base - base))
            return line, value


_DECODER = json.JSONDecoder()


def _decode_failure(e: Exception) -> str:
    """What json raised besides a syntax error: deep nesting or an integer too long to convert."""
    if isinstance(e, RecursionError):
        return Message("read-nested")
    digits = re.search(r"value has (\d+) digits", str(e))
    if digits:
        return Message("read-int-digits", digits=int(digits.group(1)), limit=sys.get_int_max_str_digits())
    return str(e)


def _show_char(char: str) -> str:
    return Message("value-end-of-file") if not char else repr(char)


_WRAPPER_RE = re.compile(r'\{\s*"(%s)"\s*:\s*\[' % "|".join(WRAPPER_KEYS))


def _iter_json(path: str) -> Iterator[Record]:
    with open(path, "rb") as f:
        stream = _JsonStream(path, f)
        first = stream.peek()
        if not first:
            raise ReadError(path, Message("read-empty-whitespace"))
        if first == "[":
            stream.advance(stream.pos + 1)
            yield from _json_array(stream)
            if stream.peek():
                raise stream.fail(Message("read-after-array"))
            return
        if first == "{":
            while len(stream.buf) - stream.pos < 4096 and stream.fill():
                pass
            match = _WRAPPER_RE.match(stream.buf, stream.pos)
            if match:
                stream.advance(match.end())
                yield from _json_array(stream)
                _skip_object_rest(stream)
                if stream.peek():
                    raise stream.fail(Message("read-after-object"))
                return
        while stream.peek():
            yield Record(*stream.value())


def _json_array(stream: _JsonStream) -> Iterator[Record]:
    """Elements of an array whose '[' has been consumed; consumes the closing ']'."""
    if stream.peek() == "]":
        raise ReadError(stream.path, Message("read-empty-array"), stream.line)
    while True:
        yield Record(*stream.value())
        got = stream.peek()
        if got == "]":
            stream.advance(stream.pos + 1)
            return
        if got != ",":
            raise stream.fail(Message("read-array-separator", got=_show_char(got)))
        stream.advance(stream.pos + 1)


def _skip_object_rest(stream: _JsonStream) -> None:
    """Skip the remaining members of an object (after a member's value) up to its closing '}'."""
    while True:
        got = stream.peek()
        if got == "}":
            stream.advance(stream.pos + 1)
            return
        if got != ",":
            raise stream.fail(Message("read-object-separator", got=_show_char(got)))
        stream.advance(stream.pos + 1)
        if stream.peek() != '"':
            raise stream.fail(Message("read-object-key"))
        stream.value()
        stream.expect(":", Message("read-colon-after-key"))
        stream.value()


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_turn(value: object) -> bool:
    return isinstance(value, dict) and ({"from", "value"} <= value.keys() or {"role", "content"} <= value.keys())


# Columns whose text cells hold JSON in CSV/Parquet exports, with what the decoded value must be
# for the decoding to be kept: a plain-text cell that merely starts with '[' stays text.
_STRUCTURED_CELLS: dict[str, Callable[[object], bool]] = {
    "messages": lambda v: isinstance(v, list),
    "conversations": lambda v: isinstance(v, list),
    "history": lambda v: isinstance(v, list),
    "label": lambda v: isinstance(v, list),
    "sort": lambda v: isinstance(v, list),
    "response": lambda v: isinstance(v, list),
    "src": _is_str_list,
    "tgt": _is_str_list,
    "chosen": _is_turn,
    "rejected": _is_turn,
}


def _decode_cell(column: str, cell: object) -> object:
    accept = _STRUCTURED_CELLS.get(column)
    if accept is None or not isinstance(cell, str):
        return cell
    text = cell.strip()
    if not text or text[0] not in "[{":
        return cell
    try:
        value = json.loads(text)
    except ValueError:
        return cell
    return value if accept(value) else cell


def _iter_csv(path: str) -> Iterator[Record]:
    # Long conversations easily exceed csv's default 128 KiB cell limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = _text_lines(path)
    # csv's own line counter counts the physical lines handed to it, which are the file's lines.
    reader = csv.reader((text for _, text in lines), strict=True)
    previous = 0
    try:
        header = next(reader, None)
        if header is None:
            raise ReadError(path, Message("read-empty"))
        header = [name.strip() for name in header]
        if not any(header):
            raise ReadError(path, Message("read-csv-header-empty"), 1)
        twice = next((name for i, name in enumerate(header) if name and name in header[:i]), None)
        if twice is not None:
            raise ReadError(path, Message("read-csv-column-twice", column=repr(twice)), 1)
        previous = reader.line_num
        seen = False
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as e:
                line = previous + 1
                previous = reader.line_num
                seen = True
                yield Record(line, BadRecord(Message("read-csv-malformed", error=str(e))))
                continue
            if cells is None:
                break
            line = previous + 1
            previous = reader.line_num
            if not cells:
                continue
            seen = True
            if len(cells) != len(header):
                yield Record(line, BadRecord(Message("read-csv-cells", cells=len(cells), columns=len(header)),
                                             _start(",".join(cells))))
                continue
            yield Record(line, {name: _decode_cell(name, cell) for name, cell in zip(header, cells)})
    except csv.Error as e:
        raise ReadError(path, Message("read-csv-near", line=reader.line_num, error=str(e)), reader.line_num) from None
    if not seen:
        raise ReadError(path, Message("read-csv-no-rows"), 1)


def _iter_parquet(path: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise ReadError(path, Message("read-parquet-unreadable", error=str(e))) from None
    number = 0
    with parquet:
        batches = parquet.iter_batches(batch_size=1024)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                raise ReadError(path, Message("read-parquet-after", row=number, error=str(e))) from None
            if batch is None:
                break
            for row in batch.to_pylist():
                number += 1
                yield Record(number, {name: _decode_cell(name, cell) for name, cell in row.items()})
    if number == 0:
        raise ReadError(path, Message("read-parquet-no-rows"))


_READERS: dict[str, Callable[[str], Iterator[Record]]] = {
    ".jsonl": _iter_jsonl,
    ".ndjson": _iter_jsonl,
    ".json": _iter_json,
    ".csv": _iter_csv,
    ".parquet": _iter_parquet,
}
