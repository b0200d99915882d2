"""An in-memory FleetView and Readiness for the web layer's tests and benchmarks.

Statuses are built with every field the API shows, so a renderer that drops one shows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from monitor.clock import Clock
from monitor.model import (
    ConnectionInfo,
    ConnectionStatus,
    Grant,
    Health,
    HistoryEntry,
    HistoryKind,
    ProbeReason,
    ProbeResult,
    State,
    TokenFailure,
    TokenResult,
    TokenSet,
)
from monitor.secret import Secret
from monitor.web.ports import AuthorizeTarget

T0 = 1_800_000_000.0
DAY = 86400.0
# Strings that must never appear in any response.
ACCESS_TOKEN = "AT" + "x" * 84
REFRESH_TOKEN = "RT" + "y" * 84


def make_status(
    connection_id: str,
    *,
    state: State = State.HEALTHY,
    now: float = T0,
    since_ago: float = 3600.0,
    labels: dict[str, str] | None = None,
    grant: Grant = Grant.PASSWORD,
    refresh_left: float | None = 50 * DAY,
    last_error: str = "",
    last_reason: str = "",
) -> ConnectionStatus:
    bad = state is not State.HEALTHY
    return ConnectionStatus(
        info=ConnectionInfo(
            id=connection_id,
            instance_url=f"https://{connection_id.split('-', maxsplit=1)[0]}.service-now.com",
            grant=grant,
            labels=dict(labels or {}),
        ),
        health=Health(
            state=state,
            since=now - since_ago,
            consecutive_failures=3 if bad else 0,
            consecutive_successes=0 if bad else 5,
            last_reason=last_reason or ("auth_rejected" if bad else "ok"),
            last_error=last_error,
            last_probe_at=now - 30.0,
            last_probe_reason="auth_rejected" if bad else "ok",
            last_probe_duration=0.125,
            last_probe_status=401 if bad else 200,
        ),
        access_expires_at=now + 1500.0,
        refresh_expires_at=None if refresh_left is None else now + refresh_left,
        refresh_issued_at=None if refresh_left is None else now - DAY,
        can_renew_refresh=grant is not Grant.AUTHORIZATION_CODE,
        next_probe_at=now + 270.0,
        next_refresh_at=now + 1200.0,
        owner="replica-1",
    )


def sample_fleet(n: int, *, now: float = T0, seed: int = 7) -> list[ConnectionStatus]:
    """`n` connections across every state, three customers and two environments."""
    rng = random.Random(seed)
    states = list(State)
    weights = [1, 30, 2, 3, 2, 2, 2, 2]  # mostly healthy, some of everything
    out = []
    for i in range(n):
        customer = ("acme", "globex", "initech")[i % 3]
        state = rng.choices(states, weights)[0] if i else State.CREDENTIALS_EXPIRED
        grant = Grant.AUTHORIZATION_CODE if i % 4 == 0 else Grant.PASSWORD
        out.append(
            make_status(
                f"{customer}-{i:05d}",
                state=state,
                now=now,
                since_ago=rng.uniform(10, 30 * DAY),
                labels={"customer": customer, "env": "prod" if i % 2 else "test"},
                grant=grant,
                refresh_left=rng.uniform(-DAY, 100 * DAY),
            )
        )
    return out


@dataclass
class Completion:
    connection_id: str
    code: str
    redirect_uri: str
    code_verifier: str


@dataclass
class FakeFleet:
    clock: Clock
    by_id: dict[str, ConnectionStatus] = field(default_factory=dict)
    histories: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    targets: dict[str, AuthorizeTarget] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)
    refreshes: list[str] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    exchange_ok: bool = True
    held_elsewhere: set[str] = field(default_factory=set)  # ids another replica keeps

    @classmethod
    def of(cls, clock: Clock, statuses: Iterable[ConnectionStatus]) -> FakeFleet:
        fleet = cls(clock=clock, by_id={s.info.id: s for s in statuses})
        for status in fleet.by_id.values():
            if status.info.grant is Grant.AUTHORIZATION_CODE:
                fleet.targets[status.info.id] = AuthorizeTarget(
                    connection_id=status.info.id,
                    instance_url=status.info.instance_url,
                    client_id="c" * 32,
                    scopes=("useraccount",),
                )
        return fleet

    def statuses(self) -> Sequence[ConnectionStatus]:
        return list(self.by_id.values())

    def status(self, connection_id: str) -> ConnectionStatus | None:
        return self.by_id.get(connection_id)

    async def history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        return self.histories.get(connection_id, [])[:limit]

    async def probe_now(self, connection_id: str) -> ProbeResult:
        if connection_id not in self.by_id:
            raise KeyError(connection_id)
        self.probes.append(connection_id)
        return ProbeResult(
            reason=ProbeReason.OK, started_at=self.clock.now(), duration=0.2, status=200
        )

    async def refresh_now(self, connection_id: str) -> TokenResult:
        status = self.by_id[connection_id]
        self.refreshes.append(connection_id)
        return self._token_result(status.info.grant, ok=True)

    def holds(self, connection_id: str) -> bool:
        return connection_id in self.by_id and connection_id not in self.held_elsewhere

    def authorize_target(self, connection_id: str) -> AuthorizeTarget | None:
        return self.targets.get(connection_id)

    async def complete_authorization(
        self, connection_id: str, code: Secret, redirect_uri: str, code_verifier: Secret
    ) -> TokenResult:
        status = self.by_id[connection_id]
        self.completions.append(
            Completion(connection_id, code.reveal(), redirect_uri, code_verifier.reveal())
        )
        result = self._token_result(Grant.AUTHORIZATION_CODE, ok=self.exchange_ok)
        if result.ok:  # the keeper's job: the connection recovers
            now = self.clock.now()
            self.by_id[connection_id] = replace(
                status,
                health=replace(status.health, state=State.PENDING, since=now),
                refresh_expires_at=now + 100 * DAY,
            )
        return result

    def _token_result(self, grant: Grant, *, ok: bool) -> TokenResult:
        now = self.clock.now()
        tokens = TokenSet(
            access_token=Secret(ACCESS_TOKEN),
            access_expires_at=now + 1800,
            obtained_at=now,
            refresh_token=Secret(REFRESH_TOKEN),
            refresh_issued_at=now,
            refresh_expires_at=now + 100 * DAY,
            scope="useraccount",
            grant=grant,
        )
        if ok:
            return TokenResult(grant, tokens, None, 200, "", started_at=now, duration=0.3)
        return TokenResult(
            grant,
            None,
            # A detail that carries a token by mistake: the web app must redact it.
            TokenFailure.REJECTED,
            401,
            f"access_denied for code {REFRESH_TOKEN}",
            started_at=now,
            duration=0.3,
        )


def history_of(connection_id: str, now: float = T0) -> list[HistoryEntry]:
    return [
        HistoryEntry(connection_id, now - 10, HistoryKind.STATE, "credentials_expired", "3 x 401"),
        HistoryEntry(
            connection_id,
            now - 20,
            HistoryKind.REFRESH,
            "rejected",
            f"token endpoint said no to {REFRESH_TOKEN}",
            duration=0.25,
            status=401,
        ),
        HistoryEntry(connection_id, now - 30, HistoryKind.PROBE, "auth_rejected", "", 0.1, 401),
    ]


@dataclass
class FakeReadiness:
    checks: dict[str, bool] = field(
        default_factory=lambda: {"store": True, "scheduler": True, "config": True}
    )
    error: Exception | None = None

    async def check(self) -> dict[str, bool]:
        if self.error is not None:
            raise self.error
        return dict(self.checks)


def render_metrics(accept: str) -> tuple[list[bytes], str]:
    """The exposition in chunks, as `render_chunks` gives it: /metrics must send them all,
    in order."""
    if "application/openmetrics-text" in accept:
        return (
            [b"# TYPE snowmon_up gauge\n", b"snowmon_up 1\n", b"# EOF\n"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    return [b"snowmon_up", b" 1\n"], "text/plain; version=0.0.4; charset=utf-8"
