"""Tokens in the SQLite file: sealed, bound to their row, readable only with the right keys,
and rotatable without downtime."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from monitor.errors import StoreError, StoreKeyError
from monitor.model import StoredTokens
from monitor.store.crypto import Keyring, generate_key
from monitor.store.sqlite import SqliteStore
from tests.store.samples import full_tokens


def files_of(db_path: Path) -> list[Path]:
    return [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]


def key_id(key: str) -> str:
    return Keyring([key]).primary_key_id


async def write(db_path: Path, keys: list[str], *connection_ids: str) -> None:
    store = SqliteStore(db_path, Keyring(keys))
    await store.open()
    try:
        for cid in connection_ids:
            current = await store.load_tokens(cid)
            version = 0 if current is None else current.version
            await store.save_tokens(cid, full_tokens(cid), expected_version=version)
    finally:
        await store.close()


def raw(db_path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_no_token_plaintext_in_the_database_or_its_wal(db_path: Path, key_a: str) -> None:
    store = SqliteStore(db_path, Keyring([key_a]))
    await store.open()
    for i in range(50):
        await store.save_tokens(f"c{i}", full_tokens(f"c{i}"), expected_version=0)
    secrets = [
        s.encode()
        for i in range(50)
        for s in (
            full_tokens(f"c{i}").access_token.reveal(),
            full_tokens(f"c{i}").refresh_token.reveal(),  # type: ignore[union-attr]
        )
    ]
    # While open, the rows live in the WAL; after close, in the main file.
    for moment in ("open", "closed"):
        names = {p.name for p in files_of(db_path)}
        assert "snowmon.db" in names
        if moment == "open":
            assert "snowmon.db-wal" in names
        content = b"".join(p.read_bytes() for p in files_of(db_path))
        assert b"c49" in content  # the connection ids are there in clear, the tokens are not
        leaked = [s for s in secrets if s in content]
        assert leaked == [], moment
        assert b"access_token" not in content
        assert key_a.encode() not in content
        await store.close()


async def test_wrong_key_is_refused_at_open_naming_the_key_id(db_path: Path, key_a: str) -> None:
    await write(db_path, [key_a], "c1")
    stranger = generate_key()

    with pytest.raises(StoreKeyError) as info:
        await SqliteStore(db_path, Keyring([stranger])).open()

    assert str(info.value) == (
        f"SQLite store {db_path}: stored tokens were encrypted with key id {key_id(key_a)} "
        f"which is not in encryption_keys (it holds {key_id(stranger)}); "
        "add the old key after the new one to rotate"
    )


async def test_any_key_opens_a_store_without_tokens(db_path: Path, key_a: str) -> None:
    await write(db_path, [key_a])

    store = SqliteStore(db_path, Keyring([generate_key()]))
    await store.open()
    await store.close()


async def test_key_rotation_without_downtime(db_path: Path, key_a: str, key_b: str) -> None:
    await write(db_path, [key_a], "c1", "c2")

    # Step 1: new key first, old key kept. Everything still reads; new writes use B.
    rotating = SqliteStore(db_path, Keyring([key_b, key_a]))
    await rotating.open()
    assert (await rotating.load_all_tokens())["c2"] == StoredTokens(full_tokens("c2"), 1)
    await rotating.save_tokens("c1", full_tokens("c1-new"), expected_version=1)
    assert await rotating.key_usage() == {key_id(key_a): 1, key_id(key_b): 1}
    await rotating.close()
    blob_ids = raw(db_path, "SELECT connection_id, hex(substr(blob, 2, 8)) FROM tokens")
    assert sorted(blob_ids) == [("c1", key_id(key_b).upper()), ("c2", key_id(key_a).upper())]

    # Dropping A too early is refused at start-up, before any token is touched.
    with pytest.raises(StoreKeyError, match=f"key id {key_id(key_a)} which is not in"):
        await SqliteStore(db_path, Keyring([key_b])).open()

    # Step 2: reseal what is left under A, without changing versions.
    rotating = SqliteStore(db_path, Keyring([key_b, key_a]))
    await rotating.open()
    assert await rotating.reencrypt_all() == 1
    assert await rotating.reencrypt_all() == 0
    assert await rotating.key_usage() == {key_id(key_b): 2}
    await rotating.close()

    # Step 3: A can go.
    rotated = SqliteStore(db_path, Keyring([key_b]))
    await rotated.open()
    try:
        assert await rotated.load_all_tokens() == {
            "c1": StoredTokens(full_tokens("c1-new"), 2),
            "c2": StoredTokens(full_tokens("c2"), 1),
        }
    finally:
        await rotated.close()


async def test_reencrypt_all_handles_more_rows_than_one_batch(
    db_path: Path, key_a: str, key_b: str
) -> None:
    await write(db_path, [key_a], *(f"c{i}" for i in range(1234)))

    store = SqliteStore(db_path, Keyring([key_b, key_a]))
    await store.open()
    try:
        assert await store.reencrypt_all() == 1234
        assert await store.key_usage() == {key_id(key_b): 1234}
    finally:
        await store.close()


async def test_tampered_blob_is_detected_and_named(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    await sqlite_store.save_tokens("c1", full_tokens("c1"), expected_version=0)
    await sqlite_store.save_tokens("c2", full_tokens("c2"), expected_version=0)
    (blob,) = raw(db_path, "SELECT blob FROM tokens WHERE connection_id = 'c2'")[0]
    assert isinstance(blob, bytes)
    flipped = blob[:30] + bytes([blob[30] ^ 0x20]) + blob[31:]
    raw(db_path, "UPDATE tokens SET blob = ? WHERE connection_id = 'c2'", flipped)

    assert await sqlite_store.load_tokens("c1") == StoredTokens(full_tokens("c1"), 1)
    message = "token of connection 'c2' failed authentication: corrupted or tampered"
    with pytest.raises(StoreError, match=re.escape(message)):
        await sqlite_store.load_tokens("c2")
    with pytest.raises(StoreError, match=re.escape(message)):
        await sqlite_store.load_all_tokens()


async def test_a_blob_copied_to_another_connection_does_not_decrypt(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    await sqlite_store.save_tokens("victim", full_tokens("victim"), expected_version=0)
    await sqlite_store.save_tokens("other", full_tokens("other"), expected_version=0)
    raw(
        db_path,
        "UPDATE tokens SET blob = (SELECT blob FROM tokens WHERE connection_id = 'victim')"
        " WHERE connection_id = 'other'",
    )

    with pytest.raises(StoreError, match="token of connection 'other' failed authentication"):
        await sqlite_store.load_tokens("other")


async def test_tampered_only_token_stops_start_up(db_path: Path, key_a: str) -> None:
    await write(db_path, [key_a], "c1")
    raw(db_path, "UPDATE tokens SET blob = substr(blob, 1, 40) || zeroblob(length(blob) - 40)")

    with pytest.raises(StoreError, match="token of connection 'c1' failed authentication"):
        await SqliteStore(db_path, Keyring([key_a])).open()
