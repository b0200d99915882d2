"""Leases on PostgreSQL: replicas split a fleet, take over a dead replica's connections,
spread onto a new replica, and a replica that lost a lease cannot save a token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from monitor.errors import LeaseLostError, StaleWriteError
from monitor.model import StoredTokens
from monitor.store.crypto import Keyring
from monitor.store.leases import LeaseRound, fair_share, lease_round
from monitor.store.postgres import PostgresStore
from tests.store.conftest import PG_DSN, PG_MAX_SIZE
from tests.store.samples import full_tokens

pytestmark = pytest.mark.postgres

IDS = [f"conn-{i:03d}" for i in range(500)]
Fleet = Callable[[str], Awaitable[PostgresStore]]


@pytest.fixture
async def fleet(pg_schema: str, key_a: str) -> AsyncIterator[Fleet]:
    """Opens replicas (stores with a replica name) over one schema; closes them at the end."""
    opened: list[PostgresStore] = []

    async def replica(name: str) -> PostgresStore:
        store = PostgresStore(
            PG_DSN, Keyring([key_a]), replica=name, schema=pg_schema, max_size=PG_MAX_SIZE
        )
        await store.open()
        opened.append(store)
        return store

    yield replica
    for store in opened:
        await store.close()


async def until(predicate: Callable[[], Awaitable[bool]], *, within: float) -> float:
    """Poll `predicate` every 50 ms; the seconds it took to hold. Fails after `within`."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > within:
            pytest.fail(f"not true within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_fair_share_rounds_up() -> None:
    assert fair_share(500, 3) == 167
    assert fair_share(500, 0) == 500
    assert fair_share(0, 4) == 0


async def test_register_is_idempotent_and_keeps_owners(fleet: Fleet) -> None:
    a = await fleet("a")
    await a.register(IDS[:10])
    assert len(await a.claim(5, 30)) == 5

    await a.register(IDS[:20])
    await a.register([])

    owners = await a.owners()
    assert len(owners) == 5
    assert set(await a.claim(100, 30)) == set(IDS[:20])


async def test_three_replicas_claiming_at_once_split_the_fleet(fleet: Fleet) -> None:
    a, b, c = [await fleet(name) for name in "abc"]
    await a.register(IDS)

    held = await asyncio.gather(*(r.claim(len(IDS), 30) for r in (a, b, c)))

    assert sum(len(h) for h in held) == len(IDS)
    assert set().union(*held) == set(IDS)
    owners = await c.owners()
    assert owners == {cid: name for name, h in zip("abc", held, strict=True) for cid in h}


async def test_claims_up_to_the_fair_share_leave_nothing_unowned(fleet: Fleet) -> None:
    replicas = [await fleet(name) for name in "abc"]
    await replicas[0].register(IDS)
    share = fair_share(len(IDS), 3)

    held = await asyncio.gather(*(r.claim(share, 30) for r in replicas))

    assert all(len(h) <= share for h in held)
    assert sorted(cid for h in held for cid in h) == sorted(IDS)


async def test_claim_renews_what_is_held_and_reports_it(fleet: Fleet) -> None:
    a = await fleet("a")
    await a.register(IDS[:30])
    first = await a.claim(10, 30)

    again = await a.claim(0, 30)
    more = await a.claim(5, 30)

    assert sorted(again) == sorted(first)
    assert len(more) == 15
    assert set(first) < set(more)


async def test_a_replica_that_stops_renewing_loses_its_connections_to_another(
    fleet: Fleet,
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(IDS)
    assert len(await a.claim(len(IDS), 1.0)) == len(IDS)
    await a.save_tokens(IDS[0], full_tokens("a"), expected_version=0)
    assert await b.claim(len(IDS), 1.0) == []  # all held, none expired yet

    # a stops renewing (it never calls claim again): after one lease period b takes all.
    taken: list[str] = []

    async def b_holds_everything() -> bool:
        taken[:] = await b.claim(len(IDS), 1.0)
        return len(taken) == len(IDS)

    waited = await until(b_holds_everything, within=5.0)

    assert 0.5 < waited < 2.0
    assert set((await a.owners()).values()) == {"b"}
    with pytest.raises(LeaseLostError, match=r"replica 'b' holds it"):
        await a.save_tokens(IDS[0], full_tokens("a-late"), expected_version=1)


async def test_a_paused_replica_cannot_overwrite_the_token_of_its_successor(
    fleet: Fleet,
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(["c1"])
    assert await a.claim(1, 0.5) == ["c1"]
    assert await a.save_tokens("c1", full_tokens("a1"), expected_version=0) == 1

    # a pauses (GC, SIGSTOP, a slow token request) past its lease; b takes over.
    await until(lambda: _claims(b, "c1"), within=3.0)
    assert await b.save_tokens("c1", full_tokens("b2"), expected_version=1) == 2

    # a wakes up holding version 1 and a freshly refreshed token: refused, twice over.
    with pytest.raises(LeaseLostError, match=r"does not hold the lease on connection 'c1'"):
        await a.save_tokens("c1", full_tokens("a2"), expected_version=1)
    # Even with the right version a is not the owner any more.
    with pytest.raises(LeaseLostError):
        await a.save_tokens("c1", full_tokens("a2"), expected_version=2)
    with pytest.raises(LeaseLostError):
        await a.delete_tokens("c1")
    assert await b.load_tokens("c1") == StoredTokens(full_tokens("b2"), 2)

    # The owner still meets the version fence: a lost race re-reads.
    with pytest.raises(StaleWriteError, match="at version 2, not 1"):
        await b.save_tokens("c1", full_tokens("b-stale"), expected_version=1)
    await b.delete_tokens("c1")
    assert await b.load_tokens("c1") is None


async def _claims(store: PostgresStore, cid: str) -> bool:
    return cid in await store.claim(1, 5.0)


async def test_an_expired_lease_of_this_replica_cannot_save(fleet: Fleet) -> None:
    a = await fleet("a")
    await a.register(["c1"])
    await a.claim(1, 0.3)
    await asyncio.sleep(0.5)

    with pytest.raises(LeaseLostError, match=r"this replica's lease ran out \d+\.\d s ago"):
        await a.save_tokens("c1", full_tokens(), expected_version=0)
    # Nobody took it meanwhile: renewing brings it back.
    assert await a.claim(0, 5.0) == ["c1"]
    assert await a.save_tokens("c1", full_tokens(), expected_version=0) == 1


async def test_a_save_in_flight_keeps_its_connection_from_being_claimed(
    fleet: Fleet, pg_schema: str
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(["c1"])
    await a.claim(1, 0.3)
    await asyncio.sleep(0.4)  # a's lease has run out; b may claim c1 ...
    # ... except while a token write of a holds the lease row (FOR KEY SHARE, as SAVE_TOKENS
    # does): the claim skips it instead of waiting, and takes it once the write is done.
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": pg_schema})
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM leases WHERE connection_id = 'c1' FOR KEY SHARE")
            assert await asyncio.wait_for(b.claim(1, 30), timeout=2) == []
        assert await b.claim(1, 30) == ["c1"]
    finally:
        await conn.close()


async def test_saving_needs_a_registered_and_claimed_connection(fleet: Fleet) -> None:
    a = await fleet("a")
    with pytest.raises(LeaseLostError, match="no lease row: register the fleet first"):
        await a.save_tokens("c1", full_tokens(), expected_version=0)
    await a.register(["c1"])
    with pytest.raises(LeaseLostError, match=r"\(it is free\)"):
        await a.save_tokens("c1", full_tokens(), expected_version=0)


async def test_a_new_replica_gets_its_fair_share_within_a_few_rounds(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(IDS)
    held: dict[str, frozenset[str]] = {"a": frozenset(), "b": frozenset()}
    stores = {"a": a, "b": b}

    async def round_all() -> dict[str, LeaseRound]:
        results = {}
        for name, store in stores.items():
            results[name] = await lease_round(store, held[name], total=len(IDS), lease_seconds=30)
            held[name] = results[name].held
        return results

    # a's first round sees only itself and takes everything; a gives half back in its
    # second round, once b's heartbeat counts, and b claims that half.
    await round_all()
    await round_all()
    assert sorted(len(h) for h in held.values()) == [250, 250]

    stores["c"] = await fleet("c")
    held["c"] = frozenset()
    for _ in range(3):
        last = await round_all()

    assert sorted(len(h) for h in held.values()) == [166, 167, 167]
    assert sorted(cid for h in held.values() for cid in h) == sorted(IDS)
    assert {r.live for r in last.values()} == {3}
    owners = await a.owners()
    assert all(owners[cid] == name for name, h in held.items() for cid in h)


async def test_a_lease_round_reports_what_changed(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(IDS[:10])
    clock = iter([100.0, 200.0, 300.0])

    first = await lease_round(a, (), total=10, lease_seconds=30, monotonic=lambda: next(clock))
    assert (len(first.held), first.acquired, first.lost) == (10, first.held, frozenset())
    assert (first.live, first.share, first.valid_until) == (1, 10, 130.0)

    await b.heartbeat()  # b arrives: a's share halves, a gives back five
    second = await lease_round(
        a, first.held, total=10, lease_seconds=30, monotonic=lambda: next(clock)
    )
    assert (len(second.held), second.acquired, len(second.lost)) == (5, frozenset(), 5)
    assert second.share == 5
    assert second.valid_until == 230.0


async def test_busy_connections_are_never_released(fleet: Fleet) -> None:
    a = await fleet("a")
    await a.register(IDS[:10])
    held = await a.claim(10, 30)
    busy = sorted(held)[-4:]  # the ones release_excess would pick first

    released = await a.release_excess(3, busy=busy)

    # 7 over the share, but only 6 are idle: the busy ones stay until they are done.
    assert sorted(released) == sorted(set(held) - set(busy))
    assert set(await a.claim(0, 30)) == set(busy)
    assert await a.release_excess(3, busy=busy) == []
    assert await a.release_excess(3) == [sorted(busy)[-1]]


async def test_release_all_frees_everything_and_leaves_the_count_of_live_replicas(
    fleet: Fleet,
) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.register(IDS[:20])
    await a.claim(10, 30)
    await b.claim(10, 30)
    assert await a.live_replicas(30) == 2

    await a.release_all()

    assert await b.live_replicas(30) == 1
    assert set((await b.owners()).values()) == {"b"}
    assert len(await b.claim(20, 30)) == 20


async def test_live_replicas_are_those_with_a_fresh_heartbeat(fleet: Fleet) -> None:
    a, b = await fleet("a"), await fleet("b")
    await a.heartbeat()
    await b.heartbeat()
    assert await a.live_replicas(30) == 2
    await asyncio.sleep(0.3)
    await b.heartbeat()
    assert await a.live_replicas(0.2) == 1


async def test_leases_need_a_replica_name(pg_schema: str, key_a: str) -> None:
    store = PostgresStore(PG_DSN, Keyring([key_a]), schema=pg_schema, max_size=PG_MAX_SIZE)
    await store.open()
    try:
        await store.register(["c1"])  # registering the fleet needs no name
        with pytest.raises(ValueError, match="replica="):
            await store.claim(1, 30)
        # Without a name there is no lease check: one process owns the whole fleet.
        assert await store.save_tokens("c1", full_tokens(), expected_version=0) == 1
    finally:
        await store.close()


async def test_a_dead_replicas_connections_are_taken_over_by_lease_rounds(fleet: Fleet) -> None:
    # The daemon's loop: a round every half lease. a dies (stops its rounds); b must hold
    # the whole fleet within a lease period plus a round of its own.
    lease = 1.0
    a, b = await fleet("a"), await fleet("b")
    await a.register(IDS)
    held = {"a": frozenset[str](), "b": frozenset[str]()}
    for _ in range(2):
        for name, store in (("a", a), ("b", b)):
            held[name] = (
                await lease_round(store, held[name], total=len(IDS), lease_seconds=lease)
            ).held
    assert sorted(len(h) for h in held.values()) == [250, 250]
    died = time.monotonic()

    async def b_holds_everything() -> bool:
        held["b"] = (await lease_round(b, held["b"], total=len(IDS), lease_seconds=lease)).held
        await asyncio.sleep(lease / 2 - 0.05)
        return len(held["b"]) == len(IDS)

    await until(b_holds_everything, within=5 * lease)
    assert time.monotonic() - died < 2.5 * lease  # measured: about 1.5 lease periods
