"""Leases: which replica works on which connection of a fleet shared through PostgreSQL.

Each connection has one row in `leases`: an owner and `lease_until`, both decided on the
database's clock. A replica renews everything it holds and claims free or expired rows in
batches (`FOR UPDATE SKIP LOCKED`, so replicas claiming at once never wait for or
duplicate each other), about every half lease. A replica that dies stops renewing; its
rows expire and the survivors claim them. Every replica aims at its fair share,
`ceil(total / live replicas)` (live = heartbeat newer than one lease period), and gives
back what it holds beyond that, so a new replica finds free rows within a round or two.

Only the owner requests tokens, and `PostgresStore.save_tokens` saves a token only while
the lease is still held (`owner = me AND lease_until > now()`, in the same statement as
the version check), so no refresh token is used by two replicas at once as long as a
replica starts a token request only while its lease has longer to run than the request
may take: `LeaseRound.valid_until` is a conservative local deadline for that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from monitor.errors import LeaseLostError

if TYPE_CHECKING:
    from monitor.store.pg_schema import Conn

T = TypeVar("T")


class Leases(Protocol):
    async def register(self, connection_ids: Sequence[str]) -> None:
        """Add the fleet's connection ids (unowned); ids already there keep their owner."""
        ...

    async def heartbeat(self) -> None:
        """Mark this replica alive now (claim does it too)."""
        ...

    async def claim(self, limit: int, lease_seconds: float) -> list[str]:
        """Renew every lease this replica holds and claim up to `limit` free or expired
        ones; returns every id held after the call."""
        ...

    async def release_excess(self, keep: int, *, busy: Collection[str] = ()) -> list[str]:
        """Give back held ids beyond `keep`, never one in `busy` (a token request in
        flight); returns the released ids."""
        ...

    async def release_all(self) -> None:
        """On shutdown: free every lease and drop this replica's heartbeat."""
        ...

    async def owners(self) -> dict[str, str]:
        """Connection id -> replica, for every unexpired lease."""
        ...

    async def live_replicas(self, lease_seconds: float) -> int:
        """Replicas with a heartbeat newer than `lease_seconds`."""
        ...


# About 30 s, renewed every half: a dead replica's connections wait at most this long
# (plus one round of a survivor) for a new owner.
DEFAULT_LEASE_SECONDS: Final = 30.0


def fair_share(total: int, live: int) -> int:
    return math.ceil(total / max(1, live))


@dataclass(frozen=True, slots=True)
class LeaseRound:
    held: frozenset[str]  # what this replica holds now
    acquired: frozenset[str]  # newly held: start keeping these (load their tokens)
    lost: frozenset[str]  # held before, not now (released, or expired and taken): stop
    live: int
    share: int
    # time.monotonic() before which every lease in `held` is certainly still valid: the
    # claim's now() on the database came after this round started.
    valid_until: float


async def lease_round(
    leases: Leases,
    held: Collection[str],
    *,
    total: int,
    lease_seconds: float,
    busy: Collection[str] = (),
    monotonic: Callable[[], float] = time.monotonic,
) -> LeaseRound:
    """One renewal round, to run every `lease_seconds / 2`: heartbeat, renew and claim up
    to the fair share of `total` connections, give back any excess."""
    started = monotonic()
    await leases.heartbeat()
    live = await leases.live_replicas(lease_seconds)
    share = fair_share(total, live)
    now_held = set(await leases.claim(max(0, share - len(held)), lease_seconds))
    if len(now_held) > share:
        now_held.difference_update(await leases.release_excess(share, busy=busy))
    before = frozenset(held)
    return LeaseRound(
        held=frozenset(now_held),
        acquired=frozenset(now_held - before),
        lost=before - now_held,
        live=live,
        share=share,
        valid_until=started + lease_seconds,
    )


_REGISTER: Final = """
INSERT INTO leases (connection_id) SELECT unnest($1::text[])
ON CONFLICT (connection_id) DO NOTHING
"""

# Rows of replicas gone for a day are forgotten; their outbox rows stay adoptable.
_HEARTBEAT: Final = """
WITH forgotten AS (
    DELETE FROM replicas WHERE heartbeat_at < now() - interval '1 day' AND name <> $1
)
INSERT INTO replicas (name, heartbeat_at) VALUES ($1, now())
ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()
"""

