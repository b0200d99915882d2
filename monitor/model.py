"""Plain value types shared by every module: tokens, probe and token results, health.

Nothing here does I/O. Times are floats, seconds since the UNIX epoch on the daemon's
clock; durations are float seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitor.secret import Secret


class Grant(StrEnum):
    PASSWORD = "password"  # noqa: S105 (a grant type name)
    CLIENT_CREDENTIALS = "client_credentials"
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant type name)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What the token endpoint gave us, with the times we derived from it.

    `refresh_expires_at` is fixed at issue time: ServiceNow never extends it on refresh.
    """

    access_token: Secret
    access_expires_at: float
    obtained_at: float
    refresh_token: Secret | None = None
    refresh_issued_at: float | None = None
    refresh_expires_at: float | None = None
    scope: str = ""
    grant: Grant = Grant.PASSWORD

    def access_valid(self, now: float) -> bool:
        return now < self.access_expires_at

    def refresh_valid(self, now: float) -> bool:
        return (
            self.refresh_token is not None
            and self.refresh_expires_at is not None
            and now < self.refresh_expires_at
        )


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A token set as the store holds it: `version` grows by one on every write and is
    the fencing token for writers."""

    tokens: TokenSet
    version: int


class TokenFailure(StrEnum):
    REJECTED = "rejected"  # 401 access_denied: bad password, dead refresh token, bad client
    INVALID_CLIENT = "invalid_client"  # an RFC 6749 invalid_client answer
    GRANT_NOT_ALLOWED = "grant_not_allowed"  # 400 unauthorized_client / unsupported grant
    TRANSIENT = "transient"  # 5xx, 429, timeouts, resets
    HIBERNATING = "hibernating"  # the PDI hibernation page (HTML 200)
    MALFORMED = "malformed"  # a 200 that is not a token answer


@dataclass(frozen=True, slots=True)
class TokenResult:
    """The outcome of one call to `/oauth_token.do`: tokens, or a typed failure."""

    grant: Grant
    tokens: TokenSet | None
    failure: TokenFailure | None
    status: int | None
    detail: str
    retry_after: float | None = None
    started_at: float = 0.0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.tokens is not None


class ProbeReason(StrEnum):
    OK = "ok"
    AUTH_REJECTED = "auth_rejected"
    FORBIDDEN = "forbidden"
    INVALID_TABLE = "invalid_table"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    HIBERNATING = "hibernating"
    MAINTENANCE = "maintenance"
    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    RESET = "reset"
    BAD_RESPONSE = "bad_response"
    NO_TOKEN = "no_token"  # noqa: S105 no usable access token: the credential is the problem


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int | None
    reset_at: float | None
    rule: str | None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    reason: ProbeReason
    started_at: float
    duration: float
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds to wait before probing again
    rate_limit: RateLimit | None = None

    @property
    def ok(self) -> bool:
        return self.reason is ProbeReason.OK


class State(StrEnum):
    PENDING = "pending"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    CREDENTIALS_EXPIRED = "credentials_expired"
    HIBERNATING = "hibernating"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"


# Worst first: the status page and summaries sort by this.
STATE_SEVERITY: dict[State, int] = {
    State.CREDENTIALS_EXPIRED: 0,
    State.FAILING: 1,
    State.FORBIDDEN: 2,
    State.HIBERNATING: 3,
    State.RATE_LIMITED: 4,
    State.DEGRADED: 5,
    State.PENDING: 6,
    State.HEALTHY: 7,
}


@dataclass(frozen=True, slots=True)
class Health:
    """One connection's health: a state, since when, and what led there."""

    state: State
    since: float
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_reason: str = ""
    last_error: str = ""
    last_probe_at: float | None = None
    last_probe_reason: str = ""
    last_probe_duration: float | None = None
    last_probe_status: int | None = None
    # Token-endpoint rejections of the current credential, for "expired only on evidence".
    rejections: int = 0
    first_rejection_at: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    connection_id: str
    old: State
    new: State
    at: float
    reason: str
    detail: str = ""


class HistoryKind(StrEnum):
    PROBE = "probe"
    REFRESH = "refresh"
    GRANT = "grant"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    connection_id: str
    at: float
    kind: HistoryKind
    outcome: str
    detail: str = ""
    duration: float | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """Persisted state of one alert of one connection (see notify.rules)."""

    connection_id: str
    alert: str
    firing_since: float
    severity: str
    last_notified_at: float | None = None
    resolved_at: float | None = None
    channel: str = ""
    message_ts: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What alerting, the web app and metrics need to know about a connection."""

    id: str
    instance_url: str
    grant: Grant
    labels: dict[str, str] = field(default_factory=dict)
    channel: str = ""  # alert routing override; empty = route by labels, then default


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """A read-only snapshot of one connection, for the status API, page and alerting.

    Never carries a token: only the times derived from them."""

    info: ConnectionInfo
    health: Health
    access_expires_at: float | None
    refresh_expires_at: float | None
    refresh_issued_at: float | None
    can_renew_refresh: bool  # the grant can obtain a fresh refresh token by itself
    next_probe_at: float | None
    next_refresh_at: float | None
    owner: str = ""  # the replica that works on it (PostgreSQL fleets)


@dataclass(frozen=True, slots=True)
class AuthorizeTarget:
    """Where to send a browser to re-authorize one connection (`/oauth_auth.do`)."""

    connection_id: str
    instance_url: str  # https://acme.service-now.com, no trailing slash
    client_id: str
    scopes: tuple[str, ...] = ()
