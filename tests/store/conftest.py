"""Backends under test. Every store backend answers to the same protocol suite: a new
backend (PostgreSQL next) adds one entry to `BACKENDS` (and to `DURABLE` once it
survives a restart)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.store import Store
from monitor.store.crypto import Keyring, generate_key
from monitor.store.memory import MemoryStore
from monitor.store.sqlite import SqliteStore

HISTORY_KEEP = 5


@dataclass(frozen=True)
class Backend:
    name: str
    # A new, unopened store over the backend's state: called twice, it is a restart.
    make: Callable[[], Store]


def _memory(tmp_path: Path, key: str) -> Backend:
    return Backend("memory", lambda: MemoryStore(history_per_connection=HISTORY_KEEP))


def _sqlite(tmp_path: Path, key: str) -> Backend:
    path = tmp_path / "state" / "snowmon.db"
    return Backend(
        "sqlite",
        lambda: SqliteStore(path, Keyring([key]), history_per_connection=HISTORY_KEEP),
    )


BACKENDS = {"memory": _memory, "sqlite": _sqlite}
DURABLE = {"sqlite": _sqlite}


@pytest.fixture
def key_a() -> str:
    return generate_key()


@pytest.fixture
def key_b() -> str:
    return generate_key()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path, key_a: str) -> Backend:
    return BACKENDS[request.param](tmp_path, key_a)


@pytest.fixture(params=sorted(DURABLE))
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path, key_a: str) -> Backend:
    return DURABLE[request.param](tmp_path, key_a)


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
