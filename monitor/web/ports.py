"""Ports: what the web app needs from the daemon, and nothing more.

`AuthorizeTarget` (where to send a browser to re-authorize a connection: instance URL,
client id, scopes) is defined in `monitor.model` and re-exported here.

The keeper implements `FleetView` (an in-memory read side plus "do it now" controls), the
daemon implements `Readiness`. The web app keeps no state of its own besides the
connect flow's pending authorizations, so every answer it gives comes through these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# AuthorizeTarget lives in the model, so the keeper can build one without importing web.
from monitor.model import (
    AuthorizeTarget,
    ConnectionStatus,
    HistoryEntry,
    ProbeResult,
    TokenResult,
)
from monitor.secret import Secret


class FleetView(Protocol):
    def statuses(self) -> Sequence[ConnectionStatus]:
        """Every connection, in any order; cheap (in memory)."""
        ...

    def status(self, connection_id: str) -> ConnectionStatus | None: ...

    async def history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        """The newest `limit` probes, refreshes and state changes, newest first."""
        ...

    async def probe_now(self, connection_id: str) -> ProbeResult:
        """Probe now and answer the result; `KeyError` for an unknown connection."""
        ...

    async def refresh_now(self, connection_id: str) -> TokenResult:
        """Refresh (or re-grant) now; `KeyError` for an unknown connection."""
        ...

    def holds(self, connection_id: str) -> bool:
        """Whether this process works on the connection (always, but in a fleet shared
        through PostgreSQL, where another replica may hold it): actions run there."""
        ...

    def authorize_target(self, connection_id: str) -> AuthorizeTarget | None:
        """None when the connection is unknown or its grant is not authorization_code."""
        ...

    async def complete_authorization(
        self, connection_id: str, code: Secret, redirect_uri: str, code_verifier: Secret
    ) -> TokenResult:
        """Exchange the code, store the tokens; the connection recovers without restart.

        `KeyError` for an unknown connection."""
        ...


class Readiness(Protocol):
    async def check(self) -> dict[str, bool]:
        """Each dependency's readiness, e.g. {"store": True, "scheduler": True, "config": True}."""
        ...


__all__ = ["AuthorizeTarget", "FleetView", "Readiness"]
