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
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from plumbing import sqlite
from plumbing.files import atomic_write_json, human_size
from plumbing.locking import exclusive
from plumbing.paths import REPO_ROOT
from trainer.data.check import image_limits
from trainer.data.dataset_zip import ZipLimits, ZipRefused, unpack
from trainer.data.formats import FORMATS, try_convert
from trainer.data.images import ImageContext
from trainer.data.readers import SUPPORTED_EXTENSIONS, DataError, iter_records
from trainer.data.stats import StatsCollector
from trainer.data.validate import validate_file
from trainer.data.vl_formats import image_references
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
        """A Phrase of the UI's catalogue or a trainer Message (a zip's refusal) in `lang`."""
        return self.reason.text(lang) if isinstance(self.reason, (Phrase, Message)) else str(self.reason)


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
    name = (safe_stem(stem, _NAME_MAX - len(ext)) or "data") + ext
    # the dataset's folder keeps its report under this name
    return "data_" + name if name == "meta.json" else name


def safe_stem(text: str, max_bytes: int = _NAME_MAX) -> str:
    """`text` as the stem of a file name: runs of characters other than letters, digits, `_`, `.`
    and `-` become `_`, no dot or dash at either end, and at most `max_bytes` bytes of UTF-8 (file
    systems count bytes, and CJK takes 3 a character); empty when nothing is left."""
    stem = re.sub(r"[^\w.\-]+", "_", text).strip("._-")
    return stem.encode()[:max_bytes].decode(errors="ignore")


class DatasetStore:
    """Datasets of one WORKDIR. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, workdir: str | os.PathLike, max_bytes: int):
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "datasets"
        self.db_path = self.workdir / "studio.db"
        self.max_bytes = max_bytes
        # a zip may unpack to four times the upload limit: its data file compresses, its images do not
        self.zip_limits = ZipLimits(max_total_bytes=4 * max_bytes)
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
        """Copy an uploaded file (a data file, or a zip of one with its images) into the store,
        validate it and record it; the same content uploaded again returns the dataset already
        stored."""
        if original_name.lower().endswith(".zip"):
            return self.add_zip(source, original_name)
        name = sanitise_name(original_name)
        size = self._check_upload(source, name)
        folder = self._new_folder()
        try:
            digest = _copy(source, folder / name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self._place(digest.hexdigest()[:16], folder, name, size)

    def add_zip(self, source: str | os.PathLike, original_name: str) -> Dataset:
        """A zip holding one data file and its images (trainer/data/dataset_zip.py checks and unpacks
        it); meta.json counts the image files (`images`) and names what was left out (`left_out`)."""
        shown = original_name.replace("\\", "/").rsplit("/", 1)[-1]
        self._check_upload(source, shown)
        digest = _copy(source, None)
        try:
            unpacked = unpack(source, shown, self._incoming(), self.zip_limits)
        except ZipRefused as e:
            raise DatasetError(e.message) from None
        try:
            name = sanitise_name(Path(unpacked.data).name)
            os.replace(unpacked.folder / unpacked.data, unpacked.folder / name)
        except BaseException:
            shutil.rmtree(unpacked.folder, ignore_errors=True)
            raise
        return self._place(digest.hexdigest()[:16], unpacked.folder, name, unpacked.size,
                           {"images": unpacked.images, "left_out": unpacked.left_out})

    def add_with_images(self, source: str | os.PathLike, original_name: str,
                        images: list[tuple[str | os.PathLike, str]]) -> Dataset:
        """A data file dropped together with its image files ((path, name) each): every image goes
        where the data file names a file of its name (`images/cat.png` for a dropped `cat.png`),
        else beside the data file."""
        name = sanitise_name(original_name)
        size = self._check_upload(source, name)
        placed: dict[str, str | os.PathLike] = {}
        for image, image_name in images:
            base = image_name.replace("\\", "/").rsplit("/", 1)[-1]
            if base in placed:
                raise DatasetError(Phrase("msg-upload-image-twice", {"name": base}))
            size += self._check_upload(image, base)
            placed[base] = image
        folder = self._new_folder()
        try:
            digest = _copy(source, folder / name)
            wanted = _wanted_places(folder / name)
            for base in sorted(placed):
                image_digest = _copy(placed[base], None)
                digest.update(f"\0{base}\0".encode() + image_digest.digest())
                for relative in wanted.get(base, [base]):
                    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(placed[base], folder / relative)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self._place(digest.hexdigest()[:16], folder, name, size, {"images": len(placed)})

    def _incoming(self) -> Path:
        incoming = self.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        return incoming

    def _new_folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self._incoming(), prefix="upload-"))

    def _check_upload(self, source: str | os.PathLike, name: str) -> int:
        """The upload's size, once it is known to be a plain file within the limit and not empty."""
        if os.path.islink(source):
            raise DatasetError(Phrase("msg-upload-link", {"name": name}))
        size = os.path.getsize(source)
        if size > self.max_bytes:
            raise DatasetError(Phrase("msg-upload-too-big", {"name": name, "size": human_size(size),
                                                             "limit": human_size(self.max_bytes)}))
        if size == 0:
            raise DatasetError(Phrase("msg-upload-empty", {"name": name}))
        return size

    def _place(self, dataset_id: str, folder: Path, name: str, size: int, extra: dict | None = None) -> Dataset:
        """Rename a folder made under .incoming into place as dataset `dataset_id` and record it;
        the folder is gone afterwards whatever happens."""
        try:
            # the same content uploaded twice at once: the second waits and finds the first's record
            # (the lock is the store directory's own, so it leaves no file behind)
            with exclusive(self.root):
                existing = self.find(dataset_id)
                if existing is not None:
                    return existing
                directory = self.root / dataset_id
                shutil.rmtree(directory, ignore_errors=True)
                os.replace(folder, directory)
                self._check_and_record(dataset_id, directory, name, size, extra or {})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return self.get(dataset_id)

    def _check_and_record(self, dataset_id: str, directory: Path, name: str, size: int, extra: dict) -> None:
        try:
            meta = check_file(directory / name)
            meta.update(name=name, size=size, tokens={}, **extra)
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


