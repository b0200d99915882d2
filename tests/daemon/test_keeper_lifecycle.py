"""The keeper against the emulator: tokens obtained, refreshed on time, never used
expired, never refreshed twice at once; faults give their own states."""

from __future__ import annotations

from monitor.clock import ScaledClock
from monitor.emulator import Emulator, FleetOptions
from monitor.model import State
from monitor.store.memory import MemoryStore
from tests.daemon.harness import connections, fleet, keeper_on


async def test_every_connection_gets_a_token_and_turns_healthy() -> None:
    async with fleet(FleetOptions(instances=5, speed=10.0, seed=2)) as h:
        await h.until(
            lambda: all(s is State.HEALTHY for s in h.states().values()),
            emulated=120,
            what="all healthy",
        )
        totals = h.emu.totals()
        assert totals.grants["password"] == 5
        tokens = await h.store.load_all_tokens()
        assert sorted(tokens) == sorted(h.states())


async def test_short_tokens_refresh_on_time_without_overlap_or_expired_use() -> None:
    # 30-second access tokens, ten emulated minutes: ~20 s of token life per refresh.
    options = FleetOptions(instances=20, speed=60.0, access_lifespan=30, seed=3)
    async with fleet(options) as h:
        await h.run_for(600)
        totals = h.emu.totals()
        states = h.states()
    assert totals.expired_token_uses == 0
    assert totals.refresh_overlaps == 0
    per_connection = totals.refreshes / 20
    # One refresh per 18-21 s of token life over ~600 s, minus the first grant.
    assert 22 <= per_connection <= 34, per_connection
    assert totals.grants["password"] == 20
    assert all(s is State.HEALTHY for s in states.values()), states


async def test_restart_inside_one_emulator_makes_no_new_grant() -> None:
    store = MemoryStore()
    async with Emulator(FleetOptions(instances=4, speed=10.0, seed=5)) as emu:
        clock = ScaledClock(10.0, anchor=emu.clock.anchor)
        conns = connections(emu)
        async with keeper_on(emu, clock, conns, store) as h:
            await h.until(
                lambda: all(s is State.HEALTHY for s in h.states().values()), emulated=120
            )
        assert emu.totals().grants["password"] == 4
        async with keeper_on(emu, clock, conns, store) as h:
            await h.until(
                lambda: all(c.last_probe is not None for c in h.keeper.connections()),
                emulated=120,
            )
            assert all(s is State.HEALTHY for s in h.states().values())
        assert emu.totals().grants["password"] == 4
