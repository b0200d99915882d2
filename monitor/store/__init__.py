"""Durable state behind one async protocol.

Backends: `sqlite.py` (embedded default), `postgres.py` (a fleet shared by replicas),
`memory.py` (tests). Tokens are encrypted by `crypto.Keyring` before they reach a backend's
tables. The keeper only knows `Store`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from monitor.model import AlertRecord, Health, HistoryEntry, StoredTokens, TokenSet


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema, check the keyring against stored tokens."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise `StoreError` when the store cannot be reached (readiness)."""
        ...

    # Tokens: written before they are used; `version` fences concurrent writers.
    async def load_tokens(self, connection_id: str) -> StoredTokens | None: ...

    async def load_all_tokens(self) -> dict[str, StoredTokens]: ...

    async def save_tokens(
        self, connection_id: str, tokens: TokenSet, *, expected_version: int
    ) -> int:
        """Save `tokens` if the stored version is `expected_version` (0 = none stored yet).

        Returns the new version; raises `StaleWriteError` when someone else wrote first.
        Durable when it returns (fsync'd / committed).
        """
        ...

    async def delete_tokens(self, connection_id: str) -> None: ...

    # Health: written in batches, the latest snapshot per connection wins.
    async def save_health(self, items: Sequence[tuple[str, Health]]) -> None: ...

    async def load_all_health(self) -> dict[str, Health]: ...

    # History: recent probes, refreshes and state changes, bounded per connection.
    async def append_history(self, entries: Sequence[HistoryEntry]) -> None: ...

    async def recent_history(self, connection_id: str, limit: int) -> list[HistoryEntry]: ...

    # Alert state (notify.rules), so a restart neither repeats nor forgets an alert.
    async def save_alerts(self, records: Sequence[AlertRecord]) -> None: ...

    async def delete_alerts(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete alert records by (connection_id, alert)."""
        ...

    async def load_alerts(self) -> list[AlertRecord]: ...

    async def load_alerts_for(self, connection_ids: Collection[str]) -> list[AlertRecord]:
        """The alert records of just these connections (say, the ones just adopted)."""
        ...

    # Outbox: notifications accepted but not yet delivered survive a restart.
    async def outbox_put(self, key: str, payload: str) -> None: ...

    async def outbox_all(self) -> list[tuple[str, str]]: ...

    async def outbox_delete(self, key: str) -> None: ...
