"""The SQLite store's file: its schema and migrations, how the file is created and put in
WAL mode, and how SQLite failures are worded for an operator.

The file is created private (0600) before SQLite touches it, so the -wal and -shm files
that copy its permissions are private too. Migrations run in order, all pending ones in
the caller's transaction; the version is written even when unchanged, so a read-only file
fails at start-up rather than at the first token refresh.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from monitor.errors import StoreError

BUSY_TIMEOUT_SECONDS: Final = 10.0
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # truncate the WAL back to this after checkpoints

# Ordered migrations: version N is reached by running _MIGRATIONS[N-1], all pending ones in
# one transaction. Append new tuples; never edit a released one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # key_id (hex) is in clear beside the blob so start-up checks and rotation can ask
        # "which keys are still in use" from an index instead of reading every blob.
        """CREATE TABLE tokens (
            connection_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            key_id TEXT NOT NULL,
            blob BLOB NOT NULL,
            access_expires_at REAL NOT NULL,
            refresh_expires_at REAL,
            updated_at REAL NOT NULL)""",
        "CREATE INDEX tokens_by_key ON tokens (key_id)",
        "CREATE TABLE health (connection_id TEXT PRIMARY KEY, json TEXT NOT NULL)",
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection_id TEXT NOT NULL,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            duration REAL,
            status INTEGER)""",
        "CREATE INDEX history_by_connection ON history (connection_id, id)",
        """CREATE TABLE alerts (
            connection_id TEXT NOT NULL,
            alert TEXT NOT NULL,
            json TEXT NOT NULL,
            PRIMARY KEY (connection_id, alert))""",
        """CREATE TABLE outbox (
            key TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL)""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# What to do about each SQLite primary result code an operator can meet.
_ADVICE: Final = {
    sqlite3.SQLITE_BUSY: "Another process held the write lock too long; is a second snowmon "
    "using this file?",
    sqlite3.SQLITE_READONLY: "The file or its directory is read-only for this user: fix the "
    "permissions or the mount, or point daemon.store elsewhere.",
    sqlite3.SQLITE_IOERR: "The disk reported an I/O error: check the device and kernel log.",
    sqlite3.SQLITE_CORRUPT: "The file is corrupt: restore it from a backup, or move it aside "
    "to start afresh (connections will be granted again).",
    sqlite3.SQLITE_FULL: "The disk is full: free space on it or move the store elsewhere.",
    sqlite3.SQLITE_CANTOPEN: "Check that the directory exists and this user can write to it.",
    sqlite3.SQLITE_NOTADB: "Check daemon.store, or move the file aside.",
}


def store_error(path: Path, action: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    advice = _ADVICE.get(code & 0xFF, "") if isinstance(code, int) else ""
    return StoreError(f"SQLite store {path}: {action} failed: {exc}. {advice}".rstrip())


def prepare_file(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"SQLite store {path} is a directory; name a file inside it")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created private before SQLite touches it: the -wal and -shm files copy the
        # main file's permissions.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError as exc:
        if exc.filename != str(path):
            raise StoreError(
                f"SQLite store {path}: cannot create its directory: {exc.filename} "
                "exists and is not a directory"
            ) from None
    except OSError as exc:
        raise StoreError(
            f"SQLite store {path}: cannot create it: {exc.strerror} ({exc.filename}). "
            "Check that the directory exists and this user can write to it."
        ) from None


def enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise StoreError(f"SQLite store {path}: cannot use WAL (got {mode})")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION; `conn` is inside a write transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    current = 0 if row is None else int(row[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"SQLite store {path} has schema version {current}, newer than "
            f"this snowmon understands ({SCHEMA_VERSION}); upgrade snowmon"
        )
    for statements in _MIGRATIONS[current:]:
        for statement in statements:
            conn.execute(statement)
    # Written even when unchanged: a read-only file or mount then fails here, at
    # start-up, rather than at the first token refresh.
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
