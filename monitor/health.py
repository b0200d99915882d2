"""The health state machine of one connection: pure, total, and clocked by its caller.

`apply(health, event, now, thresholds) -> (health, transitions)` takes what just happened
(a probe result or a token-endpoint outcome) and returns the new health and the state
changes it caused. No I/O, no clock of its own: every transition is table-tested.

Rules, in words:
- a successful probe makes a connection healthy, except that one recovering from
  `failing` needs `success_threshold` successes in a row (it is `degraded` meanwhile);
- generic failures (timeouts, 5xx, resets, ...) make it `degraded`, and `failing` after
  `failure_threshold` in a row;
- hibernation, rate limiting and ACL refusals are states of their own, at once;
- credentials are declared expired only on evidence: the token endpoint rejected them
  twice at least `rejection_gap` seconds apart, or a probe was refused with a token
  obtained moments before (`CredentialRefused`). One 401 alone proves nothing, since
  ServiceNow answers some requests with a transient 401.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from monitor.model import (
    Health,
    ProbeReason,
    ProbeResult,
    State,
    TokenFailure,
    TokenResult,
    Transition,
)

# Token failures that speak about the credential itself, not about the network.
CREDENTIAL_FAILURES = frozenset(
    {TokenFailure.REJECTED, TokenFailure.INVALID_CLIENT, TokenFailure.GRANT_NOT_ALLOWED}
)

_OWN_STATE = {
    ProbeReason.HIBERNATING: State.HIBERNATING,
    ProbeReason.RATE_LIMITED: State.RATE_LIMITED,
    ProbeReason.FORBIDDEN: State.FORBIDDEN,
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    failure_threshold: int = 3
    success_threshold: int = 2
    rejection_gap: float = 30.0


@dataclass(frozen=True, slots=True)
class CredentialRefused:
    """A probe was refused (401) with an access token obtained moments before."""

    detail: str


@dataclass(frozen=True, slots=True)
class NotAuthorized:
    """The connection holds no token and its grant cannot get one without a person
    (authorization_code before the connect flow ran)."""

    detail: str


Event = ProbeResult | TokenResult | CredentialRefused | NotAuthorized


def initial(now: float) -> Health:
    return Health(state=State.PENDING, since=now)


def apply(
    health: Health, event: Event, now: float, thresholds: Thresholds, connection_id: str
) -> tuple[Health, list[Transition]]:
    if isinstance(event, ProbeResult):
        new = _on_probe(health, event, thresholds)
    elif isinstance(event, TokenResult):
        new = _on_token(health, event, now, thresholds)
    elif isinstance(event, CredentialRefused):
        new = _expired(health, "probe_refused", event.detail)
    else:
        new = _expired(health, "not_authorized", event.detail)
    if new.state is health.state:
        return new, []
    new = replace(new, since=now)
    return new, [
        Transition(connection_id, health.state, new.state, now, new.last_reason, new.last_error)
    ]


def _on_probe(health: Health, result: ProbeResult, thresholds: Thresholds) -> Health:
    probed = replace(
        health,
        last_probe_at=result.started_at,
        last_probe_reason=result.reason.value,
        last_probe_duration=result.duration,
        last_probe_status=result.status,
    )
    if result.ok:
        successes = health.consecutive_successes + 1
        recovering = (
            health.state is State.FAILING
            or (health.state is State.DEGRADED and health.consecutive_failures == 0)
        ) and successes < thresholds.success_threshold
        return replace(
            probed,
            state=State.DEGRADED if recovering else State.HEALTHY,
            consecutive_successes=successes,
            consecutive_failures=0,
            last_reason=result.reason.value,
            last_error="",
            rejections=0,
            first_rejection_at=None,
        )
    failures = health.consecutive_failures + 1
    failed = replace(
        probed,
        consecutive_failures=failures,
        consecutive_successes=0,
        last_reason=result.reason.value,
        last_error=result.detail,
    )
    if health.state is State.CREDENTIALS_EXPIRED and result.reason in (
        ProbeReason.NO_TOKEN,
        ProbeReason.AUTH_REJECTED,
    ):
        # Without a working credential every probe fails the same way: the state that
        # says what to do (re-authorize), and why, stays.
        return replace(
            failed,
            state=State.CREDENTIALS_EXPIRED,
            last_reason=health.last_reason,
            last_error=health.last_error,
        )
    if health.state is State.HIBERNATING and result.reason is ProbeReason.NO_TOKEN:
        # The token endpoint said the instance sleeps; a probe without a token cannot
        # tell us more.
        return replace(
            failed,
            state=State.HIBERNATING,
            last_reason=health.last_reason,
            last_error=health.last_error,
        )
    own = _OWN_STATE.get(result.reason)
    if own is not None:
        return replace(failed, state=own)
    recovering = (
        health.state is State.DEGRADED
        and health.consecutive_failures == 0
        and health.consecutive_successes > 0
    )
    # A failure during recovery from `failing` is failing again: recovery needs
    # `success_threshold` successes in a row.
    state = (
        State.FAILING if failures >= thresholds.failure_threshold or recovering else State.DEGRADED
    )
    if health.state is State.CREDENTIALS_EXPIRED:
        state = State.CREDENTIALS_EXPIRED
    return replace(failed, state=state)


def _on_token(health: Health, result: TokenResult, now: float, thresholds: Thresholds) -> Health:
    if result.ok:
        # A working credential clears the evidence; the state itself waits for a probe.
        return replace(health, rejections=0, first_rejection_at=None)
    if result.failure is TokenFailure.HIBERNATING:
        return replace(
            health, state=State.HIBERNATING, last_reason="hibernating", last_error=result.detail
        )
    if result.failure not in CREDENTIAL_FAILURES:
        return replace(health, last_error=result.detail)
    first = health.first_rejection_at if health.first_rejection_at is not None else now
    rejections = health.rejections + 1
    rejected = replace(
        health,
        rejections=rejections,
        first_rejection_at=first,
        last_error=result.detail,
    )
    if rejections >= 2 and now - first >= thresholds.rejection_gap:
        reason = result.failure.value if result.failure else "rejected"
        return _expired(rejected, reason, result.detail)
    return rejected


def _expired(health: Health, reason: str, detail: str) -> Health:
    return replace(
        health,
        state=State.CREDENTIALS_EXPIRED,
        last_reason=reason,
        last_error=detail,
        consecutive_successes=0,
    )
