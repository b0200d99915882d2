"""The health state machine, transition by transition, with explicit times.

Each case feeds a sequence of `(seconds after T0, event)` to `apply`, starting from
`initial(T0)`, and checks the final state and every transition `(old, new, reason)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from monitor.health import (
    CREDENTIAL_FAILURES,
    CredentialRefused,
    Event,
    NotAuthorized,
    Thresholds,
    apply,
    initial,
)
from monitor.model import (
    Grant,
    Health,
    ProbeReason,
    ProbeResult,
    State,
    TokenFailure,
    TokenResult,
    TokenSet,
    Transition,
)
from monitor.secret import Secret

T0 = 1_800_000_000.0
CONN = "acme-prod"
DEFAULT = Thresholds(failure_threshold=3, success_threshold=2, rejection_gap=30.0)

P, H, D, F = State.PENDING, State.HEALTHY, State.DEGRADED, State.FAILING
X, HIB, RL, FB = State.CREDENTIALS_EXPIRED, State.HIBERNATING, State.RATE_LIMITED, State.FORBIDDEN


def probe(reason: ProbeReason, detail: str = "") -> ProbeResult:
    status = {ProbeReason.OK: 200, ProbeReason.AUTH_REJECTED: 401}.get(reason)
    return ProbeResult(reason, started_at=0.0, duration=0.12, status=status, detail=detail)


OK = probe(ProbeReason.OK)
TIMEOUT = probe(ProbeReason.TIMEOUT, "timeout")
AUTH_REJECTED = probe(ProbeReason.AUTH_REJECTED, "User Not Authenticated")
NO_TOKEN = probe(ProbeReason.NO_TOKEN, "no usable access token")
HIBERNATING = probe(ProbeReason.HIBERNATING, "instance is hibernating")
RATE_LIMITED = probe(ProbeReason.RATE_LIMITED, "Rate limit exceeded")
FORBIDDEN = probe(ProbeReason.FORBIDDEN, "User Not Authorized")
SERVER_ERROR = probe(ProbeReason.SERVER_ERROR, "Something broke")

_TOKENS = TokenSet(access_token=Secret("a" * 86), access_expires_at=T0 + 1799, obtained_at=T0)
TOKEN_OK = TokenResult(Grant.REFRESH_TOKEN, _TOKENS, None, 200, "")


def token_failure(failure: TokenFailure, detail: str = "") -> TokenResult:
    status = {
        TokenFailure.REJECTED: 401,
        TokenFailure.INVALID_CLIENT: 401,
        TokenFailure.GRANT_NOT_ALLOWED: 400,
        TokenFailure.TRANSIENT: 503,
        TokenFailure.HIBERNATING: 200,
        TokenFailure.MALFORMED: 200,
    }[failure]
    return TokenResult(Grant.REFRESH_TOKEN, None, failure, status, detail or failure.value)


REJECTED = token_failure(TokenFailure.REJECTED, "server_error: access_denied")
INVALID_CLIENT = token_failure(TokenFailure.INVALID_CLIENT, "invalid_client")
NOT_ALLOWED = token_failure(TokenFailure.GRANT_NOT_ALLOWED, "unauthorized_client: ...")
TRANSIENT = token_failure(TokenFailure.TRANSIENT, "HTTP 503")
MALFORMED = token_failure(TokenFailure.MALFORMED, "answer without access_token")
TOKEN_HIBERNATING = token_failure(TokenFailure.HIBERNATING, "instance is hibernating")
REFUSED = CredentialRefused("401 with a token obtained 2 s before")
NOT_AUTHORIZED = NotAuthorized("authorization_code grant: nobody has connected it yet")

Step = tuple[float, Event]


def run(
    steps: Sequence[Step], thresholds: Thresholds = DEFAULT, start: Health | None = None
) -> tuple[Health, list[Transition]]:
    health = start if start is not None else initial(T0)
    transitions: list[Transition] = []
    for offset, event in steps:
        health, changed = apply(health, event, T0 + offset, thresholds, CONN)
        transitions.extend(changed)
    return health, transitions


def every(seconds: float, *events: Event, start: float = 0.0) -> list[Step]:
    """Events `seconds` apart, starting at `start`."""
    return [(start + i * seconds, event) for i, event in enumerate(events)]


def moves(transitions: Sequence[Transition]) -> list[tuple[State, State, str]]:
    return [(t.old, t.new, t.reason) for t in transitions]


TO_HEALTHY = [(P, H, "ok")]
TO_FAILING = [(P, H, "ok"), (H, D, "timeout"), (D, F, "timeout")]

# (events, final state, transitions (old, new, reason))
CASES = [
    # --- probes: healthy, degraded, failing -----------------------------------------
    pytest.param(every(10, OK), H, TO_HEALTHY, id="pending-ok-healthy"),
    pytest.param(every(10, TIMEOUT), D, [(P, D, "timeout")], id="pending-failure-degraded"),
    pytest.param(every(10, OK, OK, OK), H, TO_HEALTHY, id="healthy-stays-healthy"),
    pytest.param(
        every(10, OK, TIMEOUT), D, [*TO_HEALTHY, (H, D, "timeout")], id="healthy-1-failure"
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT),
        D,
        [*TO_HEALTHY, (H, D, "timeout")],
        id="healthy-2-failures-still-degraded",
    ),
    pytest.param(every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT), F, TO_FAILING, id="3-failures-failing"),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, SERVER_ERROR),
        F,
        TO_FAILING,
        id="failing-stays-failing",
    ),
    pytest.param(
        every(10, TIMEOUT, TIMEOUT, TIMEOUT),
        F,
        [(P, D, "timeout"), (D, F, "timeout")],
        id="pending-3-failures-failing",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, OK),
        H,
        [*TO_HEALTHY, (H, D, "timeout"), (D, H, "ok")],
        id="degraded-1-success-healthy",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, OK, TIMEOUT, TIMEOUT),
        D,
        [*TO_HEALTHY, (H, D, "timeout"), (D, H, "ok"), (H, D, "timeout")],
        id="a-success-resets-the-failure-count",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, OK),
        D,
        [*TO_FAILING, (F, D, "ok")],
        id="failing-1-success-degraded",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, OK, OK),
        H,
        [*TO_FAILING, (F, D, "ok"), (D, H, "ok")],
        id="failing-2-successes-healthy",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, OK, TIMEOUT, OK),
        D,
        None,  # how it gets there is up to the code: degraded or back to failing meanwhile
        id="failing-recovery-interrupted-needs-2-in-a-row-again",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, OK, TIMEOUT, OK, OK),
        H,
        None,
        id="failing-recovery-interrupted-then-2-in-a-row",
    ),
    # --- states of their own, at once --------------------------------------------------
    pytest.param(every(10, HIBERNATING), HIB, [(P, HIB, "hibernating")], id="pending-hibernating"),
    pytest.param(
        every(10, OK, HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, HIB, "hibernating")],
        id="healthy-hibernating",
    ),
    pytest.param(
        every(10, OK, RATE_LIMITED),
        RL,
        [*TO_HEALTHY, (H, RL, "rate_limited")],
        id="healthy-rate-limited",
    ),
    pytest.param(
        every(10, OK, FORBIDDEN), FB, [*TO_HEALTHY, (H, FB, "forbidden")], id="healthy-forbidden"
    ),
    pytest.param(every(10, FORBIDDEN), FB, [(P, FB, "forbidden")], id="pending-forbidden"),
    pytest.param(every(10, RATE_LIMITED), RL, [(P, RL, "rate_limited")], id="pending-rate-limited"),
    pytest.param(
        every(10, OK, TIMEOUT, HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, D, "timeout"), (D, HIB, "hibernating")],
        id="degraded-hibernating",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, RATE_LIMITED),
        RL,
        [*TO_FAILING, (F, RL, "rate_limited")],
        id="failing-rate-limited",
    ),
    pytest.param(
        every(10, OK, HIBERNATING, HIBERNATING, HIBERNATING, HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, HIB, "hibernating")],
        id="hibernating-stays-past-the-failure-threshold",
    ),
    pytest.param(
        every(10, OK, HIBERNATING, OK),
        H,
        [*TO_HEALTHY, (H, HIB, "hibernating"), (HIB, H, "ok")],
        id="hibernating-ok-healthy",
    ),
    pytest.param(
        every(10, OK, RATE_LIMITED, OK),
        H,
        [*TO_HEALTHY, (H, RL, "rate_limited"), (RL, H, "ok")],
        id="rate-limited-ok-healthy",
    ),
    pytest.param(
        every(10, OK, FORBIDDEN, OK),
        H,
        [*TO_HEALTHY, (H, FB, "forbidden"), (FB, H, "ok")],
        id="forbidden-ok-healthy",
    ),
    pytest.param(
        every(10, OK, HIBERNATING, RATE_LIMITED, FORBIDDEN),
        FB,
        [
            *TO_HEALTHY,
            (H, HIB, "hibernating"),
            (HIB, RL, "rate_limited"),
            (RL, FB, "forbidden"),
        ],
        id="own-state-to-own-state",
    ),
    pytest.param(
        every(10, OK, TOKEN_HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, HIB, "hibernating")],
        id="token-hibernating-from-healthy",
    ),
    pytest.param(
        every(10, TOKEN_HIBERNATING),
        HIB,
        [(P, HIB, "hibernating")],
        id="token-hibernating-from-pending",
    ),
    pytest.param(
        every(10, OK, TOKEN_HIBERNATING, TOKEN_HIBERNATING, OK),
        H,
        [*TO_HEALTHY, (H, HIB, "hibernating"), (HIB, H, "ok")],
        id="token-hibernating-then-ok-probe",
    ),
    # --- a single 401 proves nothing ------------------------------------------------------
    pytest.param(
        every(10, OK, AUTH_REJECTED),
        D,
        [*TO_HEALTHY, (H, D, "auth_rejected")],
        id="probe-401-is-a-failure-not-expiry",
    ),
    pytest.param(
        every(10, OK, AUTH_REJECTED, AUTH_REJECTED, AUTH_REJECTED),
        F,
        [*TO_HEALTHY, (H, D, "auth_rejected"), (D, F, "auth_rejected")],
        id="probe-401s-make-failing-not-expired",
    ),
    pytest.param(
        every(10, OK, NO_TOKEN), D, [*TO_HEALTHY, (H, D, "no_token")], id="no-token-is-a-failure"
    ),
    # --- credentials expired on evidence --------------------------------------------------
    pytest.param(
        [(0, OK), (10, REJECTED), (40, REJECTED)],
        X,
        [*TO_HEALTHY, (H, X, "rejected")],
        id="rejected-twice-30s-apart",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (3610, REJECTED)],
        X,
        [*TO_HEALTHY, (H, X, "rejected")],
        id="rejected-twice-an-hour-apart",
    ),
    pytest.param([(0, OK), (10, REJECTED)], H, TO_HEALTHY, id="rejected-once"),
    pytest.param([(0, REJECTED)], P, [], id="rejected-once-while-pending"),
    pytest.param(
        [(0, OK), (10, REJECTED), (10, REJECTED)], H, TO_HEALTHY, id="rejected-twice-0s-apart"
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (39.9, REJECTED)],
        H,
        TO_HEALTHY,
        id="rejected-twice-under-the-gap",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (10, REJECTED), (10, REJECTED), (40, REJECTED)],
        X,
        [*TO_HEALTHY, (H, X, "rejected")],
        id="gap-counts-from-the-first-rejection",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (20, TOKEN_OK), (50, REJECTED)],
        H,
        TO_HEALTHY,
        id="rejection-token-success-rejection",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (20, OK), (50, REJECTED)],
        H,
        TO_HEALTHY,
        id="rejection-probe-success-rejection",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (20, TOKEN_OK), (50, REJECTED), (80, REJECTED)],
        X,
        [*TO_HEALTHY, (H, X, "rejected")],
        id="evidence-restarts-after-a-success",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (20, TRANSIENT), (30, MALFORMED), (40, REJECTED)],
        X,
        [*TO_HEALTHY, (H, X, "rejected")],
        id="transient-failures-between-rejections-keep-evidence",
    ),
    pytest.param(
        [(0, OK), *every(60, *[TRANSIENT] * 10, start=10)],
        H,
        TO_HEALTHY,
        id="transient-failures-alone",
    ),
    pytest.param(
        [(0, OK), *every(60, *[MALFORMED] * 10, start=10)],
        H,
        TO_HEALTHY,
        id="malformed-answers-alone",
    ),
    pytest.param(
        [(0, OK), (10, INVALID_CLIENT), (40, INVALID_CLIENT)],
        X,
        [*TO_HEALTHY, (H, X, "invalid_client")],
        id="invalid-client-twice",
    ),
    pytest.param(
        [(0, OK), (10, NOT_ALLOWED), (40, NOT_ALLOWED)],
        X,
        [*TO_HEALTHY, (H, X, "grant_not_allowed")],
        id="grant-not-allowed-twice",
    ),
    pytest.param(
        [(0, OK), (10, REJECTED), (40, INVALID_CLIENT)],
        X,
        [*TO_HEALTHY, (H, X, "invalid_client")],
        id="mixed-credential-evidence",
    ),
    pytest.param([(0, OK), (10, INVALID_CLIENT)], H, TO_HEALTHY, id="invalid-client-once"),
    pytest.param(
        [(0, OK), (10, REJECTED), (20, TIMEOUT), (40, REJECTED)],
        X,
        [*TO_HEALTHY, (H, D, "timeout"), (D, X, "rejected")],
        id="failed-probe-keeps-evidence",
    ),
    pytest.param(
        [(0, TIMEOUT), (1, TIMEOUT), (2, TIMEOUT), (10, REJECTED), (40, REJECTED)],
        X,
        [(P, D, "timeout"), (D, F, "timeout"), (F, X, "rejected")],
        id="failing-to-expired",
    ),
    pytest.param([(0, REJECTED), (40, REJECTED)], X, [(P, X, "rejected")], id="pending-to-expired"),
    pytest.param(
        every(10, OK, REFUSED), X, [*TO_HEALTHY, (H, X, "probe_refused")], id="refused-at-once"
    ),
    pytest.param(every(10, REFUSED), X, [(P, X, "probe_refused")], id="refused-from-pending"),
    pytest.param(
        every(10, OK, TIMEOUT, REFUSED),
        X,
        [*TO_HEALTHY, (H, D, "timeout"), (D, X, "probe_refused")],
        id="refused-from-degraded",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, REFUSED),
        X,
        [*TO_FAILING, (F, X, "probe_refused")],
        id="refused-from-failing",
    ),
    pytest.param(
        every(10, OK, HIBERNATING, REFUSED),
        X,
        [*TO_HEALTHY, (H, HIB, "hibernating"), (HIB, X, "probe_refused")],
        id="refused-from-hibernating",
    ),
    pytest.param(
        every(10, NOT_AUTHORIZED), X, [(P, X, "not_authorized")], id="not-authorized-from-pending"
    ),
    pytest.param(
        every(10, OK, NOT_AUTHORIZED),
        X,
        [*TO_HEALTHY, (H, X, "not_authorized")],
        id="not-authorized-from-healthy",
    ),
    # --- credentials_expired stays until a probe succeeds --------------------------------
    pytest.param(
        every(10, OK, REFUSED, *[AUTH_REJECTED] * 5),
        X,
        [*TO_HEALTHY, (H, X, "probe_refused")],
        id="expired-stays-on-auth-rejected",
    ),
    pytest.param(
        every(10, NOT_AUTHORIZED, *[NO_TOKEN] * 5),
        X,
        [(P, X, "not_authorized")],
        id="expired-stays-on-no-token",
    ),
    pytest.param(
        every(10, OK, REFUSED, *[TIMEOUT] * 5, SERVER_ERROR),
        X,
        [*TO_HEALTHY, (H, X, "probe_refused")],
        id="expired-stays-on-other-failures",
    ),
    pytest.param(
        every(10, OK, REFUSED, REJECTED, REJECTED, TRANSIENT, REFUSED, NOT_AUTHORIZED),
        X,
        [*TO_HEALTHY, (H, X, "probe_refused")],
        id="expired-stays-on-more-evidence",
    ),
    pytest.param(
        every(10, OK, REFUSED, TOKEN_OK),
        X,
        [*TO_HEALTHY, (H, X, "probe_refused")],
        id="expired-stays-on-token-success",
    ),
    pytest.param(
        every(10, OK, REFUSED, OK),
        H,
        [*TO_HEALTHY, (H, X, "probe_refused"), (X, H, "ok")],
        id="expired-ok-probe-healthy",
    ),
    pytest.param(
        every(10, OK, REFUSED, AUTH_REJECTED, OK),
        H,
        [*TO_HEALTHY, (H, X, "probe_refused"), (X, H, "ok")],
        id="expired-leaves-on-first-ok",
    ),
    pytest.param(
        every(10, OK, REFUSED, TOKEN_HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, X, "probe_refused"), (X, HIB, "hibernating")],
        id="expired-token-hibernating",
    ),
    pytest.param(
        every(10, OK, REFUSED, HIBERNATING),
        HIB,
        [*TO_HEALTHY, (H, X, "probe_refused"), (X, HIB, "hibernating")],
        id="expired-probe-hibernating",
    ),
    # --- token successes clear evidence but never move the state --------------------------
    pytest.param(every(10, TOKEN_OK), P, [], id="token-ok-pending-stays"),
    pytest.param(
        every(10, OK, TIMEOUT, TOKEN_OK),
        D,
        [*TO_HEALTHY, (H, D, "timeout")],
        id="token-ok-degraded-stays",
    ),
    pytest.param(
        every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT, TOKEN_OK, TOKEN_OK),
        F,
        TO_FAILING,
        id="token-ok-failing-stays",
    ),
    pytest.param(every(10, OK, TRANSIENT, MALFORMED), H, TO_HEALTHY, id="token-faults-no-move"),
    # --- a sleeping instance gives no token: probes without one keep it hibernating -------
    pytest.param(
        every(10, TOKEN_HIBERNATING, NO_TOKEN, NO_TOKEN, NO_TOKEN, NO_TOKEN),
        HIB,
        [(P, HIB, "hibernating")],
        id="hibernating-token-then-no-token-probes-stay",
    ),
    pytest.param(
        every(10, TOKEN_HIBERNATING, NO_TOKEN, TOKEN_OK, OK),
        H,
        [(P, HIB, "hibernating"), (HIB, H, "ok")],
        id="hibernating-wakes-on-a-good-probe",
    ),
]


@pytest.mark.parametrize(("steps", "final", "expected"), CASES)
def test_transitions(
    steps: list[Step], final: State, expected: list[tuple[State, State, str]] | None
) -> None:
    health, transitions = run(steps)
    assert health.state is final
    if expected is not None:
        assert moves(transitions) == expected
    # every transition chains from the previous one and carries its event's time
    state = State.PENDING
    for t in transitions:
        assert t.old is state
        assert t.new is not t.old
        assert t.connection_id == CONN
        assert t.at in {T0 + offset for offset, _ in steps}
        state = t.new
    assert state is health.state
    assert health.since == (transitions[-1].at if transitions else T0)


def test_transition_fields() -> None:
    health, transitions = run([(0, OK), (25, probe(ProbeReason.RESET, "connection reset"))])
    assert transitions[-1] == Transition(CONN, H, D, T0 + 25, "reset", "connection reset")
    assert health.last_error == "connection reset"
    health, transitions = run([(0, OK), (7, REFUSED)])
    assert transitions[-1] == Transition(CONN, H, X, T0 + 7, "probe_refused", REFUSED.detail)
    health, transitions = run([(0, REJECTED), (31, REJECTED)])
    assert transitions[-1] == Transition(CONN, P, X, T0 + 31, "rejected", REJECTED.detail)
    health, transitions = run([(0, OK), (3, TOKEN_HIBERNATING)])
    assert transitions[-1] == Transition(
        CONN, H, HIB, T0 + 3, "hibernating", TOKEN_HIBERNATING.detail
    )


GENERIC_FAILURES = [
    ProbeReason.TIMEOUT,
    ProbeReason.DNS,
    ProbeReason.CONNECT,
    ProbeReason.TLS,
    ProbeReason.RESET,
    ProbeReason.SERVER_ERROR,
    ProbeReason.MAINTENANCE,
    ProbeReason.BAD_RESPONSE,
    ProbeReason.INVALID_TABLE,
    ProbeReason.AUTH_REJECTED,
    ProbeReason.NO_TOKEN,
]


@pytest.mark.parametrize("reason", GENERIC_FAILURES, ids=str)
def test_generic_failures_degrade_then_fail(reason: ProbeReason) -> None:
    failure = probe(reason, f"{reason} detail")
    health, transitions = run(every(10, OK, failure, failure, failure))
    assert moves(transitions) == [(P, H, "ok"), (H, D, reason.value), (D, F, reason.value)]
    assert health.consecutive_failures == 3
    assert health.last_error == f"{reason} detail"


@pytest.mark.parametrize("reason", GENERIC_FAILURES, ids=str)
def test_expired_stays_on_every_generic_failure(reason: ProbeReason) -> None:
    health, transitions = run(every(10, OK, REFUSED, *[probe(reason)] * 4))
    assert health.state is X
    assert moves(transitions) == [(P, H, "ok"), (H, X, "probe_refused")]
    assert health.since == T0 + 10


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        (ProbeReason.HIBERNATING, HIB),
        (ProbeReason.RATE_LIMITED, RL),
        (ProbeReason.FORBIDDEN, FB),
    ],
    ids=str,
)
@pytest.mark.parametrize(
    "before",
    [[], [OK], [OK, TIMEOUT], [OK, TIMEOUT, TIMEOUT, TIMEOUT]],
    ids=["pending", "healthy", "degraded", "failing"],
)
def test_own_states_are_immediate(reason: ProbeReason, state: State, before: list[Event]) -> None:
    health, transitions = run(every(10, *before, probe(reason)))
    assert health.state is state
    assert transitions[-1].new is state
    assert transitions[-1].reason == reason.value


@pytest.mark.parametrize(
    ("failure_threshold", "failures_to_fail"), [(1, 1), (2, 2), (3, 3), (5, 5)], ids=str
)
def test_failure_threshold(failure_threshold: int, failures_to_fail: int) -> None:
    thresholds = Thresholds(failure_threshold=failure_threshold)
    health = initial(T0)
    health, _ = apply(health, OK, T0, thresholds, CONN)
    for n in range(1, failures_to_fail + 1):
        health, _ = apply(health, TIMEOUT, T0 + n, thresholds, CONN)
        expected = F if n >= failure_threshold else D
        assert health.state is expected, n


@pytest.mark.parametrize("success_threshold", [1, 2, 3, 5], ids=str)
def test_success_threshold(success_threshold: int) -> None:
    thresholds = Thresholds(success_threshold=success_threshold)
    health, _ = run(every(10, OK, TIMEOUT, TIMEOUT, TIMEOUT), thresholds)
    assert health.state is F
    states = []
    for n in range(1, success_threshold + 2):
        health, _ = apply(health, OK, T0 + 100 + n, thresholds, CONN)
        states.append(health.state)
    assert states == [D] * (success_threshold - 1) + [H, H]


@pytest.mark.parametrize("gap", [0.0, 1.0, 30.0, 300.0], ids=str)
def test_rejection_gap(gap: float) -> None:
    thresholds = Thresholds(rejection_gap=gap)
    below = max(0.0, gap - 0.5)
    health, _ = run([(0, OK), (10, REJECTED), (10 + below, REJECTED)], thresholds)
    assert health.state is (X if gap == 0.0 else H)
    health, _ = run([(0, OK), (10, REJECTED), (10 + gap, REJECTED)], thresholds)
    assert health.state is X


def test_credential_failures_are_the_three_evidence_kinds() -> None:
    assert {
        TokenFailure.REJECTED,
        TokenFailure.INVALID_CLIENT,
        TokenFailure.GRANT_NOT_ALLOWED,
    } == CREDENTIAL_FAILURES


def test_token_success_clears_evidence_without_touching_the_rest() -> None:
    health, _ = run([(0, OK), (10, TIMEOUT), (20, REJECTED)])
    assert (health.rejections, health.first_rejection_at) == (1, T0 + 20)
    after, transitions = apply(health, TOKEN_OK, T0 + 30, DEFAULT, CONN)
    assert transitions == []
    assert after == replace(health, rejections=0, first_rejection_at=None)


def test_probe_success_clears_evidence() -> None:
    health, _ = run([(0, OK), (10, REJECTED)])
    after, _ = apply(health, OK, T0 + 20, DEFAULT, CONN)
    assert (after.rejections, after.first_rejection_at) == (0, None)


def test_transient_token_failure_records_the_error_only() -> None:
    health, _ = run([(0, OK), (10, REJECTED)])
    after, transitions = apply(health, TRANSIENT, T0 + 20, DEFAULT, CONN)
    assert transitions == []
    assert after == replace(health, last_error="HTTP 503")


def test_since_changes_only_with_the_state() -> None:
    health, _ = run([(0, OK)])
    assert health.since == T0
    for offset in (10, 20, 30):
        health, transitions = apply(health, OK, T0 + offset, DEFAULT, CONN)
        assert transitions == []
        assert health.since == T0
    health, _ = apply(health, TIMEOUT, T0 + 40, DEFAULT, CONN)
    assert health.since == T0 + 40
    health, _ = apply(health, TIMEOUT, T0 + 50, DEFAULT, CONN)
    assert (health.state, health.since) == (D, T0 + 40)
    health, _ = apply(health, TIMEOUT, T0 + 60, DEFAULT, CONN)
    assert (health.state, health.since) == (F, T0 + 60)


def test_probe_facts_are_recorded() -> None:
    result = ProbeResult(ProbeReason.SERVER_ERROR, T0 + 5, 0.25, 500, "Something broke")
    health, _ = apply(initial(T0), result, T0 + 6, DEFAULT, CONN)
    assert health.last_probe_at == T0 + 5
    assert health.last_probe_reason == "server_error"
    assert health.last_probe_duration == 0.25
    assert health.last_probe_status == 500
    assert (health.last_reason, health.last_error) == ("server_error", "Something broke")
    health, _ = apply(health, OK, T0 + 7, DEFAULT, CONN)
    assert (health.last_reason, health.last_error) == ("ok", "")


def test_initial() -> None:
    assert initial(T0) == Health(state=State.PENDING, since=T0)


def test_apply_is_pure() -> None:
    before = initial(T0)
    first = apply(before, TIMEOUT, T0 + 1, DEFAULT, CONN)
    second = apply(before, TIMEOUT, T0 + 1, DEFAULT, CONN)
    assert first == second
    assert before == initial(T0)
