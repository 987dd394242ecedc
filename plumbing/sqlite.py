"""The SQLite file the job store and the dataset store share (WORKDIR/studio.db): connections with
a busy timeout, immediate transactions, and per-component schema migrations."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing, contextmanager
from typing import Iterator, Sequence

BUSY_TIMEOUT_MS = 10_000


class SchemaTooNew(Exception):
    """The database was written by a newer version of the code."""


@contextmanager
def connect(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """An autocommit connection whose rows read by column name; closed when the block ends."""
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    with closing(conn):
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield conn


@contextmanager
def transaction(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the block raises: writers never interleave."""
    with connect(db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def migrate(db_path: str | os.PathLike[str], component: str, migrations: Sequence[Sequence[str]]) -> None:
    """Bring `component`'s tables up to `len(migrations)`, each entry upgrading by one version.

    Entries are appended, never edited, so an old store migrates. One version row per component
    lets several stores keep their tables in one file (WAL, so readers never wait for a writer).
    """
    with connect(db_path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    with transaction(db_path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
        version = row["version"] if row else 0
        if version > len(migrations):
            raise SchemaTooNew(f"{db_path} has {component} schema version {version}, newer than this code "
                               f"({len(migrations)}); upgrade ERNIE Studio")
        for statements in migrations[version:]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(
            "INSERT INTO schema_version (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, len(migrations)),
        )
