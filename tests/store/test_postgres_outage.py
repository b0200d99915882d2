"""A database that goes away: calls raise `StoreError` promptly instead of hanging, and the
pool reconnects on its own when the database is back. Nothing saved is lost.

The outages are real: the store talks to PostgreSQL through a TCP relay on loopback that
the test cuts (connections reset, port closed) or stalls (bytes stop flowing), and backend
connections are killed with pg_terminate_backend.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from monitor.errors import StoreError
from monitor.model import StoredTokens
from monitor.store.crypto import Keyring
from monitor.store.factory import open_store
from monitor.store.postgres import PostgresStore
from tests.store.conftest import PG_DSN, PG_MAX_SIZE
from tests.store.relay import Relay
from tests.store.samples import full_health, full_tokens

pytestmark = pytest.mark.postgres

TIMEOUT = 0.5  # command_timeout of the stores under test


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()
    await relay.start()
    yield relay
    relay.resume()
    await relay.cut()


def relayed_store(relay: Relay, schema: str, key: str) -> PostgresStore:
    return PostgresStore(
        relay.dsn(), Keyring([key]), schema=schema, command_timeout=TIMEOUT, max_size=PG_MAX_SIZE
    )


async def timed(awaitable: object) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await awaitable  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 the test looks at what was raised
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_database_fails_open_promptly_without_echoing_the_password(
    key_a: str,
) -> None:
    dsn = f"postgresql://snowmon:hunter2@127.0.0.1:{closed_port()}/snowmon"
    store = open_store(dsn, Keyring([key_a]), history_per_connection=5)

    took, error = await timed(store.open())

    assert isinstance(error, StoreError)
    assert took < 2 * TIMEOUT
    message = str(error)
    assert message.startswith(f"PostgreSQL store postgresql://127.0.0.1:{urlsplit(dsn).port}")
    assert "connect failed" in message
    assert "Is PostgreSQL up and reachable?" in message
    assert "hunter2" not in message
    assert "snowmon:hunter2@" not in message


async def test_a_cut_database_fails_calls_promptly_and_the_pool_reconnects(
    relay: Relay, pg_schema: str, key_a: str
) -> None:
    store = relayed_store(relay, pg_schema, key_a)
    await store.open()
    try:
        await store.save_tokens("c1", full_tokens("1"), expected_version=0)

        await relay.cut()
        for call in (
            store.ping(),
            store.load_tokens("c1"),
            store.save_tokens("c1", full_tokens("2"), expected_version=1),
            store.save_health([("c1", full_health())]),
        ):
            took, error = await timed(call)
            assert isinstance(error, StoreError), error
            assert took < 3 * TIMEOUT

        await relay.restore()
        await store.ping()  # no reopening: the pool connects again by itself
        assert await store.load_tokens("c1") == StoredTokens(full_tokens("1"), 1)
        assert await store.save_tokens("c1", full_tokens("2"), expected_version=1) == 2
    finally:
        await store.close()


async def test_a_database_that_stops_answering_times_out_promptly(
    relay: Relay, pg_schema: str, key_a: str
) -> None:
    store = relayed_store(relay, pg_schema, key_a)
    await store.open()
    try:
        relay.stall()
        took, error = await timed(store.load_all_tokens())
        assert isinstance(error, StoreError)
        assert "did not answer in time" in str(error)
        assert took < 4 * TIMEOUT

        relay.resume()

        async def answers() -> bool:
            try:
                await store.ping()
            except StoreError:
                return False
            return True

        # The timed-out connection is discarded; a fresh one answers.
        deadline = time.monotonic() + 10 * TIMEOUT
        while not await answers():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await store.save_tokens("c1", full_tokens(), expected_version=0) == 1
    finally:
        await store.close()


async def test_terminated_backends_are_replaced_by_the_pool(pg_schema: str, key_a: str) -> None:
    store = PostgresStore(
        PG_DSN,
        Keyring([key_a]),
        schema=pg_schema,
        replica=f"outage-{pg_schema}",
        command_timeout=TIMEOUT,
        max_size=PG_MAX_SIZE,
    )
    await store.open()
    try:
        await store.register(["c1"])
        await store.claim(1, 30)
        await asyncio.gather(*(store.ping() for _ in range(4)))  # fill the pool
        admin = await asyncpg.connect(PG_DSN)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                f"snowmon outage-{pg_schema}",
            )
        finally:
            await admin.close()
        assert killed >= 1

        # Each call either fails promptly with StoreError or already runs on a new
        # connection; within a few calls everything works again.
        outcomes = []
        for _ in range(6):
            took, error = await timed(store.save_health([("c1", full_health())]))
            assert error is None or isinstance(error, StoreError), error
            assert took < 3 * TIMEOUT
            outcomes.append(error is None)
        assert outcomes[-1]
        assert await store.save_tokens("c1", full_tokens(), expected_version=0) == 1
        assert await store.load_all_health() == {"c1": full_health()}
    finally:
        await store.close()
