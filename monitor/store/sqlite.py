"""The SQLite store: the embedded default, one file in WAL mode.

Every database call runs on one dedicated worker thread that owns the only connection,
so the event loop never waits on the disk and SQLite never sees two threads. Writes are
explicit `BEGIN IMMEDIATE` transactions. Token, alert and outbox commits are fsync'd
(`synchronous=FULL`); health and history, rewritten all day and harmless to lose to a
power cut, commit with `NORMAL`, which in WAL mode still never corrupts the file.

Token saves that arrive while the worker is busy are committed together (group commit,
`sqlite_group_commit.py`): each keeps its own version check and result, and all share one
fsync. A fleet granting or refreshing in bursts then costs one disk flush per burst, not
one per connection. The schema, its migrations and the wording of SQLite failures live in
`sqlite_schema.py`; how a token blob is sealed, in `sealing.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from monitor.clock import Clock, SystemClock
from monitor.errors import StoreError
from monitor.model import AlertRecord, Health, HistoryEntry, HistoryKind, StoredTokens, TokenSet
from monitor.store.codec import decode_alert_rows, decode_health, encode_alert, encode_health
from monitor.store.crypto import Keyring
from monitor.store.sealing import check_blob, missing_key, open_tokens, reseal
from monitor.store.sqlite_group_commit import GroupCommit
from monitor.store.sqlite_schema import (
    BUSY_TIMEOUT_SECONDS,
    SCHEMA_VERSION,
    WAL_SIZE_LIMIT,
    enable_wal,
    migrate,
    prepare_file,
    store_error,
)

__all__ = ["BUSY_TIMEOUT_SECONDS", "SCHEMA_VERSION", "SqliteStore"]

T = TypeVar("T")
Row = tuple[Any, ...]

_REENCRYPT_BATCH: Final = 500

# Blobs are read through CAST(blob AS BLOB): a value rewritten as TEXT by hand or by
# corruption then fails authentication cleanly instead of as a UTF-8 decoding error.


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
        self._saves = GroupCommit(
            path=self._path, keyring=keyring, clock=self._clock, transaction=self._transaction
        )

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
            raise store_error(self._path, action, exc) from exc

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

    def _open_sync(self) -> None:
        prepare_file(self._path)
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            enable_wal(conn, self._path)
            conn.execute("PRAGMA synchronous = FULL")
            self._synchronous_full = True
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._conn = conn
            with self._transaction(durable=True) as migrating:
                migrate(migrating, self._path)
            self._check_keyring()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _check_keyring(self) -> None:
        # A wrong key must stop start-up with a clear message, not surface later as one
        # unreadable token per connection: check every key id in use, decrypt one of each.
        conn = self._db()
        for (key_id,) in conn.execute("SELECT DISTINCT key_id FROM tokens").fetchall():
            if not self._keyring.has_key(key_id):
                raise missing_key(f"SQLite store {self._path}", key_id, self._keyring)
            cid, blob = conn.execute(
                "SELECT connection_id, CAST(blob AS BLOB) FROM tokens WHERE key_id = ? LIMIT 1",
                (key_id,),
            ).fetchone()
            check_blob(self._keyring, cid, blob)

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
        self._saves.flush()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def ping(self) -> None:
        await self._call("ping", lambda: self._db().execute("SELECT 1").fetchone())

    # -- tokens ---------------------------------------------------------------------

    def _open_tokens(self, cid: str, version: int, blob: bytes) -> StoredTokens:
        return open_tokens(self._keyring, cid, version, blob)

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
        # Committed with whatever other saves queue meanwhile: one fsync per burst.
        return await self._saves.save(executor, connection_id, tokens, expected_version)

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
                fresh = reseal(self._keyring, cid, blob)
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
            decode_alert_rows,
        )

    async def load_alerts_for(self, connection_ids: Collection[str]) -> list[AlertRecord]:
        return await self._read(
            "load alerts",
            "SELECT connection_id, alert, json FROM alerts"
            " WHERE connection_id IN (SELECT value FROM json_each(?))"
            " ORDER BY connection_id, alert",
            (json.dumps(sorted(connection_ids)),),
            decode_alert_rows,
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
