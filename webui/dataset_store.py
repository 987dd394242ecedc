"""Uploaded datasets: stored under WORKDIR/datasets/<id>/, listed in studio.db, checked on arrival.

A dataset's id is the start of its content's SHA-256, so uploading the same file twice keeps one
copy. Its directory holds the file under a sanitised name and meta.json: the validation report of
`trainer.data.validate` (format, counts, the first issues with line and field) and the character
statistics, plus token statistics per (model, max_seq_len) once the tokenizer subprocess has
counted them. Nothing here imports gradio or paddle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from plumbing import sqlite
from plumbing.files import atomic_write_json
from plumbing.locking import exclusive
from plumbing.paths import REPO_ROOT
from trainer.data.formats import FORMATS, try_convert
from trainer.data.readers import SUPPORTED_EXTENSIONS, DataError, iter_records
from trainer.data.stats import StatsCollector
from trainer.data.validate import validate_file
from trainer.messages import Message
from webui.i18n import Phrase

DATASET_ID_RE = re.compile(r"[0-9a-f]{16}")
TOKEN_COUNT_TIMEOUT_S = 1800
_NAME_MAX = 120  # bytes of UTF-8: file systems limit names to 255 bytes, and CJK takes 3 a character

# Each entry upgrades the datasets schema by one version (plumbing.sqlite.migrate); append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            file TEXT NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL,
            format TEXT,
            kind TEXT,
            rows_total INTEGER NOT NULL DEFAULT 0,
            rows_valid INTEGER NOT NULL DEFAULT 0,
            rows_invalid INTEGER NOT NULL DEFAULT 0,
            ok INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )""",
    ],
]


class DatasetError(Exception):
    """An upload or dataset operation that cannot be done, with the reason in words: a catalogue
    Phrase where the page shows it (str() is its English), so it reads in the chosen language."""

    def __init__(self, reason: str | Phrase):
        self.reason = reason
        super().__init__(reason.text("en") if isinstance(reason, Phrase) else reason)

    def text(self, lang: str) -> str:
        return self.reason.text(lang) if isinstance(self.reason, Phrase) else str(self.reason)


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str  # the sanitised file name, as stored
    path: Path
    size: int
    created: float
    format: str | None
    kind: str | None
    rows_total: int
    rows_valid: int
    rows_invalid: int
    ok: bool
    error: str | None  # why the file as a whole cannot be read (unknown format, not UTF-8, ...)

    @property
    def meta_path(self) -> Path:
        return self.path.parent / "meta.json"


def sanitise_name(name: str) -> str:
    """A safe file name from whatever the browser sent: no directories, no leading dots, no control
    or shell characters; the extension must be one the readers support."""
    base = unicodedata.normalize("NFKC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    ext = ext.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise DatasetError(Phrase("msg-upload-type", {"name": repr(base or name),
                                                      "ext": ext or Phrase("msg-upload-no-ext"),
                                                      "supported": ", ".join(SUPPORTED_EXTENSIONS)}))
    return (safe_stem(stem, _NAME_MAX - len(ext)) or "data") + ext


