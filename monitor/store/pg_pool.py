"""The PostgreSQL store's pool: connecting to one database and running one call on it,
promptly, with every failure turned into a `StoreError` that says what to do.

`command_timeout` bounds connecting, waiting for a pooled connection and each query, so a
database that went away or is too slow fails calls within seconds instead of hanging the
keeper. The pool replaces broken connections by itself: calls succeed again once the
database is back. Messages name the database without user or password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from monitor.errors import StoreError
from monitor.store.pg_schema import db_error, describe_dsn, expected_db_error, quote_schema

if TYPE_CHECKING:
    from monitor.store.pg_schema import Conn

T = TypeVar("T")


class PgPool:
    """An asyncpg pool that is either open or not; `open()` before `run()`."""

    def __init__(
        self,
        dsn: str,
        *,
        replica: str | None,
        schema: str | None,
        min_size: int,
        max_size: int,
        command_timeout: float,
    ) -> None:
        if command_timeout <= 0:
            raise ValueError("command_timeout must be positive")
        self._dsn = dsn
        self._settings = {"jit": "off", "application_name": f"snowmon {replica or ''}"[:63]}
        if schema is not None:
            self._settings["search_path"] = quote_schema(schema)
        self._min_size, self._max_size = min_size, max_size
        self._timeout = command_timeout
        self.label = describe_dsn(dsn, schema)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def error(self, action: str, exc: BaseException) -> StoreError:
        return db_error(self.label, self._dsn, action, exc)

    async def open(self, *prepare: tuple[str, Callable[[Conn], Awaitable[object]]]) -> None:
        """Connect, then run each (action, fn) of `prepare` (migrate, check keys); if one
        fails, the pool is gone again."""
        if self._pool is not None:
            raise StoreError(f"{self.label} is already open")
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,  # connecting
                command_timeout=self._timeout,
                server_settings=self._settings,
            )
        except Exception as exc:
            if expected_db_error(exc) or isinstance(exc, ValueError | OverflowError):
                raise self.error("connect", exc) from exc
            raise
        self._pool = pool
        try:
            for action, fn in prepare:
                await self.run(action, fn)
        except BaseException:
            self._pool = None
            pool.terminate()
            raise

    async def run(self, action: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self.label} is not open")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await fn(conn)
        except StoreError:
            raise
        except Exception as exc:
            if expected_db_error(exc):
                raise self.error(action, exc) from exc
            raise

    async def close(self) -> None:
        """Close within the timeout, or cut the connections."""
        pool = self._pool
        if pool is None:
            return
        self._pool = None
        try:
            async with asyncio.timeout(self._timeout):
                await pool.close()
        except TimeoutError:
            pool.terminate()
