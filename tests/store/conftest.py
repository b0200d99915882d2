"""Backends under test. Every store backend answers to the same protocol suite: a new
backend adds one entry to `BACKENDS` (and to `DURABLE` once it survives a restart).

PostgreSQL tests (marked `postgres`) use the server at `SNOWMON_TEST_POSTGRES_DSN`
(default postgresql://postgres@127.0.0.1:5432/test); each test works in a schema of its
own with a random name, dropped at the end, so parallel and earlier runs never meet.
Deselect them with `-m "not postgres"` where there is no server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from monitor.store import Store
from monitor.store.crypto import Keyring, generate_key
from monitor.store.memory import MemoryStore
from monitor.store.postgres import PostgresStore
from monitor.store.sqlite import SqliteStore

HISTORY_KEEP = 5
PG_DSN = os.environ.get("SNOWMON_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
# Small pools: parallel test runs share one server's max_connections.
PG_MAX_SIZE = 4


@dataclass(frozen=True)
class Backend:
    name: str
    # A new, unopened store over the backend's state: called twice, it is a restart.
    make: Callable[[], Store]
    # Removes the backend's state at the end of the test (the PostgreSQL schema).
    cleanup: Callable[[], Awaitable[None]] | None = None


def new_schema_name() -> str:
    return f"snowmon_test_{secrets.token_hex(6)}"


async def drop_schema(schema: str) -> None:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_DSN} ({exc}); set SNOWMON_TEST_POSTGRES_DSN "
            'or deselect these tests with -m "not postgres"'
        )
    try:
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _memory(tmp_path: Path, key: str) -> Backend:
    return Backend("memory", lambda: MemoryStore(history_per_connection=HISTORY_KEEP))


def _sqlite(tmp_path: Path, key: str) -> Backend:
    path = tmp_path / "state" / "snowmon.db"
    return Backend(
        "sqlite",
        lambda: SqliteStore(path, Keyring([key]), history_per_connection=HISTORY_KEEP),
    )


def _postgres(tmp_path: Path, key: str) -> Backend:
    schema = new_schema_name()
    return Backend(
        "postgres",
        lambda: PostgresStore(
            PG_DSN,
            Keyring([key]),
            history_per_connection=HISTORY_KEEP,
            schema=schema,
            max_size=PG_MAX_SIZE,
        ),
        cleanup=lambda: drop_schema(schema),
    )


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}
DURABLE = {"sqlite": _sqlite, "postgres": _postgres}
MARKS = {"postgres": pytest.mark.postgres}


def _params(names: Iterable[str]) -> list[object]:
    return [pytest.param(name, marks=MARKS.get(name, ())) for name in sorted(names)]


async def _with_cleanup(made: Backend) -> AsyncIterator[Backend]:
    try:
        yield made
    finally:
        if made.cleanup is not None:
            await made.cleanup()


@pytest.fixture
def key_a() -> str:
    return generate_key()


@pytest.fixture
def key_b() -> str:
    return generate_key()


@pytest.fixture(params=_params(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, key_a: str
) -> AsyncIterator[Backend]:
    async for made in _with_cleanup(BACKENDS[request.param](tmp_path, key_a)):
        yield made


@pytest.fixture(params=_params(DURABLE))
async def durable_backend(
    request: pytest.FixtureRequest, tmp_path: Path, key_a: str
) -> AsyncIterator[Backend]:
    async for made in _with_cleanup(DURABLE[request.param](tmp_path, key_a)):
        yield made


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema name for this test (the store creates it); dropped at the end."""
    schema = new_schema_name()
    try:
        yield schema
    finally:
        await drop_schema(schema)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "snowmon.db"


@pytest.fixture
async def sqlite_store(db_path: Path, key_a: str) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(db_path, Keyring([key_a]), history_per_connection=HISTORY_KEEP)
    await opened.open()
    yield opened
    await opened.close()