# One statement, one now(): the heartbeat, the renewal and the claim share one instant, so
# a replica's heartbeat goes stale exactly when its leases run out. All CTEs see the same
# snapshot, hence `owner <> $1` in `free`: my own expired rows are renewed, not re-claimed.
_CLAIM: Final = """
WITH beat AS (
    INSERT INTO replicas (name, heartbeat_at) VALUES ($1, now())
    ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()
), renewed AS (
    UPDATE leases SET lease_until = now() + make_interval(secs => $2)
    WHERE owner = $1
    RETURNING connection_id
), free AS (
    SELECT connection_id FROM leases
    WHERE owner IS NULL OR (owner <> $1 AND lease_until <= now())
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE leases l SET owner = $1, lease_until = now() + make_interval(secs => $2)
    FROM free WHERE l.connection_id = free.connection_id
    RETURNING l.connection_id
)
SELECT connection_id FROM renewed UNION ALL SELECT connection_id FROM taken
"""

_RELEASE_EXCESS: Final = """
WITH excess AS (
    SELECT connection_id FROM leases
    WHERE owner = $1 AND lease_until > now() AND connection_id <> ALL($3::text[])
    ORDER BY connection_id COLLATE "C" DESC
    LIMIT GREATEST(0, (SELECT count(*) FROM leases
                       WHERE owner = $1 AND lease_until > now()) - $2)
    FOR UPDATE
)
UPDATE leases l SET owner = NULL, lease_until = NULL
FROM excess WHERE l.connection_id = excess.connection_id
RETURNING l.connection_id
"""

_RELEASE_ALL: Final = """
WITH gone AS (DELETE FROM replicas WHERE name = $1)
UPDATE leases SET owner = NULL, lease_until = NULL WHERE owner = $1
"""


class PostgresLeases:
    """`Leases` in SQL; a base of `PostgresStore`, which supplies `_run` and `_me`."""

    _lease_seconds: float
    _replica: str | None

    async def _run(self, action: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        raise NotImplementedError

    def _me(self) -> str:
        raise NotImplementedError

    async def _lease_lost(self, conn: Conn, cid: str, verb: str) -> LeaseLostError:
        row = await conn.fetchrow(
            "SELECT owner, extract(epoch FROM now() - lease_until) FROM leases"
            " WHERE connection_id = $1",
            cid,
        )
        if row is None:
            why = "it has no lease row: register the fleet first"
        elif row[0] is None:
            why = "it is free"
        elif row[0] != self._replica:
            why = f"replica {row[0]!r} holds it"
        elif row[1] > 0:
            why = f"this replica's lease ran out {float(row[1]):.1f} s ago"
        else:  # renewed by a claim that committed after the write was refused
            why = "this replica's lease had run out when the write was checked"
        return LeaseLostError(
            f"replica {self._replica!r} does not hold the lease on connection {cid!r} "
            f"({why}); its token was not {verb}"
        )

    async def register(self, connection_ids: Sequence[str]) -> None:
        # Sorted: replicas registering the same fleet at once insert in one order and so
        # cannot deadlock on each other's uncommitted rows.
        ids = sorted(set(connection_ids))
        if ids:
            await self._run("register connections", lambda conn: conn.execute(_REGISTER, ids))

    async def heartbeat(self) -> None:
        me = self._me()
        await self._run("heartbeat", lambda conn: conn.execute(_HEARTBEAT, me))

    async def claim(self, limit: int, lease_seconds: float) -> list[str]:
        me = self._me()
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._lease_seconds = lease_seconds
        rows = await self._run(
            "claim leases",
            lambda conn: conn.fetch(_CLAIM, me, float(lease_seconds), max(0, limit)),
        )
        return [cid for (cid,) in rows]

    async def release_excess(self, keep: int, *, busy: Collection[str] = ()) -> list[str]:
        me = self._me()
        rows = await self._run(
            "release leases",
            lambda conn: conn.fetch(_RELEASE_EXCESS, me, max(0, keep), list(busy)),
        )
        return [cid for (cid,) in rows]

    async def release_all(self) -> None:
        me = self._me()
        await self._run("release leases", lambda conn: conn.execute(_RELEASE_ALL, me))

    async def owners(self) -> dict[str, str]:
        rows = await self._run(
            "read lease owners",
            lambda conn: conn.fetch(
                "SELECT connection_id, owner FROM leases"
                " WHERE owner IS NOT NULL AND lease_until > now()"
            ),
        )
        return {str(cid): str(owner) for cid, owner in rows}

    async def live_replicas(self, lease_seconds: float) -> int:
        self._lease_seconds = lease_seconds
        count = await self._run(
            "count live replicas",
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM replicas"
                " WHERE heartbeat_at > now() - make_interval(secs => $1)",
                float(lease_seconds),
            ),
        )
        return int(count)
