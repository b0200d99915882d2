"""Group commit of token saves in the SQLite store: one fsync per burst, not per token.

Token saves that arrive while the worker thread is busy queue up; the next flush on the
worker seals them all, writes them in one durable transaction and settles each caller's
future with its own outcome: the new version, a `StaleWriteError` from its own version
check, or the failure of the shared commit. A save whose caller was cancelled is still
written: the token was already spent at ServiceNow.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from monitor.clock import Clock
from monitor.errors import StaleWriteError
from monitor.model import TokenSet
from monitor.store.crypto import Keyring, blob_key_id
from monitor.store.sealing import seal_tokens
from monitor.store.sqlite_schema import store_error

Transaction = Callable[..., AbstractContextManager[sqlite3.Connection]]


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


class GroupCommit:
    """Token saves for one SQLite store; `flush` runs on the store's worker thread, inside
    the store's `transaction(durable=True)`."""

    def __init__(
        self, *, path: Path, keyring: Keyring, clock: Clock, transaction: Transaction
    ) -> None:
        self._path = path
        self._keyring = keyring
        self._clock = clock
        self._transaction = transaction
        self._saves: queue.SimpleQueue[_PendingSave] = queue.SimpleQueue()
        # Set by the loop when it submits a flush, cleared by the worker before it drains
        # the queue; a plain bool is enough because the GIL makes each access atomic and a
        # spurious extra flush finds an empty queue.
        self._flush_submitted = False

    async def save(
        self, executor: Executor, connection_id: str, tokens: TokenSet, expected_version: int
    ) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._saves.put(_PendingSave(connection_id, tokens, expected_version, future))
        if not self._flush_submitted:
            self._flush_submitted = True
            # The returned concurrent future carries nothing: flush never raises and
            # settles every caller's own future.
            executor.submit(self.flush)
        return await future

    def flush(self) -> None:
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
                blob = seal_tokens(self._keyring, item.connection_id, item.tokens)
            except Exception as exc:  # noqa: BLE001 handed to that caller, the batch goes on
                outcomes[index] = exc
            else:
                sealed.append((index, item, blob))
        written: list[tuple[int, int | BaseException]]
        try:
            with self._transaction(durable=True) as conn:
                now = self._clock.now()
                written = [(i, _write(conn, item, blob, now)) for i, item, blob in sealed]
        except sqlite3.Error as exc:
            failure = store_error(self._path, "save tokens", exc)
            written = [(i, failure) for i, _, _ in sealed]
        except Exception as exc:  # noqa: BLE001 every waiting caller must hear of it
            written = [(i, exc) for i, _, _ in sealed]
        for index, outcome in written:
            outcomes[index] = outcome
        for item, outcome in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
                item.future.get_loop().call_soon_threadsafe(_settle, item.future, outcome)


def _write(
    conn: sqlite3.Connection, item: _PendingSave, blob: bytes, now: float
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
