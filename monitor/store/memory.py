"""An in-memory `Store` for tests of code above the store. Nothing is durable."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection, Sequence

from monitor.errors import StaleWriteError
from monitor.model import AlertRecord, Health, HistoryEntry, StoredTokens, TokenSet


class MemoryStore:
    def __init__(self, history_per_connection: int = 50) -> None:
        self._tokens: dict[str, StoredTokens] = {}
        self._health: dict[str, Health] = {}
        self._history: defaultdict[str, deque[HistoryEntry]] = defaultdict(
            lambda: deque(maxlen=history_per_connection)
        )
        self._alerts: dict[tuple[str, str], AlertRecord] = {}
        self._outbox: dict[str, str] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def load_tokens(self, connection_id: str) -> StoredTokens | None:
        return self._tokens.get(connection_id)

    async def load_all_tokens(self) -> dict[str, StoredTokens]:
        return dict(self._tokens)

    async def save_tokens(
        self, connection_id: str, tokens: TokenSet, *, expected_version: int
    ) -> int:
        current = self._tokens.get(connection_id)
        version = current.version if current else 0
        if version != expected_version:
            raise StaleWriteError(
                f"tokens of {connection_id} are at version {version}, not {expected_version}"
            )
        self._tokens[connection_id] = StoredTokens(tokens, version + 1)
        return version + 1

    async def delete_tokens(self, connection_id: str) -> None:
        self._tokens.pop(connection_id, None)

    async def save_health(self, items: Sequence[tuple[str, Health]]) -> None:
        self._health.update(items)

    async def load_all_health(self) -> dict[str, Health]:
        return dict(self._health)

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            self._history[entry.connection_id].append(entry)

    async def recent_history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        entries = list(self._history.get(connection_id, ()))
        return entries[::-1][:limit]

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        for record in records:
            self._alerts[(record.connection_id, record.alert)] = record

    async def delete_alerts(self, keys: Sequence[tuple[str, str]]) -> None:
        for key in keys:
            self._alerts.pop(key, None)

    async def load_alerts(self) -> list[AlertRecord]:
        return list(self._alerts.values())

    async def load_alerts_for(self, connection_ids: Collection[str]) -> list[AlertRecord]:
        wanted = set(connection_ids)
        return [r for (cid, _), r in self._alerts.items() if cid in wanted]

    async def outbox_put(self, key: str, payload: str) -> None:
        self._outbox[key] = payload

    async def outbox_all(self) -> list[tuple[str, str]]:
        return sorted(self._outbox.items())

    async def outbox_delete(self, key: str) -> None:
        self._outbox.pop(key, None)
