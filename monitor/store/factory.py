"""Choosing the store backend from `daemon.store`: a URL whose scheme names the backend.

`sqlite:///var/lib/snowmon/snowmon.db` is the file `/var/lib/snowmon/snowmon.db`
(everything after `sqlite://` is the path, so `sqlite://snowmon.db` is relative to the
working directory). `postgresql://` DSNs are the seam for the shared-fleet backend.
"""

from __future__ import annotations

from pathlib import Path

from monitor.clock import Clock
from monitor.errors import StoreError
from monitor.store import Store
from monitor.store.crypto import Keyring
from monitor.store.postgres import PostgresStore
from monitor.store.sqlite import SqliteStore

_SQLITE = "sqlite://"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(
    url: str,
    keyring: Keyring,
    *,
    history_per_connection: int,
    clock: Clock | None = None,
    replica: str | None = None,
) -> Store:
    """Build the store `url` names; the caller then awaits `store.open()` (and `close()`)."""
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if not path:
            raise StoreError(f"store URL {url!r} names no file; e.g. sqlite:///var/lib/snowmon.db")
        return SqliteStore(
            Path(path), keyring, history_per_connection=history_per_connection, clock=clock
        )
    if url.startswith(_POSTGRES):
        # The DSN goes to asyncpg as it is (libpq URI syntax, query parameters included).
        # Without a replica name the store does not check leases: one process per fleet.
        return PostgresStore(
            url, keyring, history_per_connection=history_per_connection, replica=replica
        )
    # Only the scheme is quoted: a DSN can carry a password.
    scheme = url.split(":", 1)[0] if ":" in url else "(none)"
    raise StoreError(
        f"store URL scheme {scheme!r} is not supported; use sqlite:///path/to/file.db "
        "or postgresql://..."
    )
