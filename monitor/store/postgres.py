"""The PostgreSQL store: one fleet shared by several replicas (asyncpg).

The same protocol and semantics as `sqlite.py`: tokens sealed by `crypto.Keyring` with
the key id in clear beside the blob, version-fenced token writes, health and history
batches, bounded history, alert records and the notification outbox. On top of that,
with a `replica` name, connections are owned through leases (`leases.py`) and a token
write also checks, in the same statement and on the database's clock, that this replica
still holds an unexpired lease: a replica that was paused past its lease cannot
overwrite the token of the replica that took over.

Every call raises `StoreError` promptly when the database is unreachable or slow, and
succeeds again once it is back (`pg_pool.py`). Health and history commit without waiting
for the WAL flush (`synchronous_commit = off`), like SQLite's `NORMAL`: losing the last
few snapshots to a crash is harmless; tokens, alerts, the outbox and leases wait for it.
The schema and statements are in `pg_schema.py`; how a token blob is sealed, `sealing.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

import asyncpg

from monitor.errors import StaleWriteError, StoreError
from monitor.model import AlertRecord, Health, HistoryEntry, HistoryKind, StoredTokens, TokenSet
from monitor.store import pg_schema as sql
from monitor.store.codec import decode_alert_rows, decode_health, encode_alert, encode_health
from monitor.store.crypto import Keyring, blob_key_id
from monitor.store.leases import PostgresLeases
from monitor.store.pg_pool import PgPool
from monitor.store.pg_schema import migrate
from monitor.store.sealing import check_blob, missing_key, open_tokens, reseal, seal_tokens

if TYPE_CHECKING:
    from monitor.store.pg_schema import Conn

T = TypeVar("T")

_REENCRYPT_BATCH: Final = 500
# Converting more rows than this (decrypting, JSON) runs on a worker thread, so a 100,000
# connection start-up does not stall probes for a second.
_OFFLOAD_ROWS: Final = 2000


async def _offload(rows: int, fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn) if rows > _OFFLOAD_ROWS else fn()


class PostgresStore(PostgresLeases):
    """`Store` (and `Leases`) on PostgreSQL. Call `open()` before anything else.

    `schema` puts snowmon's tables in that schema (created if missing) instead of the
    connection's default search_path.
    """

    def __init__(
        self,
        dsn: str,
        keyring: Keyring,
        *,
        history_per_connection: int = 50,
        replica: str | None = None,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 5.0,
    ) -> None:
        if history_per_connection < 1:
            raise ValueError("history_per_connection must be at least 1")
        if replica == "":
            raise ValueError("replica must be a non-empty name, or None without leases")
        self._db = PgPool(
            dsn,
            replica=replica,
            schema=schema,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
        )
        self._schema = schema
        self._keyring = keyring
        self._keep = history_per_connection
        self._replica = replica
        self._label = self._db.label
        self._saves: set[asyncio.Task[int]] = set()
        self._lease_seconds = 30.0  # the last lease period used, for outbox adoption

    @property
    def replica(self) -> str | None:
        return self._replica

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, action: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._db.run(action, fn)

    def _me(self) -> str:
        if self._replica is None:
            raise ValueError(f"{self._label}: leases need a store built with replica=...")
        return self._replica

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        await self._db.open(
            ("migrate", lambda conn: migrate(conn, self._schema, self._label)),
            ("check keys", self._check_keyring),
        )

    async def _check_keyring(self, conn: Conn) -> None:
        # As in SQLite: a wrong key stops start-up with one clear message.
        for (key_id,) in await conn.fetch("SELECT DISTINCT key_id FROM tokens"):
            if not self._keyring.has_key(key_id):
                raise missing_key(self._label, key_id, self._keyring)
            row = await conn.fetchrow(
                "SELECT connection_id, blob FROM tokens WHERE key_id = $1 LIMIT 1", key_id
            )
            if row is not None:
                check_blob(self._keyring, row[0], row[1])

    async def close(self) -> None:
        if not self._db.is_open:
            return
        # Token saves whose callers were cancelled still finish, each within its timeout.
        while self._saves:
            await asyncio.wait(set(self._saves))
        await self._db.close()

    async def ping(self) -> None:
        await self._run("ping", lambda conn: conn.fetchval("SELECT 1"))

    # -- tokens ---------------------------------------------------------------------

    async def _open_rows(self, rows: Sequence[asyncpg.Record]) -> dict[str, StoredTokens]:
        return await _offload(
            len(rows),
            lambda: {cid: open_tokens(self._keyring, cid, v, blob) for cid, v, blob in rows},
        )

    async def load_tokens(self, connection_id: str) -> StoredTokens | None:
        row = await self._run(
            "load tokens",
            lambda conn: conn.fetchrow(
                "SELECT version, blob FROM tokens WHERE connection_id = $1", connection_id
            ),
        )
        return None if row is None else open_tokens(self._keyring, connection_id, row[0], row[1])

    async def load_all_tokens(self) -> dict[str, StoredTokens]:
        rows = await self._run(
            "load tokens",
            lambda conn: conn.fetch("SELECT connection_id, version, blob FROM tokens"),
        )
        return await self._open_rows(rows)

    async def load_tokens_for(self, connection_ids: Collection[str]) -> dict[str, StoredTokens]:
        """The stored tokens of just these connections (say, the ones just claimed)."""
        rows = await self._run(
            "load tokens",
            lambda conn: conn.fetch(
                "SELECT connection_id, version, blob FROM tokens"
                " WHERE connection_id = ANY($1::text[])",
                list(connection_ids),
            ),
        )
        return await self._open_rows(rows)

    async def load_token_times(
        self,
    ) -> dict[str, tuple[float | None, float | None, float | None]]:
        """(access_expires_at, refresh_expires_at, refresh_issued_at) of every stored token,
        from the columns kept in clear: nothing is decrypted."""
        rows = await self._run(
            "load token times",
            lambda conn: conn.fetch(
                "SELECT connection_id, access_expires_at, refresh_expires_at,"
                " refresh_issued_at FROM tokens"
            ),
        )
        return {cid: (access, refresh, issued) for cid, access, refresh, issued in rows}

    async def save_tokens(
        self, connection_id: str, tokens: TokenSet, *, expected_version: int
    ) -> int:
        if not self._db.is_open:
            raise StoreError(f"{self._label} is not open")
        blob = seal_tokens(self._keyring, connection_id, tokens)
        # A save whose caller is cancelled still completes (or fails) on its own: the
        # token was already spent at ServiceNow, so dropping the write would lose it.
        task = asyncio.create_task(self._save(connection_id, tokens, blob, expected_version))
        self._saves.add(task)
        task.add_done_callback(self._save_done)
        return await asyncio.shield(task)

    def _save_done(self, task: asyncio.Task[int]) -> None:
        self._saves.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller, if still waiting, sees it too

    async def _save(self, cid: str, tokens: TokenSet, blob: bytes, expected: int) -> int:
        async def write(conn: Conn) -> int:
            row = await conn.fetchrow(
                sql.SAVE_TOKENS,
                cid,
                expected,
                blob_key_id(blob),
                blob,
                tokens.access_expires_at,
                tokens.refresh_expires_at,
                tokens.refresh_issued_at,
                self._replica,
            )
            assert row is not None  # noqa: S101 a SELECT without FROM returns one row
            leased, written = row
            if written is not None:
                return int(written)
            if not leased:
                raise await self._lease_lost(conn, cid, "saved")
            current = await conn.fetchval(
                "SELECT version FROM tokens WHERE connection_id = $1", cid
            )
            raise StaleWriteError(f"tokens of {cid} are at version {current or 0}, not {expected}")

        return await self._run("save tokens", write)

    async def delete_tokens(self, connection_id: str) -> None:
        async def delete(conn: Conn) -> None:
            leased = await conn.fetchval(sql.DELETE_TOKENS, connection_id, self._replica)
            if not leased:
                raise await self._lease_lost(conn, connection_id, "deleted")

        await self._run("delete tokens", delete)

    async def key_usage(self) -> dict[str, int]:
        """How many token rows each key id seals: rotation is done when only the primary
        remains."""
        rows = await self._run(
            "count tokens by key",
            lambda conn: conn.fetch("SELECT key_id, count(*) FROM tokens GROUP BY key_id"),
        )
        return {str(key_id): int(n) for key_id, n in rows}

    async def reencrypt_all(self) -> int:
        """Reseal every token not under the primary key; returns how many were rewritten.

        Short transactions, so token saves interleave; versions do not change."""
        total = 0
        while True:
            done = await self._run("re-encrypt tokens", self._reencrypt_batch)
            total += done
            if done < _REENCRYPT_BATCH:
                return total

    async def _reencrypt_batch(self, conn: Conn) -> int:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT connection_id, blob FROM tokens WHERE key_id <> $1"
                " ORDER BY connection_id LIMIT $2 FOR UPDATE",
                self._keyring.primary_key_id,
                _REENCRYPT_BATCH,
            )
            fresh = []
            for cid, blob in rows:
                sealed = reseal(self._keyring, cid, blob)
                fresh.append((blob_key_id(sealed), sealed, cid))
            await conn.executemany(
                "UPDATE tokens SET key_id = $1, blob = $2 WHERE connection_id = $3", fresh
            )
        return len(rows)

    # -- health and history -----------------------------------------------------------

    async def _relaxed(
        self, action: str, statements: Sequence[tuple[str, tuple[object, ...]]]
    ) -> None:
        """Run statements in one transaction that does not wait for the WAL flush."""

        async def run(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                for statement, args in statements:
                    await conn.execute(statement, *args)

        await self._run(action, run)

    async def save_health(self, items: Sequence[tuple[str, Health]]) -> None:
        if not items:
            return
        latest = dict(items)  # one row per connection per statement; the last one wins
        ids = sorted(latest)  # one lock order for every writer
        docs = await _offload(len(ids), lambda: [encode_health(latest[cid]) for cid in ids])
        await self._relaxed("save health", [(sql.SAVE_HEALTH, (ids, docs))])

    async def load_all_health(self) -> dict[str, Health]:
        rows = await self._run(
            "load health", lambda conn: conn.fetch("SELECT connection_id, doc FROM health")
        )
        return await _offload(
            len(rows),
            lambda: {cid: decode_health(doc, what=f"health of {cid!r}") for cid, doc in rows},
        )

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        columns = (
            [e.connection_id for e in entries],
            [e.at for e in entries],
            [e.kind.value for e in entries],
            [e.outcome for e in entries],
            [e.detail for e in entries],
            [e.duration for e in entries],
            [e.status for e in entries],
        )
        touched = sorted({e.connection_id for e in entries})
        await self._relaxed(
            "append history",
            [(sql.APPEND_HISTORY, columns), (sql.PRUNE_HISTORY, (touched, self._keep - 1))],
        )

    async def recent_history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        rows = await self._run(
            "read history",
            lambda conn: conn.fetch(
                "SELECT at, kind, outcome, detail, duration, status FROM history"
                " WHERE connection_id = $1 ORDER BY id DESC LIMIT $2",
                connection_id,
                max(0, limit),
            ),
        )
        return [
            HistoryEntry(connection_id, at, HistoryKind(kind), outcome, detail, dur, status)
            for at, kind, outcome, detail, dur, status in rows
        ]

    # -- alerts and outbox -------------------------------------------------------------

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        if not records:
            return
        latest = {(r.connection_id, r.alert): r for r in records}
        keys = sorted(latest)
        await self._run(
            "save alerts",
            lambda conn: conn.execute(
                sql.SAVE_ALERTS,
                [c for c, _ in keys],
                [a for _, a in keys],
                [encode_alert(latest[k]) for k in keys],
            ),
        )

    async def delete_alerts(self, keys: Sequence[tuple[str, str]]) -> None:
        if keys:
            await self._run(
                "delete alerts",
                lambda conn: conn.execute(
                    sql.DELETE_ALERTS, [c for c, _ in keys], [a for _, a in keys]
                ),
            )

    async def load_alerts(self) -> list[AlertRecord]:
        rows = await self._run(
            "load alerts",
            lambda conn: conn.fetch(
                'SELECT connection_id, alert, doc FROM alerts ORDER BY connection_id COLLATE "C",'
                ' alert COLLATE "C"'
            ),
        )
        return decode_alert_rows(rows)

    async def load_alerts_for(self, connection_ids: Collection[str]) -> list[AlertRecord]:
        """The alert records of just these connections (say, the ones just claimed)."""
        rows = await self._run(
            "load alerts",
            lambda conn: conn.fetch(
                "SELECT connection_id, alert, doc FROM alerts"
                " WHERE connection_id = ANY($1::text[])"
                ' ORDER BY connection_id COLLATE "C", alert COLLATE "C"',
                list(connection_ids),
            ),
        )
        return decode_alert_rows(rows)

    async def outbox_put(self, key: str, payload: str) -> None:
        await self._run(
            "queue a notification",
            lambda conn: conn.execute(sql.OUTBOX_PUT, key, payload, self._replica or ""),
        )

    async def outbox_all(self) -> list[tuple[str, str]]:
        """Without a replica name, every queued notification. With one, this replica's,
        after adopting those of replicas that are gone (one adopter per row)."""
        replica = self._replica
        rows = await self._run(
            "read the outbox",
            lambda conn: (
                conn.fetch(sql.OUTBOX_ALL)
                if replica is None
                else conn.fetch(sql.OUTBOX_ADOPT, replica, self._lease_seconds)
            ),
        )
        return [(key, payload) for key, payload in rows]

    async def outbox_delete(self, key: str) -> None:
        await self._run(
            "delete from the outbox",
            lambda conn: conn.execute("DELETE FROM outbox WHERE key = $1", key),
        )
