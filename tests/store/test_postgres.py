"""What only the PostgreSQL backend promises: its schema and migrations, tokens sealed in
the table and checked at start-up, columns in clear for fleet views, the outbox shared by
replicas. The protocol suite (test_protocol.py, test_restart.py) runs on it as well."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from monitor.errors import StoreError, StoreKeyError
from monitor.model import StoredTokens
from monitor.store.codec import encode_tokens
from monitor.store.crypto import Keyring, generate_key
from monitor.store.factory import open_store
from monitor.store.pg_schema import SCHEMA_VERSION
from monitor.store.postgres import PostgresStore
from tests.store.conftest import HISTORY_KEEP, PG_DSN, PG_MAX_SIZE
from tests.store.loop_ticks import with_loop_ticks
from tests.store.samples import bare_tokens, full_tokens, history_entry

pytestmark = pytest.mark.postgres


def pg_store(schema: str, keys: list[str], **kwargs: object) -> PostgresStore:
    return PostgresStore(
        PG_DSN,
        Keyring(keys),
        schema=schema,
        history_per_connection=HISTORY_KEEP,
        max_size=PG_MAX_SIZE,
        **kwargs,  # type: ignore[arg-type]
    )


async def raw(schema: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def key_id(key: str) -> str:
    return Keyring([key]).primary_key_id


@pytest.fixture
async def pg(pg_schema: str, key_a: str) -> AsyncIterator[PostgresStore]:
    store = pg_store(pg_schema, [key_a])
    await store.open()
    yield store
    await store.close()


async def write(schema: str, keys: list[str], *connection_ids: str) -> None:
    store = pg_store(schema, keys)
    await store.open()
    try:
        for cid in connection_ids:
            current = await store.load_tokens(cid)
            version = 0 if current is None else current.version
            await store.save_tokens(cid, full_tokens(cid), expected_version=version)
    finally:
        await store.close()


async def test_open_creates_the_schema_at_the_latest_version(
    pg: PostgresStore, pg_schema: str
) -> None:
    tables = {
        r["tablename"]
        for r in await raw(
            pg_schema, "SELECT tablename FROM pg_tables WHERE schemaname = $1", pg_schema
        )
    }
    assert {"tokens", "health", "history", "alerts", "outbox", "leases", "replicas"} <= tables
    assert [tuple(r) for r in await raw(pg_schema, "SELECT version FROM schema_version")] == [
        (SCHEMA_VERSION,)
    ]


async def test_replicas_starting_together_migrate_a_new_schema_once(
    pg_schema: str, key_a: str
) -> None:
    stores = [pg_store(pg_schema, [key_a]) for _ in range(3)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        await stores[0].save_tokens("c1", full_tokens(), expected_version=0)
        assert await stores[2].load_tokens("c1") == StoredTokens(full_tokens(), 1)
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    assert [tuple(r) for r in await raw(pg_schema, "SELECT version FROM schema_version")] == [
        (SCHEMA_VERSION,)
    ]


async def test_a_newer_schema_is_refused(pg: PostgresStore, pg_schema: str, key_a: str) -> None:
    await raw(pg_schema, "UPDATE schema_version SET version = $1", SCHEMA_VERSION + 1)

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        await pg_store(pg_schema, [key_a]).open()


async def test_use_outside_open_is_a_store_error(pg_schema: str, key_a: str) -> None:
    store = pg_store(pg_schema, [key_a])
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


def test_constructor_checks_its_arguments(key_a: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PostgresStore(PG_DSN, Keyring([key_a]), history_per_connection=0)
    with pytest.raises(ValueError, match="lower-case letters"):
        PostgresStore(PG_DSN, Keyring([key_a]), schema='x"; DROP TABLE tokens; --')
    with pytest.raises(ValueError, match="non-empty"):
        PostgresStore(PG_DSN, Keyring([key_a]), replica="")


async def test_no_token_plaintext_in_the_table(pg: PostgresStore, pg_schema: str) -> None:
    for i in range(20):
        await pg.save_tokens(f"c{i}", full_tokens(f"c{i}"), expected_version=0)

    dump = "\n".join(r[0] for r in await raw(pg_schema, "SELECT t::text FROM tokens t"))

    assert "c19" in dump  # the connection ids are there in clear, the tokens are not
    for i in range(20):
        tokens = full_tokens(f"c{i}")
        for secret in (tokens.access_token.reveal(), tokens.refresh_token.reveal()):  # type: ignore[union-attr]
            assert secret not in dump
            assert secret.encode().hex() not in dump
    assert "access_token" not in dump
    assert b"access_token".hex() not in dump


async def test_wrong_key_is_refused_at_open_naming_the_key_id(pg_schema: str, key_a: str) -> None:
    await write(pg_schema, [key_a], "c1")
    stranger = generate_key()

    with pytest.raises(StoreKeyError) as info:
        await pg_store(pg_schema, [stranger]).open()

    assert str(info.value) == (
        f"PostgreSQL store postgresql://127.0.0.1:5432/test (schema {pg_schema}): stored "
        f"tokens were encrypted with key id {key_id(key_a)} which is not in encryption_keys "
        f"(it holds {key_id(stranger)}); add the old key after the new one to rotate"
    )


async def test_key_rotation_without_downtime(pg_schema: str, key_a: str, key_b: str) -> None:
    await write(pg_schema, [key_a], "c1", "c2")

    rotating = pg_store(pg_schema, [key_b, key_a])
    await rotating.open()
    assert (await rotating.load_all_tokens())["c2"] == StoredTokens(full_tokens("c2"), 1)
    await rotating.save_tokens("c1", full_tokens("c1-new"), expected_version=1)
    assert await rotating.key_usage() == {key_id(key_a): 1, key_id(key_b): 1}
    await rotating.close()
    blob_ids = await raw(
        pg_schema, "SELECT connection_id, encode(substring(blob from 2 for 8), 'hex') FROM tokens"
    )
    assert sorted(map(tuple, blob_ids)) == [("c1", key_id(key_b)), ("c2", key_id(key_a))]

    with pytest.raises(StoreKeyError, match=f"key id {key_id(key_a)} which is not in"):
        await pg_store(pg_schema, [key_b]).open()

    rotating = pg_store(pg_schema, [key_b, key_a])
    await rotating.open()
    assert await rotating.reencrypt_all() == 1
    assert await rotating.reencrypt_all() == 0
    assert await rotating.key_usage() == {key_id(key_b): 2}
    await rotating.close()

    rotated = pg_store(pg_schema, [key_b])
    await rotated.open()
    try:
        assert await rotated.load_all_tokens() == {
            "c1": StoredTokens(full_tokens("c1-new"), 2),
            "c2": StoredTokens(full_tokens("c2"), 1),
        }
    finally:
        await rotated.close()


async def test_tampered_or_moved_blobs_are_detected_and_named(
    pg: PostgresStore, pg_schema: str
) -> None:
    for cid in ("c1", "c2", "c3"):
        await pg.save_tokens(cid, full_tokens(cid), expected_version=0)
    await raw(
        pg_schema,
        "UPDATE tokens SET blob = set_byte(blob, 30, get_byte(blob, 30) # 32)"
        " WHERE connection_id = 'c2'",
    )
    await raw(
        pg_schema,
        "UPDATE tokens SET blob = (SELECT blob FROM tokens WHERE connection_id = 'c1')"
        " WHERE connection_id = 'c3'",
    )

    assert await pg.load_tokens("c1") == StoredTokens(full_tokens("c1"), 1)
    for cid in ("c2", "c3"):
        message = f"token of connection '{cid}' failed authentication: corrupted or tampered"
        with pytest.raises(StoreError, match=re.escape(message)):
            await pg.load_tokens(cid)
    with pytest.raises(StoreError, match="failed authentication"):
        await pg.load_all_tokens()


async def test_token_times_are_read_in_clear_without_decrypting(
    pg: PostgresStore, pg_schema: str
) -> None:
    await pg.save_tokens("c1", full_tokens(), expected_version=0)
    await pg.save_tokens("c2", bare_tokens(), expected_version=0)
    await raw(pg_schema, "UPDATE tokens SET blob = '\\x00'::bytea")  # unreadable now

    times = await pg.load_token_times()

    full = full_tokens()
    assert times == {
        "c1": (full.access_expires_at, full.refresh_expires_at, full.refresh_issued_at),
        "c2": (bare_tokens().access_expires_at, None, None),
    }


async def test_load_tokens_for_some_connections(pg: PostgresStore) -> None:
    for cid in ("c1", "c2", "c3"):
        await pg.save_tokens(cid, full_tokens(cid), expected_version=0)

    loaded = await pg.load_tokens_for(["c1", "c3", "unknown"])

    assert loaded == {
        "c1": StoredTokens(full_tokens("c1"), 1),
        "c3": StoredTokens(full_tokens("c3"), 1),
    }


async def test_history_rows_are_pruned_in_the_table(pg: PostgresStore, pg_schema: str) -> None:
    for batch in range(4):
        await pg.append_history(
            [history_entry(cid, batch * 10 + n) for n in range(7) for cid in ("c1", "c2")]
        )

    counts = await raw(
        pg_schema, "SELECT connection_id, count(*) FROM history GROUP BY 1 ORDER BY 1"
    )
    assert [tuple(r) for r in counts] == [("c1", HISTORY_KEEP), ("c2", HISTORY_KEEP)]


async def test_a_large_fleet_is_decrypted_off_the_event_loop(
    pg: PostgresStore, pg_schema: str, key_a: str
) -> None:
    # 20,000 rows written straight into the table (COPY): saving them one by one is slow.
    keyring = Keyring([key_a])
    rows = []
    for i in range(20_000):
        cid = f"c{i}"
        blob = keyring.encrypt(encode_tokens(full_tokens(cid)), b"snowmon:tokens:" + cid.encode())
        rows.append((cid, 1, keyring.primary_key_id, blob, 1.0, None, None))
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": pg_schema})
    try:
        await conn.execute("ALTER TABLE tokens ALTER updated_at SET DEFAULT now()")
        await conn.copy_records_to_table(
            "tokens",
            records=rows,
            columns=[
                "connection_id",
                "version",
                "key_id",
                "blob",
                "access_expires_at",
                "refresh_expires_at",
                "refresh_issued_at",
            ],
        )
    finally:
        await conn.close()
    loaded, ticks = await with_loop_ticks(pg.load_all_tokens())

    assert len(loaded) == 20_000
    assert loaded["c7"] == StoredTokens(full_tokens("c7"), 1)
    assert ticks >= 3


async def test_outbox_rows_of_a_gone_replica_are_adopted_by_one_live_replica(
    pg_schema: str, key_a: str
) -> None:
    a, b, c = (pg_store(pg_schema, [key_a], replica=name) for name in "abc")
    for store in (a, b, c):
        await store.open()
    try:
        for store in (a, b, c):
            await store.heartbeat()
        await a.outbox_put("a1", "from a")
        await b.outbox_put("b1", "from b")
        await b.outbox_put("b2", "from b")
        # Each live replica delivers only what it queued.
        assert await a.outbox_all() == [("a1", "from a")]
        assert await b.outbox_all() == [("b1", "from b"), ("b2", "from b")]

        await b.release_all()  # b shuts down with two notifications undelivered
        adopted = await asyncio.gather(a.outbox_all(), c.outbox_all())

        mine_a, mine_c = ({k for k, _ in rows} for rows in adopted)
        assert mine_a >= {"a1"}
        assert mine_a | mine_c == {"a1", "b1", "b2"}
        assert not mine_a & mine_c
    finally:
        for store in (a, b, c):
            await store.close()


async def test_the_factory_builds_a_postgres_store_from_a_dsn(pg_schema: str, key_a: str) -> None:
    await raw("public", f'CREATE SCHEMA "{pg_schema}"')
    # Query parameters of the DSN reach the server as settings, search_path included.
    store = open_store(
        f"{PG_DSN}?search_path={pg_schema}", Keyring([key_a]), history_per_connection=2
    )
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        await store.append_history([history_entry("c1", n) for n in range(5)])
        assert len(await store.recent_history("c1", 10)) == 2
    finally:
        await store.close()
    assert len(await raw(pg_schema, "SELECT * FROM history")) == 2
