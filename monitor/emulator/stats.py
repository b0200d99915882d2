"""Evidence: what the fleet saw, counted per instance and per OAuth client.

Tests and benchmarks assert on these counts instead of guessing from the daemon's side:
how many grants of each type were issued, how many refreshes overlapped on one refresh
token, how often an expired access token was still presented, what the Table API
answered. Objects are created on first use so an idle instance costs nothing.
"""

from __future__ import annotations

from collections import Counter


class ClientStats:
    __slots__ = (
        "expired_token_uses",
        "flaky_denials",
        "grants",
        "last_refresh_at",
        "refresh_overlaps",
        "refreshes",
        "rejected",
        "rejected_refresh_tokens",
        "reused_refresh_tokens",
    )

    def __init__(self) -> None:
        self.grants: Counter[str] = Counter()  # tokens issued, by grant type
        self.refreshes = 0  # successful refresh_token grants
        # pairs of refresh requests carrying the same refresh token that were in flight at once
        self.refresh_overlaps = 0
        self.reused_refresh_tokens = 0  # strict mode: an already rotated token came back
        self.rejected_refresh_tokens = 0  # unknown, expired, revoked or foreign refresh tokens
        self.rejected = 0  # every token-endpoint failure naming this client
        self.flaky_denials = 0  # valid requests refused by the flaky_token fault
        self.expired_token_uses = 0  # Table API calls with this client's expired access token
        self.last_refresh_at: float | None = None  # emulated time

    def to_json(self) -> dict[str, object]:
        return {
            "grants": dict(self.grants),
            "refreshes": self.refreshes,
            "refresh_overlaps": self.refresh_overlaps,
            "reused_refresh_tokens": self.reused_refresh_tokens,
            "rejected_refresh_tokens": self.rejected_refresh_tokens,
            "rejected": self.rejected,
            "flaky_denials": self.flaky_denials,
            "expired_token_uses": self.expired_token_uses,
            "last_refresh_at": self.last_refresh_at,
        }


class InstanceStats:
    __slots__ = (
        "clients",
        "expired_token_uses",
        "rejected_access_tokens",
        "table_requests",
        "token_requests",
    )

    def __init__(self) -> None:
        self.clients: dict[str, ClientStats] = {}
        self.table_requests: Counter[int] = Counter()  # Table API answers by status
        self.token_requests: Counter[int] = Counter()  # oauth_token.do answers by status
        self.expired_token_uses = 0
        self.rejected_access_tokens = 0  # unknown, revoked or foreign bearer tokens

    def client(self, client_id: str) -> ClientStats:
        stats = self.clients.get(client_id)
        if stats is None:
            stats = self.clients[client_id] = ClientStats()
        return stats

    def to_json(self) -> dict[str, object]:
        return {
            "clients": {cid: stats.to_json() for cid, stats in self.clients.items()},
            "table_requests": {str(k): v for k, v in sorted(self.table_requests.items())},
            "token_requests": {str(k): v for k, v in sorted(self.token_requests.items())},
            "expired_token_uses": self.expired_token_uses,
            "rejected_access_tokens": self.rejected_access_tokens,
        }


class FleetTotals:
    """Sums over every instance and client: what a benchmark asserts on."""

    __slots__ = (
        "connections_accepted",
        "expired_token_uses",
        "grants",
        "instances_seen",
        "refresh_overlaps",
        "refreshes",
        "rejected_access_tokens",
        "rejected_refresh_tokens",
        "reused_refresh_tokens",
        "table_requests",
        "token_requests",
    )

    def __init__(self) -> None:
        self.grants: Counter[str] = Counter()
        self.refreshes = 0
        self.refresh_overlaps = 0
        self.reused_refresh_tokens = 0
        self.rejected_refresh_tokens = 0
        self.expired_token_uses = 0
        self.rejected_access_tokens = 0
        self.table_requests: Counter[int] = Counter()
        self.token_requests: Counter[int] = Counter()
        self.instances_seen = 0
        # TCP connections the fleet's sockets accepted: with the request counts, how often
        # clients opened new connections instead of reusing kept-alive ones.
        self.connections_accepted = 0

    def add(self, stats: InstanceStats) -> None:
        self.instances_seen += 1
        self.table_requests.update(stats.table_requests)
        self.token_requests.update(stats.token_requests)
        self.expired_token_uses += stats.expired_token_uses
        self.rejected_access_tokens += stats.rejected_access_tokens
        for client in stats.clients.values():
            self.grants.update(client.grants)
            self.refreshes += client.refreshes
            self.refresh_overlaps += client.refresh_overlaps
            self.reused_refresh_tokens += client.reused_refresh_tokens
            self.rejected_refresh_tokens += client.rejected_refresh_tokens

    def to_json(self) -> dict[str, object]:
        return {
            "instances_seen": self.instances_seen,
            "grants": dict(self.grants),
            "refreshes": self.refreshes,
            "refresh_overlaps": self.refresh_overlaps,
            "reused_refresh_tokens": self.reused_refresh_tokens,
            "rejected_refresh_tokens": self.rejected_refresh_tokens,
            "expired_token_uses": self.expired_token_uses,
            "rejected_access_tokens": self.rejected_access_tokens,
            "table_requests": {str(k): v for k, v in sorted(self.table_requests.items())},
            "token_requests": {str(k): v for k, v in sorted(self.token_requests.items())},
            "connections_accepted": self.connections_accepted,
        }
