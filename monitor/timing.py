"""When to refresh, when to retry, when to renew: the credential calendar, pure.

ServiceNow access tokens live 30 minutes by default; we refresh at 60-70 % of that life
(the exact share is fixed per connection, so a fleet does not refresh in lockstep), never
later than five minutes before expiry (a quarter of the life for short-lived tokens).
Lifetimes are measured from when the request was sent, not when the answer came, so a
slow token endpoint can only make us early.

Refresh tokens die at issue time + lifespan however often they are used; a grant that can
mint a fresh one by itself (password) does so at `RENEW_AT` of that lifespan.

Probes run every `interval` x (1 +- `PROBE_JITTER`). After a start (or a replica taking
over a connection) a healthy connection keeps the phase it had: its first probe is due
one interval after the stored `last_probe_at`, so a restart is spread like the running
fleet was instead of probing everyone within `initial_spread`.
"""

from __future__ import annotations

import hashlib
import random

from monitor.model import Grant, Health, State, TokenSet

REFRESH_FROM = 0.60
REFRESH_SPREAD = 0.10
LATEST_MARGIN = 300.0
RENEW_AT = 0.80
BACKOFF_BASE = 2.0
BACKOFF_MAX = 180.0
REJECTION_RETRY = 30.0
# The prober plans every next probe at interval x (1 +- PROBE_JITTER).
PROBE_JITTER = 0.10


def probe_gap(interval: float, draw: float) -> float:
    """The time from one probe to the next: `interval` x (1 +- PROBE_JITTER), for one
    uniform `draw` in [0, 1)."""
    return interval * (1.0 - PROBE_JITTER + 2 * PROBE_JITTER * draw)


def connection_jitter(connection_id: str) -> float:
    """A stable number in [0, 1) per connection: the same across restarts and replicas."""
    digest = hashlib.blake2b(connection_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def refresh_at(tokens: TokenSet, jitter: float) -> float:
    """When the access token should be refreshed."""
    life = max(0.0, tokens.access_expires_at - tokens.obtained_at)
    planned = tokens.obtained_at + life * (REFRESH_FROM + REFRESH_SPREAD * jitter)
    latest = tokens.access_expires_at - min(LATEST_MARGIN, life / 4)
    return min(planned, latest)


def usable(tokens: TokenSet, now: float) -> bool:
    """Whether the access token may still be sent: a small guard before expiry keeps a
    request in flight from arriving with a token that died on the way."""
    life = max(0.0, tokens.access_expires_at - tokens.obtained_at)
    return now < tokens.access_expires_at - min(30.0, life * 0.15)


def renew_refresh_at(tokens: TokenSet) -> float | None:
    """When a grant that can mint a fresh refresh token should do so, if it has one."""
    if tokens.refresh_issued_at is None or tokens.refresh_expires_at is None:
        return None
    life = tokens.refresh_expires_at - tokens.refresh_issued_at
    return tokens.refresh_issued_at + life * RENEW_AT


def can_renew_refresh(grant: Grant) -> bool:
    """Whether the grant can obtain a new refresh token without a person."""
    return grant in (Grant.PASSWORD, Grant.CLIENT_CREDENTIALS)


def backoff(attempt: int, rng: random.Random, *, until: float | None, now: float) -> float:
    """Seconds to wait after `attempt` transient failures in a row (1-based): exponential
    with full jitter, seconds to a few minutes, and never so long that the token dies
    before the next try."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** min(max(0, attempt - 1), 32))
    delay = BACKOFF_BASE / 2 + rng.random() * ceiling
    if until is not None and until > now:
        delay = min(delay, max(1.0, (until - now) / 2))
    return delay


def keeps_probe_phase(health: Health | None, *, interval: float, now: float) -> bool:
    """True when a start plans this connection's first probe where the running daemon
    would have made it (stored `healthy`, probed less than an interval ago); otherwise
    its first probe is a first run within the initial spread (`first_probe_at`)."""
    if health is None or health.state is not State.HEALTHY or health.last_probe_at is None:
        return False
    return now - health.last_probe_at < interval


def first_probe_at(
    health: Health | None, *, interval: float, now: float, spread: float, draw: float
) -> float:
    """When a connection's first probe after start (or adoption) is due; `draw` is one
    uniform number in [0, 1) (the keeper's seeded generator).

    - Stored health that is `healthy` with a `last_probe_at`: the probe the running
      daemon would have made, `last_probe_at + interval x (1 +- PROBE_JITTER)`, but never
      later than `now + interval` (a stored time in the future, a clock set back).
    - Last probed an interval ago or more, that time already past, any other
      state (an SRE restarting a daemon wants to know quickly whether a failing or
      expired connection is back), or nothing stored: within `spread` (capped at the
      interval) from now, as on a cold start, so an old store does not burst either.
    """
    soon = now + draw * min(spread, interval)
    last = health.last_probe_at if health is not None else None
    if last is None or not keeps_probe_phase(health, interval=interval, now=now):
        return soon  # overdue, never probed or not healthy: no jitter may push it out
    due = last + probe_gap(interval, draw)
    if due < now:
        return soon
    return min(due, now + interval)