def _copy(source: str | os.PathLike, target: Path | None):
    """The SHA-256 of a file, copied to `target` on the way when one is given."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, (open(target, "xb") if target is not None else nullcontext()) as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
    return digest


def _wanted_places(data: Path) -> dict[str, list[str]]:
    """Image file name -> the relative paths the data file looks for it under (inside its folder)."""
    wanted: dict[str, set[str]] = {}
    try:
        for _, row in iter_records(data):
            for ref in image_references(row):
                relative = os.path.normpath(ref.replace("\\", "/"))
                if not os.path.isabs(relative) and not relative.startswith(".."):
                    wanted.setdefault(os.path.basename(relative), set()).add(relative)
    except DataError:
        return {}  # an unreadable data file: its report says why, and the images stay beside it
    return {name: sorted(paths) for name, paths in wanted.items()}


def check_file(path: Path, max_issues: int = 500) -> dict:
    """Validate a file in this process (no tokenizer): the report of `trainer data check --json`
    without token counts, or {"ok": False, "error": ...} when the file as a whole is unusable.
    Images are held to the schema's default vl limits (a run re-checks them with its own)."""
    limits = image_limits()
    collector = StatsCollector(limits=limits)
    try:
        report = validate_file(path, "auto", max_issues_kept=max_issues, on_example=collector.add, limits=limits)
    except DataError as e:
        return {**e.to_dict(), "ok": False, "error": e.summary or str(e), "rows_total": 0, "rows_valid": 0,
                "rows_invalid": 0}
    return {**report.to_dict(), "stats": collector.result()}


def preview_rows(dataset: Dataset, page: int, page_size: int) -> list[dict]:
    """Rows `page * page_size` onwards as they will be trained on, each with its line, whether it is
    valid, and its issues (DataIssues); reading stops at the end of the page."""
    fmt = dataset.format if dataset.format in FORMATS else None
    images = ImageContext(str(dataset.path.parent), image_limits())
    try:
        records = islice(iter_records(dataset.path), page * page_size, (page + 1) * page_size)
        out = []
        for line, row in records:
            if fmt is None:
                out.append({"line": line, "ok": False, "raw": row, "issues": []})
                continue
            example, issues = try_convert(row, fmt, dataset.name, line, images)
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
