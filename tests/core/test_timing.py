"""The credential calendar: refresh time, usability, refresh-token renewal, backoff, jitter,
and the first probe after a start."""

from __future__ import annotations

import random

import pytest

from monitor.clock import ManualClock
from monitor.model import Grant, Health, State, TokenSet
from monitor.secret import Secret
from monitor.timing import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    PROBE_JITTER,
    backoff,
    can_renew_refresh,
    connection_jitter,
    first_probe_at,
    refresh_at,
    renew_refresh_at,
    usable,
)

T0 = 1_800_000_000.0


def tokens(life: float, *, obtained_at: float = T0, refresh_life: float | None = None) -> TokenSet:
    return TokenSet(
        access_token=Secret("a" * 86),
        access_expires_at=obtained_at + life,
        obtained_at=obtained_at,
        refresh_token=Secret("r" * 86) if refresh_life is not None else None,
        refresh_issued_at=obtained_at if refresh_life is not None else None,
        refresh_expires_at=obtained_at + refresh_life if refresh_life is not None else None,
    )


class FixedRandom(random.Random):
    """A `random.Random` whose `random()` always answers the same number."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# --- refresh_at ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("life", "jitter", "after"),
    [
        pytest.param(1800, 0.0, 1080.0, id="1800s-jitter-0"),
        pytest.param(1800, 0.5, 1170.0, id="1800s-jitter-0.5"),
        pytest.param(1800, 0.999, 1800 * 0.6999, id="1800s-jitter-0.999"),
        pytest.param(1799, 0.0, 1799 * 0.6, id="1799s-live-jitter-0"),
        pytest.param(30, 0.0, 18.0, id="30s-jitter-0"),
        pytest.param(30, 0.999, 30 * 0.6999, id="30s-jitter-0.999"),
        pytest.param(8 * 3600, 0.0, 17280.0, id="8h-jitter-0"),
        pytest.param(8 * 3600, 0.999, 8 * 3600 * 0.6999, id="8h-jitter-0.999"),
    ],
)
def test_refresh_at(life: float, jitter: float, after: float) -> None:
    when = refresh_at(tokens(life), jitter)
    assert when - T0 == pytest.approx(after)
    assert T0 + 0.6 * life <= when <= T0 + 0.7 * life
    assert when <= T0 + life - min(300.0, life / 4)


@pytest.mark.parametrize("life", [1, 10, 30, 60, 300, 1200, 1799, 1800, 3600, 28800, 86400])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.75, 0.999999])
def test_refresh_at_bounds(life: float, jitter: float) -> None:
    when = refresh_at(tokens(life), jitter)
    assert T0 + 0.6 * life - 1e-6 <= when <= T0 + 0.7 * life + 1e-6
    assert when <= T0 + life - min(300.0, life / 4) + 1e-6


def test_refresh_at_grows_with_jitter() -> None:
    times = [refresh_at(tokens(1800), j / 10) for j in range(10)]
    assert times == sorted(times)
    assert len(set(times)) == 10


def test_refresh_at_counts_from_obtained_at() -> None:
    early, late = tokens(1800, obtained_at=T0), tokens(1800, obtained_at=T0 + 500)
    assert refresh_at(late, 0.3) - refresh_at(early, 0.3) == pytest.approx(500)


@pytest.mark.parametrize(
    ("life", "expected"),
    [
        pytest.param(0.0, T0, id="zero-life"),
        pytest.param(-60.0, T0 - 60, id="expired-before-obtained"),
    ],
)
def test_refresh_at_dead_token_is_due_now(life: float, expected: float) -> None:
    assert refresh_at(tokens(life), 0.5) == expected


# --- usable -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("life", "offset", "expected"),
    [
        pytest.param(1800, 0, True, id="1800s-fresh"),
        pytest.param(1800, 1769.9, True, id="1800s-just-before-guard"),
        pytest.param(1800, 1770, False, id="1800s-30s-guard"),
        pytest.param(1800, 1800, False, id="1800s-expired"),
        pytest.param(1800, 5000, False, id="1800s-long-expired"),
        pytest.param(30, 25.4, True, id="30s-before-guard"),
        pytest.param(30, 25.5, False, id="30s-15pc-guard"),
        pytest.param(28800, 28769, True, id="8h-before-guard"),
        pytest.param(28800, 28770, False, id="8h-30s-guard"),
        pytest.param(0, 0, False, id="zero-life"),
    ],
)
def test_usable(life: float, offset: float, expected: bool) -> None:
    assert usable(tokens(life), T0 + offset) is expected


# --- renew_refresh_at ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refresh_life", "expected_after"),
    [
        pytest.param(8_640_000, 6_912_000, id="100-days"),
        pytest.param(28_800, 23_040, id="8h"),
        pytest.param(3_600, 2_880, id="1h"),
    ],
)
def test_renew_refresh_at(refresh_life: float, expected_after: float) -> None:
    assert renew_refresh_at(tokens(1800, refresh_life=refresh_life)) - T0 == pytest.approx(
        expected_after
    )


def test_renew_refresh_at_without_refresh_token() -> None:
    assert renew_refresh_at(tokens(1800)) is None
    partial = TokenSet(
        access_token=Secret("a"),
        access_expires_at=T0 + 1800,
        obtained_at=T0,
        refresh_token=Secret("r"),
        refresh_issued_at=T0,
        refresh_expires_at=None,
    )
    assert renew_refresh_at(partial) is None


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        (Grant.PASSWORD, True),
        (Grant.CLIENT_CREDENTIALS, True),
        (Grant.AUTHORIZATION_CODE, False),
        (Grant.REFRESH_TOKEN, False),
    ],
    ids=str,
)
def test_can_renew_refresh(grant: Grant, expected: bool) -> None:
    assert can_renew_refresh(grant) is expected


# --- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (0, 2.0),
        (1, 2.0),
        (2, 4.0),
        (3, 8.0),
        (4, 16.0),
        (5, 32.0),
        (6, 64.0),
        (7, 128.0),
        (8, 180.0),
        (9, 180.0),
        (20, 180.0),
    ],
    ids=str,
)
def test_backoff_bounds(attempt: int, ceiling: float) -> None:
    low = backoff(attempt, FixedRandom(0.0), until=None, now=T0)
    high = backoff(attempt, FixedRandom(0.999999), until=None, now=T0)
    assert low == pytest.approx(BACKOFF_BASE / 2)
    assert high == pytest.approx(BACKOFF_BASE / 2 + ceiling * 0.999999)


def test_backoff_grows_with_attempts_and_is_capped() -> None:
    highs = [backoff(n, FixedRandom(0.999), until=None, now=T0) for n in range(1, 30)]
    assert highs == sorted(highs)
    assert highs[0] < 5
    assert highs[-1] > 100
    assert max(highs) <= BACKOFF_MAX + BACKOFF_BASE


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(100, id="100"),
        # ~1 day of transient failures at ~90 s each; `failures_in_row` in the keeper also
        # counts hibernation and credential failures, and never resets without a success.
        pytest.param(1_025, id="1025"),
        pytest.param(10_000, id="10000"),
    ],
)
def test_backoff_many_attempts_stays_capped(attempt: int) -> None:
    delay = backoff(attempt, FixedRandom(0.5), until=None, now=T0)
    assert 1.0 <= delay <= BACKOFF_MAX + BACKOFF_BASE


def test_backoff_random_draws_stay_within_bounds() -> None:
    rng = random.Random(42)
    for attempt in range(1, 40):
        for _ in range(50):
            delay = backoff(attempt, rng, until=None, now=T0)
            assert 1.0 <= delay <= BACKOFF_MAX + BACKOFF_BASE


@pytest.mark.parametrize(
    ("remaining", "draw", "expected"),
    [
        pytest.param(1000.0, 0.999, 1 + 180 * 0.999, id="far-from-expiry-uncapped"),
        pytest.param(100.0, 0.999, 50.0, id="half-of-100s"),
        pytest.param(10.0, 0.999, 5.0, id="half-of-10s"),
        pytest.param(10.0, 0.0, 1.0, id="small-draw-under-the-cap"),
        pytest.param(1.0, 0.999, 1.0, id="at-least-1s"),
        pytest.param(0.1, 0.999, 1.0, id="at-least-1s-nearly-dead"),
        pytest.param(0.0, 0.999, 1 + 180 * 0.999, id="until-now-ignored"),
        pytest.param(-50.0, 0.999, 1 + 180 * 0.999, id="already-expired-ignored"),
    ],
)
def test_backoff_until(remaining: float, draw: float, expected: float) -> None:
    delay = backoff(20, FixedRandom(draw), until=T0 + remaining, now=T0)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize("remaining", [1.5, 2.0, 3.0, 7.0, 60.0, 600.0, 1799.0])
def test_backoff_never_beyond_half_the_remaining_life(remaining: float) -> None:
    rng = random.Random(7)
    for attempt in range(1, 20):
        delay = backoff(attempt, rng, until=T0 + remaining, now=T0)
        assert 1.0 <= delay <= max(1.0, remaining / 2)


# --- connection_jitter --------------------------------------------------------------------


@pytest.mark.parametrize("connection_id", ["acme-prod", "", "dev284244", "ü-ñ", "x" * 1000])
def test_connection_jitter_stable_and_in_range(connection_id: str) -> None:
    value = connection_jitter(connection_id)
    assert 0.0 <= value < 1.0
    assert connection_jitter(connection_id) == value


def test_connection_jitter_differs_between_ids() -> None:
    values = {connection_jitter(f"conn-{i}") for i in range(1000)}
    assert len(values) == 1000


def test_connection_jitter_spreads_uniformly() -> None:
    deciles = [0] * 10
    for i in range(1000):
        deciles[int(connection_jitter(f"acme-{i:05d}") * 10)] += 1
    assert all(50 <= n <= 150 for n in deciles), deciles


@pytest.mark.parametrize(
    ("connection_id", "expected"),
    [("acme-prod", 0.7189781115146486), ("dev284244", 0.8705922205656073)],
    ids=str,
)
def test_connection_jitter_is_fixed_across_processes(connection_id: str, expected: float) -> None:
    # A stable digest, not Python's per-process salted hash(): the same on every replica.
    assert connection_jitter(connection_id) == expected


# --- first_probe_at -----------------------------------------------------------------------

INTERVAL = 300.0
SPREAD = 30.0


def stored(state: State, probed_ago: float | None, clock: ManualClock) -> Health:
    """Health as the store hands it back: last probed `probed_ago` seconds before now."""
    last = None if probed_ago is None else clock.now() - probed_ago
    return Health(state=state, since=clock.now() - 3600, last_probe_at=last)


@pytest.mark.parametrize(
    ("state", "probed_ago", "interval", "draw", "after_now"),
    [
        # Nothing stored, or nothing probed yet: within the spread, as on a cold start.
        pytest.param(None, None, INTERVAL, 0.0, 0.0, id="nothing-stored-draw-0"),
        pytest.param(None, None, INTERVAL, 0.5, 15.0, id="nothing-stored-draw-0.5"),
        pytest.param(None, None, 10.0, 0.5, 5.0, id="nothing-stored-spread-capped-by-interval"),
        pytest.param(State.PENDING, None, INTERVAL, 0.5, 15.0, id="pending"),
        pytest.param(State.HEALTHY, None, INTERVAL, 0.5, 15.0, id="healthy-never-probed"),
        # Healthy with a stored probe: one jittered interval after it.
        pytest.param(State.HEALTHY, 100.0, INTERVAL, 0.5, 200.0, id="healthy-phase-kept"),
        pytest.param(State.HEALTHY, 100.0, INTERVAL, 0.0, 170.0, id="healthy-jitter-low"),
        pytest.param(State.HEALTHY, 100.0, INTERVAL, 0.75, 215.0, id="healthy-jitter-high"),
        pytest.param(State.HEALTHY, 0.0, INTERVAL, 0.5, 300.0, id="healthy-probed-just-now"),
        pytest.param(State.HEALTHY, 299.0, INTERVAL, 0.5, 1.0, id="healthy-due-in-a-second"),
        pytest.param(State.HEALTHY, 10.0, 60.0, 0.25, 47.0, id="healthy-short-interval"),
        # Never later than one interval from now.
        pytest.param(State.HEALTHY, 1.0, INTERVAL, 0.9, INTERVAL, id="healthy-capped-jitter"),
        pytest.param(State.HEALTHY, -1000.0, INTERVAL, 0.5, INTERVAL, id="probe-in-the-future"),
        # Overdue (down longer than an interval): within the spread, not all at once.
        pytest.param(State.HEALTHY, 300.0, INTERVAL, 0.5, 15.0, id="healthy-an-interval-ago"),
        # Between 1 and 1.1 intervals: the jitter would still place it ahead; not any more.
        pytest.param(State.HEALTHY, 320.0, INTERVAL, 0.99, 29.7, id="healthy-overdue-in-jitter"),
        pytest.param(State.HEALTHY, 301.0, INTERVAL, 0.5, 15.0, id="healthy-overdue"),
        pytest.param(State.HEALTHY, 400.0, INTERVAL, 0.0, 0.0, id="healthy-overdue-draw-0"),
        pytest.param(State.HEALTHY, 7 * 86400.0, INTERVAL, 0.9, 27.0, id="healthy-week-old"),
        # Not healthy: probed within the spread however recent the last probe.
        pytest.param(State.FAILING, 100.0, INTERVAL, 0.5, 15.0, id="failing"),
        pytest.param(State.DEGRADED, 100.0, INTERVAL, 0.5, 15.0, id="degraded"),
        pytest.param(State.CREDENTIALS_EXPIRED, 100.0, INTERVAL, 0.5, 15.0, id="expired"),
        pytest.param(State.HIBERNATING, 100.0, INTERVAL, 0.5, 15.0, id="hibernating"),
        pytest.param(State.RATE_LIMITED, 100.0, INTERVAL, 0.5, 15.0, id="rate-limited"),
        pytest.param(State.FORBIDDEN, 100.0, INTERVAL, 0.5, 15.0, id="forbidden"),
    ],
)
def test_first_probe_at(
    state: State | None, probed_ago: float | None, interval: float, draw: float, after_now: float
) -> None:
    clock = ManualClock()
    health = None if state is None else stored(state, probed_ago, clock)
    when = first_probe_at(health, interval=interval, now=clock.now(), spread=SPREAD, draw=draw)
    # Offsets, not clock times: approx's relative tolerance on 1.8e9 would be 30 minutes.
    assert when - clock.now() == pytest.approx(after_now)


@pytest.mark.parametrize("state", list(State), ids=str)
@pytest.mark.parametrize("probed_ago", [None, -5000.0, -1.0, 0.0, 1.0, 150.0, 299.0, 331.0, 1e6])
def test_first_probe_at_bounds(state: State, probed_ago: float | None) -> None:
    clock = ManualClock()
    health = stored(state, probed_ago, clock)
    for n in range(100):
        draw = n / 100
        when = first_probe_at(health, interval=INTERVAL, now=clock.now(), spread=SPREAD, draw=draw)
        assert clock.now() <= when <= clock.now() + INTERVAL
        if state is not State.HEALTHY or probed_ago is None:
            assert when <= clock.now() + SPREAD


def test_restart_of_a_healthy_fleet_keeps_its_spread_phases() -> None:
    """1,000 healthy connections last probed evenly over one interval: after a restart
    their first probes are spread over the interval as before, not within the spread."""
    clock = ManualClock()
    rng = random.Random(1)
    healths = [stored(State.HEALTHY, INTERVAL * i / 1000, clock) for i in range(1000)]
    firsts = [
        first_probe_at(h, interval=INTERVAL, now=clock.now(), spread=SPREAD, draw=rng.random())
        for h in healths
    ]
    offsets = sorted(t - clock.now() for t in firsts)
    assert offsets[0] >= 0
    assert offsets[-1] <= INTERVAL
    # Today's cold start would put all 1,000 within 30 s; with phases kept, a 30 s window
    # holds about a tenth of them (plus the overdue ones spread over the first 30 s).
    within_spread = sum(1 for o in offsets if o <= SPREAD)
    assert within_spread < 300, within_spread
    per_minute = [sum(1 for o in offsets if m * 60 <= o < (m + 1) * 60) for m in range(5)]
    assert all(100 <= count <= 320 for count in per_minute), per_minute


def test_first_probe_follows_the_probe_jitter() -> None:
    clock = ManualClock()
    health = stored(State.HEALTHY, 150.0, clock)
    offsets = [
        first_probe_at(health, interval=INTERVAL, now=clock.now(), spread=SPREAD, draw=d / 10)
        - clock.now()
        for d in range(10)
    ]
    expected = [INTERVAL * (1 - PROBE_JITTER + 2 * PROBE_JITTER * d / 10) - 150 for d in range(10)]
    assert offsets == pytest.approx(expected)
    assert offsets[0] == pytest.approx(120.0)
