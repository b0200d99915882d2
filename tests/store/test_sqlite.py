"""What only the SQLite backend promises: its file, schema, pragmas and worker thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from monitor.clock import ManualClock
from monitor.errors import StoreError
from monitor.store.crypto import Keyring
from monitor.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.store.conftest import HISTORY_KEEP
from tests.store.loop_ticks import with_loop_ticks
from tests.store.samples import T0, bare_tokens, full_tokens, history_entry


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_new_file_is_private_wal_and_at_the_latest_schema(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    await sqlite_store.save_tokens("c1", full_tokens(), expected_version=0)

    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert query(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    tables = {name for (name,) in query(db_path, "SELECT name FROM sqlite_master")}
    assert {"tokens", "health", "history", "alerts", "outbox", "history_by_connection"} <= tables
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{db_path}{suffix}").st_mode) == 0o600, suffix


async def test_missing_directories_are_created(tmp_path: Path, key_a: str) -> None:
    path = tmp_path / "var" / "lib" / "snowmon" / "snowmon.db"
    store = SqliteStore(path, Keyring([key_a]))
    await store.open()
    await store.close()

    assert path.is_file()


async def test_expiries_are_queryable_in_clear_and_stamped_by_the_clock(
    db_path: Path, key_a: str
) -> None:
    clock = ManualClock(T0 + 5)
    store = SqliteStore(db_path, Keyring([key_a]), clock=clock)
    await store.open()
    await store.save_tokens("c1", full_tokens(), expected_version=0)
    await store.save_tokens("c2", bare_tokens(), expected_version=0)
    await store.close()

    rows = query(
        db_path,
        "SELECT connection_id, version, access_expires_at, refresh_expires_at, updated_at"
        " FROM tokens ORDER BY connection_id",
    )
    assert rows == [
        ("c1", 1, full_tokens().access_expires_at, full_tokens().refresh_expires_at, T0 + 5),
        ("c2", 1, bare_tokens().access_expires_at, None, T0 + 5),
    ]


async def test_history_rows_are_pruned_in_the_file(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    for batch in range(4):
        await sqlite_store.append_history(
            [history_entry(cid, batch * 10 + n) for n in range(7) for cid in ("c1", "c2")]
        )

    counts = query(db_path, "SELECT connection_id, count(*) FROM history GROUP BY 1 ORDER BY 1")
    assert counts == [("c1", HISTORY_KEEP), ("c2", HISTORY_KEEP)]


async def test_a_newer_schema_is_refused(db_path: Path, key_a: str) -> None:
    store = SqliteStore(db_path, Keyring([key_a]))
    await store.open()
    await store.close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        await SqliteStore(db_path, Keyring([key_a])).open()


async def test_use_outside_open_is_a_store_error(db_path: Path, key_a: str) -> None:
    store = SqliteStore(db_path, Keyring([key_a]))
    with pytest.raises(StoreError, match="is not open"):
        await store.load_all_tokens()

    await store.open()
    with pytest.raises(StoreError, match="is already open"):
        await store.open()
    await store.close()
    await store.close()  # closing twice is harmless

    with pytest.raises(StoreError, match="is not open"):
        await store.save_tokens("c1", full_tokens(), expected_version=0)
    with pytest.raises(StoreError, match="is not open"):
        await store.ping()


async def test_disk_work_runs_off_the_event_loop(sqlite_store: SqliteStore) -> None:
    await asyncio.gather(
        *(
            sqlite_store.save_tokens(f"c{i}", full_tokens(str(i)), expected_version=0)
            for i in range(20_000)
        )
    )
    loaded, ticks = await with_loop_ticks(sqlite_store.load_all_tokens())

    assert len(loaded) == 20_000
    # Had decrypting 20,000 rows run on the loop, the ticker could not have run meanwhile.
    assert ticks >= 3


def test_history_bound_must_be_positive(db_path: Path, key_a: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SqliteStore(db_path, Keyring([key_a]), history_per_connection=0)