def safe_stem(text: str, max_bytes: int = _NAME_MAX) -> str:
    """`text` as the stem of a file name: runs of characters other than letters, digits, `_`, `.`
    and `-` become `_`, no dot or dash at either end, and at most `max_bytes` bytes of UTF-8 (file
    systems count bytes, and CJK takes 3 a character); empty when nothing is left."""
    stem = re.sub(r"[^\w.\-]+", "_", text).strip("._-")
    return stem.encode()[:max_bytes].decode(errors="ignore")


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class DatasetStore:
    """Datasets of one WORKDIR. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, workdir: str | os.PathLike, max_bytes: int):
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "datasets"
        self.db_path = self.workdir / "studio.db"
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def _db(self):
        return sqlite.connect(self.db_path)

    def _migrate(self) -> None:
        try:
            sqlite.migrate(self.db_path, "datasets", MIGRATIONS)
        except sqlite.SchemaTooNew as e:
            raise DatasetError(str(e)) from None

    def _dataset(self, row: sqlite3.Row) -> Dataset:
        return Dataset(
            id=row["id"], name=row["name"], path=self.root / row["id"] / row["file"], size=row["size"],
            created=row["created"], format=row["format"], kind=row["kind"], rows_total=row["rows_total"],
            rows_valid=row["rows_valid"], rows_invalid=row["rows_invalid"], ok=bool(row["ok"]),
            error=row["error"],
        )

    # -- add ------------------------------------------------------------------------------------

    def add(self, source: str | os.PathLike, original_name: str) -> Dataset:
        """Copy an uploaded file into the store, validate it and record it; the same content uploaded
        again returns the dataset already stored."""
        name = sanitise_name(original_name)
        if os.path.islink(source):
            raise DatasetError(Phrase("msg-upload-link", {"name": name}))
        size = os.path.getsize(source)
        if size > self.max_bytes:
            raise DatasetError(Phrase("msg-upload-too-big", {"name": name, "size": human_size(size),
                                                             "limit": human_size(self.max_bytes)}))
        if size == 0:
            raise DatasetError(Phrase("msg-upload-empty", {"name": name}))
        incoming = self.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=incoming, suffix=os.path.splitext(name)[1])
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            dataset_id = digest.hexdigest()[:16]
            # the same content uploaded twice at once: the second waits and finds the first's record
            # (the lock is the store directory's own, so it leaves no file behind)
            with exclusive(self.root):
                existing = self.find(dataset_id)
                if existing is not None:
                    return existing
                directory = self.root / dataset_id
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir()
                os.replace(tmp, directory / name)
                self._check_and_record(dataset_id, directory, name, size)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.get(dataset_id)

    def _check_and_record(self, dataset_id: str, directory: Path, name: str, size: int) -> None:
        try:
            meta = check_file(directory / name)
            meta.update(name=name, size=size, tokens={})
            atomic_write_json(directory / "meta.json", meta)
            with self._db() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO datasets (id, name, file, size, created, format, kind, rows_total, "
                    "rows_valid, rows_invalid, ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (dataset_id, name, name, size, time.time(), meta.get("format"), meta.get("kind"),
                     meta.get("rows_total", 0), meta.get("rows_valid", 0), meta.get("rows_invalid", 0),
                     int(bool(meta.get("ok"))), meta.get("error")),
                )
        except BaseException:
            # a check that dies (out of memory, interrupted) leaves no directory without a record
            shutil.rmtree(directory, ignore_errors=True)
            raise

    # -- read -----------------------------------------------------------------------------------

    def list(self) -> list[Dataset]:
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM datasets ORDER BY created DESC, id").fetchall()
        return [self._dataset(row) for row in rows]

    def find(self, dataset_id: str) -> Dataset | None:
        if not isinstance(dataset_id, str) or not DATASET_ID_RE.fullmatch(dataset_id):
            return None
        with self._db() as conn:
            row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        return self._dataset(row) if row else None

    def get(self, dataset_id: str) -> Dataset:
        found = self.find(dataset_id)
        if found is None:
            raise DatasetError(f"no dataset {dataset_id!r}")
        return found

    def by_path(self, path: str | os.PathLike) -> Dataset | None:
        """The stored dataset a config path points at, or None for a file outside the store."""
        resolved = Path(path).expanduser().resolve()
        if resolved.parent.parent != self.root:
            return None
        found = self.find(resolved.parent.name)
        return found if found is not None and found.path == resolved else None

    def meta(self, dataset: Dataset) -> dict:
        try:
            return json.loads(dataset.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{dataset.name}: cannot read its report {dataset.meta_path}: {e}") from e

    def save_tokens(self, dataset: Dataset, model: str, max_seq_len: int, tokens: dict) -> None:
        meta = self.meta(dataset)
        meta.setdefault("tokens", {})[token_key(model, max_seq_len)] = tokens
        atomic_write_json(dataset.meta_path, meta)

    def delete(self, dataset_id: str) -> None:
        dataset = self.get(dataset_id)
        shutil.rmtree(dataset.path.parent, ignore_errors=True)
        with self._db() as conn:
            conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))


def token_key(model: str, max_seq_len: int) -> str:
    return f"{model}|{int(max_seq_len)}"


def check_file(path: Path, max_issues: int = 500) -> dict:
    """Validate a file in this process (no tokenizer): the report of `trainer data check --json`
    without token counts, or {"ok": False, "error": ...} when the file as a whole is unusable."""
    collector = StatsCollector()
    try:
        report = validate_file(path, "auto", max_issues_kept=max_issues, on_example=collector.add)
    except DataError as e:
        return {**e.to_dict(), "ok": False, "error": e.summary or str(e), "rows_total": 0, "rows_valid": 0,
                "rows_invalid": 0}
    return {**report.to_dict(), "stats": collector.result()}


def preview_rows(dataset: Dataset, page: int, page_size: int) -> list[dict]:
    """Rows `page * page_size` onwards as they will be trained on, each with its line, whether it is
    valid, and its issues (DataIssues); reading stops at the end of the page."""
    fmt = dataset.format if dataset.format in FORMATS else None
    try:
        records = islice(iter_records(dataset.path), page * page_size, (page + 1) * page_size)
        out = []
        for line, row in records:
            if fmt is None:
                out.append({"line": line, "ok": False, "raw": row, "issues": []})
                continue
            example, issues = try_convert(row, fmt, dataset.name, line)
            out.append({"line": line, "ok": example is not None, "example": example, "raw": row, "issues": issues})
        return out
    except DataError as e:
        raise DatasetError(str(e)) from e



def count_tokens(store: DatasetStore, dataset: Dataset, model: str, max_seq_len: int,
                 python: str | None = None) -> dict:
    """Token statistics of a dataset with `model`'s tokenizer and chat template, cached in meta.json.

    The tokenizer needs paddle, which the UI process never imports, so this runs
    `python -m trainer data check FILE --model M --max-seq-len N --json` and reads its JSON.
    """
    key = token_key(model, max_seq_len)
    cached = store.meta(dataset).get("tokens", {}).get(key)
    if cached is not None:
        return cached
    argv = [python or sys.executable, "-m", "trainer", "data", "check", str(dataset.path), "--json",
            "--model", model, "--max-seq-len", str(int(max_seq_len))]
    if dataset.format in FORMATS:
        argv += ["--format", dataset.format]
    env = dict(os.environ, ERNIE_STUDIO_HOME=str(store.workdir))
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=TOKEN_COUNT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DatasetError(Phrase("msg-tokens-timeout", {"name": dataset.name, "seconds": TOKEN_COUNT_TIMEOUT_S})) \
            from None
    report = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                continue
            break
    tokens = (report or {}).get("stats", {}).get("tokens") if report else None
    if tokens is None:
        reason = (report or {}).get("error") or _last_line(proc.stderr) or f"exit status {proc.returncode}"
        if (report or {}).get("error_i18n"):
            reason = Message.from_json(report["error_i18n"])
        raise DatasetError(Phrase("msg-tokens-failed", {"name": dataset.name, "model": model, "reason": reason}))
    store.save_tokens(dataset, model, max_seq_len, tokens)
    return tokens


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
