"""The SQLite store: the embedded default, one file in WAL mode.

Every database call runs on one dedicated worker thread that owns the only connection,
so the event loop never waits on the disk and SQLite never sees two threads. Writes are
explicit `BEGIN IMMEDIATE` transactions. Token, alert and outbox commits are fsync'd
(`synchronous=FULL`); health and history, rewritten all day and harmless to lose to a
power cut, commit with `NORMAL`, which in WAL mode still never corrupts the file.

Token saves that arrive while the worker is busy are committed together (group commit):
each keeps its own version check and result, and all share one fsync. A fleet granting
or refreshing in bursts then costs one disk flush per burst, not one per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from monitor.clock import Clock, SystemClock
from monitor.errors import StaleWriteError, StoreError, StoreKeyError
from monitor.model import (
    AlertRecord,
    Health,
    HistoryEntry,
    HistoryKind,
    StoredTokens,
    TokenSet,
)
from monitor.store.codec import (
    decode_alert,
    decode_health,
    decode_tokens,
    encode_alert,
    encode_health,
    encode_tokens,
)
from monitor.store.crypto import Keyring, blob_key_id

T = TypeVar("T")
Row = tuple[Any, ...]

BUSY_TIMEOUT_SECONDS: Final = 10.0
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # truncate the WAL back to this after checkpoints
_REENCRYPT_BATCH: Final = 500

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


def _store_error(path: Path, action: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    advice = _ADVICE.get(code & 0xFF, "") if isinstance(code, int) else ""
    return StoreError(f"SQLite store {path}: {action} failed: {exc}. {advice}".rstrip())


# Blobs are read through CAST(blob AS BLOB): a value rewritten as TEXT by hand or by
# corruption then fails authentication cleanly instead of as a UTF-8 decoding error.


def _aad(connection_id: str) -> bytes:
    return b"snowmon:tokens:" + connection_id.encode("utf-8")


def _what(connection_id: str) -> str:
    return f"token of connection {connection_id!r}"


@dataclass(slots=True)
class _PendingSave:
    connection_id: str
    tokens: TokenSet
    expected_version: int
    future: asyncio.Future[int]


def _settle(future: asyncio.Future[int], outcome: int | BaseException) -> None:
    if future.done():  # the caller was cancelled; the write itself still happened
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class SqliteStore:
    """`Store` on one SQLite file. Call `open()` before anything else."""

    def __init__(
        self,
        path: Path,
        keyring: Keyring,
        *,
        history_per_connection: int = 50,
        clock: Clock | None = None,
    ) -> None:
        if history_per_connection < 1:
            raise ValueError("history_per_connection must be at least 1")
        self._path = Path(path)
        self._keyring = keyring
        self._keep = history_per_connection
        self._clock: Clock = clock or SystemClock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._synchronous_full = False
        self._saves: queue.SimpleQueue[_PendingSave] = queue.SimpleQueue()
        # Set by the loop when it submits a flush, cleared by the worker before it drains
        # the queue; a plain bool is enough because the GIL makes each access atomic and a
        # spurious extra flush finds an empty queue.
        self._flush_submitted = False

    @property
    def path(self) -> Path:
        return self._path

    # -- plumbing -------------------------------------------------------------------

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, action, fn)

    def _guarded(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise _store_error(self._path, action, exc) from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        if durable != self._synchronous_full:
            # Per connection and cheap; set before BEGIN so it governs the commit ahead.
            conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
            self._synchronous_full = durable
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    async def _write(
        self, action: str, sql: str, rows: Callable[[], list[Row]], *, durable: bool
    ) -> None:
        """Run `sql` over every row in one transaction; rows are built on the worker, so
        encoding a batch of 1000 snapshots does not hold up the event loop."""

        def write() -> None:
            batch = rows()
            with self._transaction(durable=durable) as conn:
                conn.executemany(sql, batch)

        await self._call(action, write)

    async def _read(
        self, action: str, sql: str, params: Row, convert: Callable[[Iterable[Row]], T]
    ) -> T:
        """Query and convert on the worker: decrypting and decoding stay off the loop."""
        return await self._call(action, lambda: convert(self._db().execute(sql, params)))

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            raise StoreError(f"SQLite store {self._path} is already open")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="snowmon-sqlite")
        try:
            await self._call("open", self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _prepare_file(self) -> None:
        path = self._path
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

    def _open_sync(self) -> None:
        self._prepare_file()
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            self._synchronous_full = True
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            self._conn = conn
            self._migrate()
            self._check_keyring()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite store {self._path}: cannot use WAL (got {mode})")

    def _migrate(self) -> None:
        with self._transaction(durable=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {self._path} has schema version {current}, newer than "
                    f"this snowmon understands ({SCHEMA_VERSION}); upgrade snowmon"
                )
            for statements in _MIGRATIONS[current:]:
                for statement in statements:
                    conn.execute(statement)
            # Written even when unchanged: a read-only file or mount then fails here, at
            # start-up, rather than at the first token refresh.
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _check_keyring(self) -> None:
        # A wrong key must stop start-up with a clear message, not surface later as one
        # unreadable token per connection: check every key id in use, decrypt one of each.
        conn = self._db()
        for (key_id,) in conn.execute("SELECT DISTINCT key_id FROM tokens").fetchall():
            if not self._keyring.has_key(key_id):
                raise StoreKeyError(
                    f"SQLite store {self._path}: stored tokens were encrypted with key id "
                    f"{key_id} which is not in encryption_keys (it holds "
                    f"{', '.join(self._keyring.key_ids)}); add the old key after the new one "
                    "to rotate"
                )
            cid, blob = conn.execute(
                "SELECT connection_id, CAST(blob AS BLOB) FROM tokens WHERE key_id = ? LIMIT 1",
                (key_id,),
            ).fetchone()
            self._keyring.decrypt(blob, _aad(cid), what=_what(cid))

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        self._executor = None  # refuse new calls; queued ones still run before the close
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._guarded, "close", self._close_sync)
        finally:
            executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        self._flush_saves()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def ping(self) -> None:
        await self._call("ping", lambda: self._db().execute("SELECT 1").fetchone())

    # -- tokens ---------------------------------------------------------------------

    def _open_tokens(self, cid: str, version: int, blob: bytes) -> StoredTokens:
        what = _what(cid)
        plaintext = self._keyring.decrypt(blob, _aad(cid), what=what)
        return StoredTokens(decode_tokens(plaintext, what=what), version)

    async def load_tokens(self, connection_id: str) -> StoredTokens | None:
        return await self._read(
            "load tokens",
            "SELECT version, CAST(blob AS BLOB) FROM tokens WHERE connection_id = ?",
            (connection_id,),
            lambda rows: next(
                (self._open_tokens(connection_id, version, blob) for version, blob in rows), None
            ),
        )

    async def load_all_tokens(self) -> dict[str, StoredTokens]:
        return await self._read(
            "load tokens",
            "SELECT connection_id, version, CAST(blob AS BLOB) FROM tokens",
            (),
            lambda rows: {cid: self._open_tokens(cid, ver, blob) for cid, ver, blob in rows},
        )

    async def save_tokens(
        self, connection_id: str, tokens: TokenSet, *, expected_version: int
    ) -> int:
        executor = self._executor
        if executor is None:
            raise StoreError(f"SQLite store {self._path} is not open")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._saves.put(_PendingSave(connection_id, tokens, expected_version, future))
        if not self._flush_submitted:
            self._flush_submitted = True
            # The returned concurrent future carries nothing: _flush_saves never raises and
            # settles every caller's own future.
            executor.submit(self._flush_saves)
        return await future

    def _flush_saves(self) -> None:
        self._flush_submitted = False
        batch: list[_PendingSave] = []
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(self._saves.get_nowait())
        if not batch:
            return
        outcomes: list[int | BaseException] = [0] * len(batch)  # 0: not settled yet
        sealed: list[tuple[int, _PendingSave, bytes]] = []
        for index, item in enumerate(batch):
            try:
                blob = self._keyring.encrypt(encode_tokens(item.tokens), _aad(item.connection_id))
            except Exception as exc:  # noqa: BLE001 handed to that caller, the batch goes on
                outcomes[index] = exc
            else:
                sealed.append((index, item, blob))
        written: list[tuple[int, int | BaseException]]
        try:
            with self._transaction(durable=True) as conn:
                now = self._clock.now()
                written = [
                    (i, self._write_tokens(conn, item, blob, now)) for i, item, blob in sealed
                ]
        except sqlite3.Error as exc:
            failure = _store_error(self._path, "save tokens", exc)
            written = [(i, failure) for i, _, _ in sealed]
        except Exception as exc:  # noqa: BLE001 every waiting caller must hear of it
            written = [(i, exc) for i, _, _ in sealed]
        for index, outcome in written:
            outcomes[index] = outcome
        for item, outcome in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
                item.future.get_loop().call_soon_threadsafe(_settle, item.future, outcome)

    def _write_tokens(
        self, conn: sqlite3.Connection, item: _PendingSave, blob: bytes, now: float
    ) -> int | StaleWriteError:
        cid, tokens, expected = item.connection_id, item.tokens, item.expected_version
        values = (blob_key_id(blob), blob, tokens.access_expires_at, tokens.refresh_expires_at)
        if expected == 0:
            cursor = conn.execute(
                "INSERT INTO tokens (connection_id, version, key_id, blob, access_expires_at,"
                " refresh_expires_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?)"
                " ON CONFLICT (connection_id) DO NOTHING",
                (cid, *values, now),
            )
        else:
            cursor = conn.execute(
                "UPDATE tokens SET version = version + 1, key_id = ?, blob = ?,"
                " access_expires_at = ?, refresh_expires_at = ?, updated_at = ?"
                " WHERE connection_id = ? AND version = ?",
                (*values, now, cid, expected),
            )
        if cursor.rowcount == 1:
            return expected + 1
        row = conn.execute("SELECT version FROM tokens WHERE connection_id = ?", (cid,)).fetchone()
        return StaleWriteError(
            f"tokens of {cid} are at version {0 if row is None else row[0]}, not {expected}"
        )

    async def delete_tokens(self, connection_id: str) -> None:
        await self._write(
            "delete tokens",
            "DELETE FROM tokens WHERE connection_id = ?",
            lambda: [(connection_id,)],
            durable=True,
        )

    async def key_usage(self) -> dict[str, int]:
        """How many token rows each key id seals: rotation is done when only the primary
        remains."""
        return await self._read(
            "count tokens by key",
            "SELECT key_id, count(*) FROM tokens GROUP BY key_id",
            (),
            lambda rows: {str(key_id): int(n) for key_id, n in rows},
        )

    async def reencrypt_all(self) -> int:
        """Reseal every token not under the primary key; returns how many were rewritten.

        Runs in short transactions so token saves interleave; versions do not change,
        because the tokens themselves did not.
        """
        total = 0
        while True:
            done = await self._call("re-encrypt tokens", self._reencrypt_batch)
            total += done
            if done < _REENCRYPT_BATCH:
                return total

    def _reencrypt_batch(self) -> int:
        primary = self._keyring.primary_key_id
        with self._transaction(durable=True) as conn:
            rows = conn.execute(
                "SELECT connection_id, CAST(blob AS BLOB) FROM tokens WHERE key_id != ? LIMIT ?",
                (primary, _REENCRYPT_BATCH),
            ).fetchall()
            for cid, blob in rows:
                aad = _aad(cid)
                fresh = self._keyring.encrypt(
                    self._keyring.decrypt(blob, aad, what=_what(cid)), aad
                )
                conn.execute(
                    "UPDATE tokens SET key_id = ?, blob = ? WHERE connection_id = ?",
                    (primary, fresh, cid),
                )
        return len(rows)

    # -- health and history -----------------------------------------------------------

    async def save_health(self, items: Sequence[tuple[str, Health]]) -> None:
        if items:
            await self._write(
                "save health",
                "INSERT INTO health (connection_id, json) VALUES (?, ?)"
                " ON CONFLICT (connection_id) DO UPDATE SET json = excluded.json",
                lambda: [(cid, encode_health(health)) for cid, health in items],
                durable=False,
            )

    async def load_all_health(self) -> dict[str, Health]:
        return await self._read(
            "load health",
            "SELECT connection_id, json FROM health",
            (),
            lambda rows: {cid: decode_health(doc, what=f"health of {cid!r}") for cid, doc in rows},
        )

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        def append() -> None:
            rows = [
                (e.connection_id, e.at, e.kind.value, e.outcome, e.detail, e.duration, e.status)
                for e in entries
            ]
            touched = [(cid, self._keep - 1) for cid in {e.connection_id for e in entries}]
            with self._transaction(durable=False) as conn:
                conn.executemany(
                    "INSERT INTO history (connection_id, at, kind, outcome, detail, duration,"
                    " status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                # Keep the newest N of each connection just written to: an index range
                # delete per connection, so the table never needs a sweep.
                conn.executemany(
                    "DELETE FROM history WHERE connection_id = ?1 AND id < ("
                    "SELECT id FROM history WHERE connection_id = ?1"
                    " ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    touched,
                )

        if entries:
            await self._call("append history", append)

    async def recent_history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        return await self._read(
            "read history",
            "SELECT at, kind, outcome, detail, duration, status FROM history"
            " WHERE connection_id = ? ORDER BY id DESC LIMIT ?",
            (connection_id, max(0, limit)),
            lambda rows: [
                HistoryEntry(connection_id, at, HistoryKind(kind), outcome, detail, dur, status)
                for at, kind, outcome, detail, dur, status in rows
            ],
        )

    # -- alerts and outbox -------------------------------------------------------------

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        if records:
            await self._write(
                "save alerts",
                "INSERT INTO alerts (connection_id, alert, json) VALUES (?, ?, ?)"
                " ON CONFLICT (connection_id, alert) DO UPDATE SET json = excluded.json",
                lambda: [(r.connection_id, r.alert, encode_alert(r)) for r in records],
                durable=True,
            )

    async def delete_alerts(self, keys: Sequence[tuple[str, str]]) -> None:
        if keys:
            await self._write(
                "delete alerts",
                "DELETE FROM alerts WHERE connection_id = ? AND alert = ?",
                lambda: list(keys),
                durable=True,
            )

    async def load_alerts(self) -> list[AlertRecord]:
        return await self._read(
            "load alerts",
            "SELECT connection_id, alert, json FROM alerts ORDER BY connection_id, alert",
            (),
            lambda rows: [decode_alert(doc, what=f"alert {a!r} of {c!r}") for c, a, doc in rows],
        )

    async def outbox_put(self, key: str, payload: str) -> None:
        await self._write(
            "queue a notification",
            "INSERT INTO outbox (key, payload, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET payload = excluded.payload",
            lambda: [(key, payload, self._clock.now())],
            durable=True,
        )

    async def outbox_all(self) -> list[tuple[str, str]]:
        return await self._read(
            "read the outbox",
            "SELECT key, payload FROM outbox ORDER BY key",
            (),
            lambda rows: [(key, payload) for key, payload in rows],
        )

    async def outbox_delete(self, key: str) -> None:
        await self._write(
            "delete from the outbox",
            "DELETE FROM outbox WHERE key = ?",
            lambda: [(key,)],
            durable=True,
        )
